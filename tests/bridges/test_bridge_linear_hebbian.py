"""Bridge: causal linear attention == Hebbian outer-product memory read out by the query."""
from __future__ import annotations

import pytest
import torch

from bridges.hebbian import conditioning, hebbian_memory, outer_product_memory
from bridges.linear_attention import FORMS, linear_attention

# T covers a single step, chunk-size -1 / exact / +odd remainder, and a long sequence.
LENGTHS = (1, 63, 64, 100, 1024)


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_linear_attention_equals_hebbian_memory_float64(make_qkv, length, with_initial_state):
    # Odd head sizes (K=5, V=7) so no code path silently assumes powers of two.
    q, k, v = make_qkv(batch=2, length=length, heads=2, key_dim=5, value_dim=7, seed=length)
    initial = torch.randn(2, 2, 5, 7, dtype=torch.float64) if with_initial_state else None
    memory_out, weights = hebbian_memory(
        q, k, v, initial_state=None if initial is None else initial.transpose(-1, -2),
        output_final_state=True)
    expected_state = torch.einsum("bthk,bthv->bhkv", k, v)          # K^T V
    if initial is not None:
        expected_state = expected_state + initial
    for form in FORMS:
        out, state = linear_attention(q, k, v, scale=1.0, initial_state=initial,
                                      output_final_state=True, form=form)
        # float64: summation order differs between forms; 1e-10 is ~1e5 ulp of |o| ~ sqrt(T).
        assert (out - memory_out).abs().max() <= 1e-10, form
        assert (state - expected_state).abs().max() <= 1e-10, form
        assert (state - weights.transpose(-1, -2)).abs().max() <= 1e-10, form


@pytest.mark.parametrize("length", LENGTHS)
def test_linear_attention_equals_hebbian_memory_float32(make_qkv, rel_rms, length):
    q, k, v = make_qkv(batch=2, length=length, heads=2, key_dim=5, value_dim=7, seed=length,
                       dtype=torch.float32)
    memory_out, weights = hebbian_memory(q, k, v, output_final_state=True)
    reference, _ = hebbian_memory(q.double(), k.double(), v.double())
    # The float64 run is the truth; float32 sums of <=1024 terms of O(1) stay within
    # ~1e-7 relative RMS (eps 6e-8 times a sqrt(T)-like random walk on a sqrt(T)-sized sum).
    assert rel_rms(memory_out, reference) <= 1e-6
    for form in FORMS:
        out, state = linear_attention(q, k, v, scale=1.0, output_final_state=True, form=form)
        assert rel_rms(out, memory_out) <= 1e-6, form
        assert rel_rms(state, weights.transpose(-1, -2)) <= 1e-6, form


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 200])
def test_chunked_equals_parallel_for_any_chunk_size(make_qkv, chunk_size):
    q, k, v = make_qkv(length=45)
    expected, expected_state = linear_attention(q, k, v, output_final_state=True, form="parallel")
    out, state = linear_attention(q, k, v, output_final_state=True, form="chunked",
                                  chunk_size=chunk_size)
    assert (out - expected).abs().max() <= 1e-12
    assert (state - expected_state).abs().max() <= 1e-12


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("normalize", [False, True])
def test_single_steps_with_carried_state_equal_one_call(make_qkv, form, normalize):
    q, k, v = make_qkv(length=23)
    if normalize:  # a positive feature map keeps the normaliser away from 0
        q, k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    full, full_state = linear_attention(q, k, v, output_final_state=True, form=form,
                                        normalize=normalize)
    state, steps = None, []
    for t in range(q.shape[1]):
        out, state = linear_attention(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1],
                                      initial_state=state, output_final_state=True, form=form,
                                      normalize=normalize)
        steps.append(out)
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-12
    assert (state - full_state).abs().max() <= 1e-12


def test_normalized_linear_attention_matches_its_definition(make_qkv):
    q, k, v = make_qkv(length=30)
    q, k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    scores = torch.einsum("bthk,bshk->bhts", q, k).tril()
    expected = torch.einsum("bhts,bshv->bthv", scores / scores.sum(-1, keepdim=True), v)
    for form in FORMS:
        out, state = linear_attention(q, k, v, output_final_state=True, form=form, normalize=True)
        assert (out - expected).abs().max() <= 1e-12, form
        # The packed last column of the state is the running key sum z.
        assert (state[..., -1] - k.sum(1)).abs().max() <= 1e-12


def test_default_scale_is_inverse_sqrt_key_dim(make_qkv):
    q, k, v = make_qkv()
    out, _ = linear_attention(q, k, v)
    unscaled, _ = linear_attention(q, k, v, scale=1.0)
    assert (out - unscaled * q.shape[-1] ** -0.5).abs().max() <= 1e-12


def test_conditioning_is_the_same_memory_under_pavlovian_names(make_qkv):
    test, cs, us = make_qkv(length=12)
    out, weights = conditioning(test=test, cs=cs, us=us, output_final_state=True)
    expected, expected_weights = hebbian_memory(test, cs, us, output_final_state=True)
    assert torch.equal(out, expected) and torch.equal(weights, expected_weights)


@pytest.mark.parametrize("decay", [1.0, 0.9, 0.5])
def test_outer_product_closed_form_equals_sequential_writes(make_qkv, decay):
    q, k, v = make_qkv(length=40)
    log_decay = torch.full(q.shape[:3], torch.log(torch.tensor(decay, dtype=torch.float64)).item(),
                           dtype=torch.float64)
    _, weights = hebbian_memory(q, k, v, log_decay=log_decay, output_final_state=True)
    closed = outer_product_memory(k.transpose(1, 2), v.transpose(1, 2), decay)
    assert (closed - weights).abs().max() <= 1e-12
