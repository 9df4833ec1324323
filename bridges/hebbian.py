"""Hebbian associative memory: a synaptic matrix written by outer products of cue and response.

The brain-side reading of linear attention (Qiao, arXiv:2508.08289; Hopfield/Kohonen
correlation-matrix memories). Per batch b and head h a synaptic matrix W of shape [V, K]
(postsynaptic response units x presynaptic cue units) is updated once per step t:

    W <- W * exp(log_decay_t)                   multiplicative synaptic decay; a scalar per
                                                 head ([B, T, H]) or one per presynaptic unit
                                                 ([B, T, H, K])
    e_t = v_t - W k_t   if error_driven          the prediction error (delta / Rescorla-Wagner
    e_t = v_t           otherwise                rule) or the plain Hebbian response
    W <- W + beta_t e_t k_t^T                    write of strength beta_t (the third factor)
    o_t = W q_t                                  recall by the probe q_t

Pavlovian names (:func:`conditioning`): the probe q is the test stimulus, the cue k the
conditioned stimulus (CS), the response v the unconditioned stimulus (US).

W is the transpose of the attention state S ([K, V]) of ``bridges.linear_attention``:
``W = S^T``. With beta = 1 and no decay, W_T = V^T K and ``o = causal(Q K^T) V`` (linear
attention, no scaling); with decay it is GLA; error-driven it is the (gated) delta rule.
Those equalities are the bridges the tests check. This module is written as a synapse
loop on purpose: it is the independent, step-by-step side of each bridge.
"""
from __future__ import annotations

import torch
from torch import Tensor

from bridges._validation import check_log_decay, check_per_step, check_qkv, check_state


def recall(weights: Tensor, probe: Tensor) -> Tensor:
    """Response of the memory to a probe: ``W q``; weights [..., V, K], probe [..., K]."""
    return torch.einsum("...vk,...k->...v", weights, probe)


def hebbian_step(weights: Tensor, cue: Tensor, response: Tensor, *,
                 log_decay: Tensor | None = None, write_strength: Tensor | float = 1.0,
                 error_driven: bool = False, prediction_probe: Tensor | None = None
                 ) -> tuple[Tensor, Tensor]:
    """One synaptic update (module docstring); returns ``(new weights, e_t)``.

    weights [B, H, V, K]; cue [B, H, K]; response [B, H, V]; log_decay [B, H] or [B, H, K]
    or None; write_strength a float or [B, H].

    ``prediction_probe`` [B, H, K] (error-driven only): the error is ``v_t - W p_t`` for
    this probe instead of the cue. The delta rule predicts with the cue (p = k); a
    three-factor readout predicts with its present input x_t while it writes along the
    eligibility trace E_t (p = x, k = E): ``dW = beta (y - W x) E^T``. The two coincide
    when E = x (no eligibility memory).
    """
    if log_decay is not None:
        factor = torch.exp(log_decay)
        weights = weights * (factor[..., None, None] if factor.dim() == 2 else factor[..., None, :])
    if prediction_probe is not None and not error_driven:
        raise ValueError("prediction_probe is only used by an error-driven write "
                         "(error_driven=True)")
    probe = cue if prediction_probe is None else prediction_probe
    error = response - recall(weights, probe) if error_driven else response
    if isinstance(write_strength, Tensor):
        error_scaled = write_strength[..., None] * error
    else:
        error_scaled = write_strength * error
    return weights + error_scaled.unsqueeze(-1) * cue.unsqueeze(-2), error


def hebbian_memory(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor | None = None,
                   write_strength: Tensor | float = 1.0, initial_state: Tensor | None = None,
                   output_final_state: bool = False, *, error_driven: bool = False
                   ) -> tuple[Tensor, Tensor | None]:
    """Run the memory over a sequence; returns ``(o [B, T, H, V], final W [B, H, V, K] or None)``.

    q (probes), k (cues): [B, T, H, K]; v (responses): [B, T, H, V]; log_decay: [B, T, H] or
    [B, T, H, K], <= 0; write_strength (beta): float or [B, T, H]; initial_state: W_0
    [B, H, V, K]. Computed in the inputs' dtype (float64 for the exact bridges).
    """
    batch, length, heads, key_dim, value_dim = check_qkv(q, k, v)
    if log_decay is not None:
        per_key = isinstance(log_decay, Tensor) and log_decay.dim() == 4
        check_log_decay("log_decay", check_per_step("log_decay", log_decay, q, per_key=per_key))
    if isinstance(write_strength, Tensor):
        check_per_step("write_strength", write_strength, q, per_key=False)
    elif isinstance(write_strength, bool) or not isinstance(write_strength, (int, float)):
        raise TypeError(f"write_strength must be a float or a [B, T, H] tensor, "
                        f"got {type(write_strength).__name__}")
    if initial_state is None:
        weights = q.new_zeros(batch, heads, value_dim, key_dim)
    else:
        weights = check_state("initial_state", initial_state, (batch, heads, value_dim, key_dim),
                              "[B, H, V, K] (post x pre)", q).to(q.dtype)
    outputs = []
    for t in range(length):
        weights, _ = hebbian_step(
            weights, k[:, t], v[:, t],
            log_decay=None if log_decay is None else log_decay[:, t],
            write_strength=write_strength[:, t] if isinstance(write_strength, Tensor)
            else float(write_strength),
            error_driven=error_driven)
        outputs.append(recall(weights, q[:, t]))
    out = torch.stack(outputs, dim=1) if outputs else v.new_zeros(v.shape)
    return out, (weights if output_final_state else None)


def conditioning(test: Tensor, cs: Tensor, us: Tensor, log_decay: Tensor | None = None,
                 write_strength: Tensor | float = 1.0, initial_state: Tensor | None = None,
                 output_final_state: bool = False, *, error_driven: bool = False
                 ) -> tuple[Tensor, Tensor | None]:
    """Pavlovian names for :func:`hebbian_memory`: test stimuli probe, CS cue, US response."""
    return hebbian_memory(test, cs, us, log_decay, write_strength, initial_state,
                          output_final_state, error_driven=error_driven)


def outer_product_memory(cues: Tensor, responses: Tensor, decay: float = 1.0) -> Tensor:
    """Closed form of n Hebbian writes with constant decay a: ``W = sum_i a^(n-1-i) v_i k_i^T``.

    cues [..., n, K], responses [..., n, V] -> W [..., V, K] (item n-1 is the newest). Equal
    to :func:`hebbian_memory`'s final state for ``log_decay = log a`` (tested); used where the
    sequence is long and only the final memory matters (capacity studies).
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    count = cues.shape[-2]
    ages = torch.arange(count - 1, -1, -1, dtype=cues.dtype, device=cues.device)
    weights = decay ** ages
    return torch.einsum("...nv,...n,...nk->...vk", responses, weights, cues)
