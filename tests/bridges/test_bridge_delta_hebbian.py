"""Bridge: the (gated) delta rule == an error-modulated Hebbian write (Rescorla-Wagner)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bridges.delta_rule import FORMS, delta_rule
from bridges.gated_delta_rule import gated_delta_rule
from bridges.hebbian import hebbian_memory
from bridges.linear_attention import linear_attention


def _beta(shape, seed=2):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _log_decay(shape, strength=1.0, seed=3):
    generator = torch.Generator().manual_seed(seed)
    return F.logsigmoid(torch.randn(*shape, generator=generator, dtype=torch.float64)) / strength


@pytest.mark.parametrize("length", [1, 63, 64, 100])
@pytest.mark.parametrize("gated", [False, True])
def test_delta_rule_equals_error_modulated_hebbian_write(make_qkv, length, gated):
    q, k, v = make_qkv(length=length, unit_keys=True, seed=length)
    beta = _beta(q.shape[:3])
    g = _log_decay(q.shape[:3]) if gated else None
    initial = torch.randn(q.shape[0], q.shape[2], q.shape[3], v.shape[3], dtype=torch.float64)
    memory_out, weights = hebbian_memory(q, k, v, log_decay=g, write_strength=beta,
                                         initial_state=initial.transpose(-1, -2),
                                         output_final_state=True, error_driven=True)
    for form in FORMS:
        if gated:
            out, state = gated_delta_rule(q, k, v, g, beta, 1.0, initial, True, form=form,
                                          chunk_size=16)
        else:
            out, state = delta_rule(q, k, v, beta, 1.0, initial, True, form=form, chunk_size=16)
        # float64; the chunked form solves a triangular system instead of looping: 1e-10.
        assert (out - memory_out).abs().max() <= 1e-10, form
        assert (state - weights.transpose(-1, -2)).abs().max() <= 1e-10, form


def test_removing_the_error_term_recovers_linear_attention(make_qkv):
    q, k, v = make_qkv(length=40)
    hebbian_out, _ = hebbian_memory(q, k, v, write_strength=1.0, error_driven=False)
    linear_out, _ = linear_attention(q, k, v, scale=1.0)
    assert (hebbian_out - linear_out).abs().max() <= 1e-10
    delta_out, _ = hebbian_memory(q, k, v, write_strength=1.0, error_driven=True)
    assert (delta_out - linear_out).abs().max() > 1e-2   # the error term does change things


@pytest.mark.parametrize("form", FORMS)
def test_beta_one_with_unit_keys_recalls_the_newest_item_exactly(make_qkv, form):
    q, k, v = make_qkv(length=50, key_dim=8, unit_keys=True)
    beta = torch.ones(q.shape[:3], dtype=torch.float64)
    out, state = delta_rule(k, k, v, beta, 1.0, output_final_state=True, form=form, chunk_size=16)
    # Probing with the key just written returns its value exactly, at every step ...
    assert (out - v).abs().max() <= 1e-10
    # ... and the final memory recalls the newest item exactly.
    newest = torch.einsum("bhk,bhkv->bhv", k[:, -1], state)
    assert (newest - v[:, -1]).abs().max() <= 1e-10


@pytest.mark.parametrize("beta_value", [0.1, 0.5, 0.9, 1.5])
def test_repeating_one_pair_leaves_rescorla_wagner_error(make_qkv, beta_value):
    _, k, v = make_qkv(batch=2, length=1, heads=2, key_dim=6, value_dim=4, unit_keys=True)
    repeats = 12
    k_rep, v_rep = k.expand(-1, repeats, -1, -1), v.expand(-1, repeats, -1, -1)
    beta = torch.full(k_rep.shape[:3], beta_value, dtype=torch.float64)
    for form in FORMS:
        out, _ = delta_rule(k_rep, k_rep, v_rep, beta, 1.0, form=form, chunk_size=5)
        # After m presentations the association error is (1 - beta)^m times the first one.
        error = v_rep - out
        m = torch.arange(1, repeats + 1, dtype=torch.float64)[None, :, None, None]
        assert (error - (1 - beta_value) ** m * v_rep).abs().max() <= 1e-10, form


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_chunked_equals_recurrent(make_qkv, gated, chunk_size):
    q, k, v = make_qkv(length=37, unit_keys=True)
    beta = _beta(q.shape[:3])
    if gated:
        g = _log_decay(q.shape[:3], strength=0.1)     # strong gates: decays down to e^-100
        run = lambda form: gated_delta_rule(q, k, v, g, beta, None, None, True, form=form,
                                            chunk_size=chunk_size)
    else:
        run = lambda form: delta_rule(q, k, v, beta, None, None, True, form=form,
                                      chunk_size=chunk_size)
    (o_rec, s_rec), (o_chunk, s_chunk) = run("recurrent"), run("chunked")
    assert torch.isfinite(o_chunk).all()
    assert (o_rec - o_chunk).abs().max() <= 1e-10
    assert (s_rec - s_chunk).abs().max() <= 1e-10


def test_single_steps_with_carried_state_equal_one_call(make_qkv):
    q, k, v = make_qkv(length=19, unit_keys=True)
    beta, g = _beta(q.shape[:3]), _log_decay(q.shape[:3])
    full, full_state = gated_delta_rule(q, k, v, g, beta, output_final_state=True)
    state, steps = None, []
    for t in range(q.shape[1]):
        s = slice(t, t + 1)
        out, state = gated_delta_rule(q[:, s], k[:, s], v[:, s], g[:, s], beta[:, s],
                                      initial_state=state, output_final_state=True)
        steps.append(out)
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-12
    assert (state - full_state).abs().max() <= 1e-12


def test_float32_chunked_matches_float64_reference(make_qkv, rel_rms):
    q, k, v = make_qkv(length=100, unit_keys=True)
    beta, g = _beta(q.shape[:3]), _log_decay(q.shape[:3])
    reference, _ = gated_delta_rule(q, k, v, g, beta, form="recurrent")
    out, _ = gated_delta_rule(q.float(), k.float(), v.float(), g.float(), beta.float())
    assert out.dtype == torch.float32
    # float32 triangular solves of 64 x 64 well-conditioned (unit diagonal) systems: 1e-5.
    assert rel_rms(out, reference) <= 1e-5


@pytest.mark.parametrize("strong", [1e4, 1e8])
def test_one_strong_gate_does_not_swamp_the_weak_gates_after_it_in_float32(make_qkv, rel_rms,
                                                                           strong):
    """A reset-like gate g = -strong at step 0, then weak gates -0.01: the chunked form's
    float32 cumulative sum lost the weak gates behind the huge one (rel. error 4e-4 at 1e4,
    9e-2 at 1e8; now 3e-6); g is now clamped to the floor where exp is 0 anyway, as the
    chunked GLA does."""
    q, k, v = make_qkv(length=64, unit_keys=True)
    beta = _beta(q.shape[:3])
    g = torch.full(q.shape[:3], -0.01, dtype=torch.float64)
    g[:, 0] = -strong
    reference, _ = gated_delta_rule(q, k, v, g, beta, form="recurrent")
    out, _ = gated_delta_rule(q.float(), k.float(), v.float(), g.float(), beta.float())
    # the cumulative sum now stays within the floor (-110), where float32's spacing is 7.6e-6:
    # decay factors carry a relative error of about 1e-5.
    assert rel_rms(out, reference) <= 1e-4
