"""Bridge: gated linear attention == Hebbian memory with per-step multiplicative synaptic decay."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bridges.gated_linear_attention import FORMS, gated_linear_attention
from bridges.hebbian import hebbian_memory
from bridges.linear_attention import linear_attention


def _gates(shape, strength=1.0, seed=1, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return F.logsigmoid(torch.randn(*shape, generator=generator, dtype=dtype)) / strength


@pytest.mark.parametrize("length", [1, 63, 64, 100])
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_gla_equals_hebbian_memory_with_per_key_decay(make_qkv, length, with_initial_state):
    q, k, v = make_qkv(batch=2, length=length, heads=2, key_dim=5, value_dim=7, seed=length)
    g = _gates(q.shape)
    initial = torch.randn(2, 2, 5, 7, dtype=torch.float64) if with_initial_state else None
    memory_out, weights = hebbian_memory(
        q, k, v, log_decay=g, initial_state=None if initial is None else initial.transpose(-1, -2),
        output_final_state=True)
    for form in FORMS:
        out, state = gated_linear_attention(q, k, v, g, scale=1.0, initial_state=initial,
                                            output_final_state=True, form=form)
        # float64 references; different summation orders only: 1e-10 absolute on O(1) outputs.
        assert (out - memory_out).abs().max() <= 1e-10, form
        assert (state - weights.transpose(-1, -2)).abs().max() <= 1e-10, form


def test_zero_gates_reduce_to_linear_attention(make_qkv):
    q, k, v = make_qkv(length=70)
    expected, expected_state = linear_attention(q, k, v, output_final_state=True, form="parallel")
    for form in FORMS:
        for g in (torch.zeros_like(q), None):
            out, state = gated_linear_attention(q, k, v, g, output_final_state=True, form=form)
            assert (out - expected).abs().max() <= 1e-10
            assert (state - expected_state).abs().max() <= 1e-10


@pytest.mark.parametrize("decay", [0.99, 0.8, 0.3])
def test_constant_scalar_decay_matches_closed_form(make_qkv, decay):
    q, k, v = make_qkv(length=50)
    g = torch.full_like(q, math.log(decay))
    positions = torch.arange(q.shape[1], dtype=torch.float64)
    lag = positions[:, None] - positions[None, :]                        # t - i
    weights = torch.where(lag >= 0, decay ** lag.clamp_min(0), torch.zeros_like(lag))
    expected = torch.einsum("ts,bthk,bshk,bshv->bthv", weights, q, k, v)  # sum a^(t-i)(q.k_i)v_i
    for form in FORMS:
        out, _ = gated_linear_attention(q, k, v, g, scale=1.0, form=form)
        assert (out - expected).abs().max() <= 1e-10, form


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_form_stays_finite_and_exact_under_strong_gates(make_qkv, rel_rms, dtype):
    # logsigmoid(randn)/0.1: decays down to exp(-100) per step; dividing by cumulative decay
    # (the naive trick) would overflow, the chunked reference must not.
    q, k, v = make_qkv(length=100, dtype=dtype)
    g = _gates(q.shape, strength=0.1, dtype=dtype)
    chunked, chunked_state = gated_linear_attention(q, k, v, g, output_final_state=True)
    recurrent, recurrent_state = gated_linear_attention(q, k, v, g, output_final_state=True,
                                                        form="recurrent")
    assert torch.isfinite(chunked).all() and torch.isfinite(chunked_state).all()
    # float32 relative RMS 1e-5: sums over at most a chunk of O(1) terms, eps 6e-8.
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    assert rel_rms(chunked, recurrent) <= tolerance
    assert rel_rms(chunked_state, recurrent_state) <= tolerance


def test_single_steps_with_carried_state_equal_one_call(make_qkv):
    q, k, v = make_qkv(length=20)
    g = _gates(q.shape)
    full, full_state = gated_linear_attention(q, k, v, g, output_final_state=True)
    state, steps = None, []
    for t in range(q.shape[1]):
        out, state = gated_linear_attention(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1],
                                            g[:, t:t + 1], initial_state=state,
                                            output_final_state=True, form="recurrent")
        steps.append(out)
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-12
    assert (state - full_state).abs().max() <= 1e-12


def test_hebbian_scalar_decay_equals_gla_with_broadcast_gate(make_qkv):
    q, k, v = make_qkv(length=30)
    scalar = _gates(q.shape[:3])
    out, weights = hebbian_memory(q, k, v, log_decay=scalar, output_final_state=True)
    expected, state = gated_linear_attention(q, k, v, scalar[..., None].expand_as(q).contiguous(),
                                             scale=1.0, output_final_state=True)
    assert (out - expected).abs().max() <= 1e-10
    assert (weights.transpose(-1, -2) - state).abs().max() <= 1e-10
