"""The delta rule as a token mixer: recurrent and chunked (WY / UT-transform) references.

Widrow-Hoff / DeltaNet (Schlag et al. 2021, arXiv:2102.11174; chunked form of Yang et al.
2024, arXiv:2406.06484), per batch b and head h, state S of shape [K, V]:

    e_t = v_t - S_{t-1}^T k_t                 (prediction error of the memory for cue k_t)
    S_t = S_{t-1} + beta_t k_t e_t^T          (error-driven write of strength beta_t)
    o_t = scale * q_t S_t

With a per-step log decay g_t <= 0 (the gated delta rule, :mod:`bridges.gated_delta_rule`)
the state first decays, ``S_{t-1} <- exp(g_t) S_{t-1}``, and the error uses the decayed state.

Chunked form (our derivation of the UT transform, written for readability): inside a chunk
starting from state S with cumulative log decay ``G_t = sum_{s<=t} g_s``, the effective
writes ``w_t = beta_t e_t`` solve the unit lower-triangular system

    w_t + beta_t sum_{s<t} exp(G_t - G_s) (k_t . k_s) w_s = beta_t (v_t - exp(G_t) S^T k_t)

and then ``o_t = scale (exp(G_t) q_t S + sum_{s<=t} exp(G_t - G_s)(q_t . k_s) w_s)``,
``S_C = exp(G_C) S + sum_s exp(G_C - G_s) k_s w_s^T``. Every exponent is <= 0, so strong
gates cannot overflow; g is first clamped to ``kernels.gla.naive.log_decay_floor`` (as the
chunked GLA does): exp of it is exactly 0 already, so the result is unchanged, -inf (a full
reset) gives no exp(-inf - -inf) = NaN, and one huge gate no longer swamps the float
cumulative sum that the weak gates after it are differences of. beta is not constrained
(beta in (0, 2) keeps unit-key writes contractive; beta = 1 with a unit key stores v_t
exactly).
"""
from __future__ import annotations

import torch
from torch import Tensor

from bridges._validation import (
    check_choice,
    check_chunk_size,
    check_flag,
    check_log_decay,
    check_per_step,
    check_qkv,
    check_state,
    compute_dtype,
    resolve_scale,
)
from kernels.gla.naive import log_decay_floor

FORMS = ("recurrent", "chunked")


def _recurrent(q, k, v, beta, g, scale, state):
    outputs = []
    for t in range(q.shape[1]):
        if g is not None:
            state = torch.exp(g[:, t])[..., None, None] * state
        error = v[:, t] - torch.einsum("bhk,bhkv->bhv", k[:, t], state)
        state = state + k[:, t].unsqueeze(-1) * (beta[:, t, :, None] * error).unsqueeze(-2)
        outputs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], state))
    if not outputs:
        return v.new_zeros(v.shape), state
    return torch.stack(outputs, dim=1), state


def _chunked(q, k, v, beta, g, scale, state, chunk_size):
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))                  # [B, H, T, D]
    beta = beta.transpose(1, 2)                                         # [B, H, T]
    g = None if g is None else g.transpose(1, 2)
    outputs = []
    for start in range(0, q.shape[2], chunk_size):
        end = min(start + chunk_size, q.shape[2])
        q_c, k_c, v_c, b_c = q[:, :, start:end], k[:, :, start:end], v[:, :, start:end], \
            beta[:, :, start:end]
        size = end - start
        causal = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
        if g is None:
            cum = q_c.new_zeros(q_c.shape[:3])
        else:
            floor = log_decay_floor(q.dtype)
            cum = torch.cumsum(g[:, :, start:end].clamp_min(floor), dim=-1)  # G_t <= 0
        diff = (cum.unsqueeze(-1) - cum.unsqueeze(-2)).masked_fill(~causal, float("-inf"))
        pair_decay = torch.exp(diff)                                    # exp(G_t - G_s), s <= t
        key_gram = (k_c @ k_c.transpose(-1, -2)) * pair_decay
        system = torch.eye(size, dtype=q.dtype, device=q.device) + \
            (b_c.unsqueeze(-1) * key_gram).tril(-1)
        decay_in = torch.exp(cum).unsqueeze(-1)                         # exp(G_t)
        rhs = b_c.unsqueeze(-1) * (v_c - decay_in * (k_c @ state))
        writes = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
        scores = (q_c @ k_c.transpose(-1, -2)) * pair_decay             # zero above diagonal
        outputs.append(scale * (decay_in * (q_c @ state) + scores @ writes))
        decay_out = torch.exp(cum[..., -1:] - cum).unsqueeze(-1)        # exp(G_C - G_s)
        state = torch.exp(cum[..., -1])[..., None, None] * state + \
            (k_c * decay_out).transpose(-1, -2) @ writes
    if not outputs:
        return v.transpose(1, 2).new_zeros(v.transpose(1, 2).shape), state
    return torch.cat(outputs, dim=2).transpose(1, 2), state


def delta_rule_core(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None,
                    scale: float | None, initial_state: Tensor | None, output_final_state: bool,
                    form: str, chunk_size: int) -> tuple[Tensor, Tensor | None]:
    """Shared body of :func:`delta_rule` and :func:`bridges.gated_delta_rule.gated_delta_rule`."""
    batch, _, heads, key_dim, value_dim = check_qkv(q, k, v)
    check_per_step("beta", beta, q, per_key=False)
    check_choice("form", form, FORMS)
    if g is not None:
        check_log_decay("g", check_per_step("g", g, q, per_key=False))
    chunk_size = check_chunk_size(chunk_size)
    output_final_state = check_flag("output_final_state", output_final_state)
    scale = resolve_scale(scale, key_dim)
    dtype = compute_dtype(q)
    out_dtype = v.dtype
    q, k, v, beta = (x.to(dtype) for x in (q, k, v, beta))
    g = None if g is None else g.to(dtype)
    if initial_state is None:
        state = q.new_zeros(batch, heads, key_dim, value_dim)
    else:
        state = check_state("initial_state", initial_state, (batch, heads, key_dim, value_dim),
                            "[B, H, K, V]", q).to(dtype)
    if form == "recurrent":
        out, state = _recurrent(q, k, v, beta, g, scale, state)
    else:
        out, state = _chunked(q, k, v, beta, g, scale, state, chunk_size)
    return out.to(out_dtype), (state if output_final_state else None)


def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, scale: float | None = None,
               initial_state: Tensor | None = None, output_final_state: bool = False,
               *, form: str = "chunked", chunk_size: int = 64) -> tuple[Tensor, Tensor | None]:
    """Delta-rule mixer (module docstring); ``form`` in ``recurrent|chunked``.

    q, k: [B, T, H, K] (keys are usually L2-normalised); v: [B, T, H, V]; beta: [B, T, H]
    write strength; initial_state: [B, H, K, V]. Returns ``(o [B, T, H, V] in v's dtype,
    final_state [B, H, K, V] float32/float64 or None)``.
    """
    return delta_rule_core(q, k, v, beta, None, scale, initial_state, output_final_state, form,
                           chunk_size)
