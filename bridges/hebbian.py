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

from bridges._validation import (
    check_flag,
    check_log_decay,
    check_number,
    check_per_step,
    check_qkv,
    check_same_dtype,
    check_state,
    check_tensor,
)


def recall(weights: Tensor, probe: Tensor) -> Tensor:
    """Response of the memory to a probe: ``W q``; weights [..., V, K], probe [..., K]."""
    check_tensor("weights", weights, min_ndim=2, layout="[..., V, K]")
    check_tensor("probe", probe, min_ndim=1, layout="[..., K]")
    check_same_dtype(weights=weights, probe=probe)
    try:
        torch.broadcast_shapes(weights.shape[:-2], probe.shape[:-1])
        matches = weights.shape[-1] == probe.shape[-1]
    except RuntimeError:
        matches = False
    if not matches:
        raise ValueError(f"probe [..., K] must match weights [..., V, K] {tuple(weights.shape)} "
                         f"in K and broadcast over the leading axes, got {tuple(probe.shape)}")
    return _recall(weights, probe)


def _recall(weights: Tensor, probe: Tensor) -> Tensor:
    return torch.einsum("...vk,...k->...v", weights, probe)


def _check_step(weights, cue, response, log_decay, write_strength, prediction_probe):
    check_tensor("weights", weights, ndim=4, layout="[B, H, V, K]")
    batch, heads, value_dim, key_dim = weights.shape
    expected = {"cue": (cue, (batch, heads, key_dim), "[B, H, K]"),
                "response": (response, (batch, heads, value_dim), "[B, H, V]")}
    if prediction_probe is not None:
        expected["prediction_probe"] = (prediction_probe, (batch, heads, key_dim), "[B, H, K]")
    if log_decay is not None:
        per_key = isinstance(log_decay, Tensor) and log_decay.dim() == 3
        expected["log_decay"] = (log_decay, (batch, heads, key_dim) if per_key else (batch, heads),
                                 "[B, H, K]" if per_key else "[B, H]")
    if isinstance(write_strength, Tensor):
        expected["write_strength"] = (write_strength, (batch, heads), "[B, H]")
    else:
        check_number("write_strength", write_strength, what="a float or a [B, H] tensor")
    for name, (x, shape, layout) in expected.items():
        check_state(name, x, shape, layout, weights, "weights")
    check_same_dtype(weights=weights, **{name: x for name, (x, _, _) in expected.items()})


def hebbian_step(weights: Tensor, cue: Tensor, response: Tensor, *,
                 log_decay: Tensor | None = None, write_strength: Tensor | float = 1.0,
                 error_driven: bool = False, prediction_probe: Tensor | None = None
                 ) -> tuple[Tensor, Tensor]:
    """One synaptic update (module docstring); returns ``(new weights, e_t)``.

    weights [B, H, V, K]; cue [B, H, K]; response [B, H, V]; log_decay [B, H] or [B, H, K]
    or None; write_strength a float or [B, H]; every tensor of weights' dtype. Shapes and
    dtypes are checked; values are not (no host sync per step).

    ``prediction_probe`` [B, H, K] (error-driven only): the error is ``v_t - W p_t`` for
    this probe instead of the cue. The delta rule predicts with the cue (p = k); a
    three-factor readout predicts with its present input x_t while it writes along the
    eligibility trace E_t (p = x, k = E): ``dW = beta (y - W x) E^T``. The two coincide
    when E = x (no eligibility memory).
    """
    error_driven = check_flag("error_driven", error_driven)
    if prediction_probe is not None and not error_driven:
        raise ValueError("prediction_probe is only used by an error-driven write "
                         "(error_driven=True)")
    _check_step(weights, cue, response, log_decay, write_strength, prediction_probe)
    return _step(weights, cue, response, log_decay, write_strength, error_driven, prediction_probe)


def _step(weights, cue, response, log_decay, write_strength, error_driven, prediction_probe=None):
    if log_decay is not None:
        factor = torch.exp(log_decay)
        weights = weights * (factor[..., None, None] if factor.dim() == 2 else factor[..., None, :])
    probe = cue if prediction_probe is None else prediction_probe
    error = response - _recall(weights, probe) if error_driven else response
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
    [B, T, H, K], <= 0 (-inf: a full reset); write_strength (beta): a finite float or [B, T, H];
    initial_state: W_0 [B, H, V, K]. Computed in the inputs' dtype (float64 for the exact
    bridges); gates and W_0 are converted to it.
    """
    batch, length, heads, key_dim, value_dim = check_qkv(q, k, v)
    output_final_state = check_flag("output_final_state", output_final_state)
    error_driven = check_flag("error_driven", error_driven)
    if log_decay is not None:
        per_key = isinstance(log_decay, Tensor) and log_decay.dim() == 4
        check_log_decay("log_decay", check_per_step("log_decay", log_decay, q, per_key=per_key))
        log_decay = log_decay.to(q.dtype)
    if isinstance(write_strength, Tensor):
        check_per_step("write_strength", write_strength, q, per_key=False)
        write_strength = write_strength.to(q.dtype)
    else:
        write_strength = check_number("write_strength", write_strength,
                                      what="a float or a [B, T, H] tensor")
    if initial_state is None:
        weights = q.new_zeros(batch, heads, value_dim, key_dim)
    else:
        weights = check_state("initial_state", initial_state, (batch, heads, value_dim, key_dim),
                              "[B, H, V, K] (post x pre)", q).to(q.dtype)
    outputs = []
    for t in range(length):
        weights, _ = _step(
            weights, k[:, t], v[:, t], None if log_decay is None else log_decay[:, t],
            write_strength[:, t] if isinstance(write_strength, Tensor) else write_strength,
            error_driven)
        outputs.append(_recall(weights, q[:, t]))
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
    decay = check_number("decay", decay, low=0.0, high=1.0, low_open=True)
    check_tensor("cues", cues, min_ndim=2, layout="[..., n, K]")
    check_tensor("responses", responses, min_ndim=2, layout="[..., n, V]")
    if responses.shape[:-1] != cues.shape[:-1]:
        raise ValueError(f"responses [..., n, V] must match cues [..., n, K] {tuple(cues.shape)} "
                         f"in every axis but the last, got {tuple(responses.shape)}")
    check_same_dtype(cues=cues, responses=responses)
    count = cues.shape[-2]
    ages = torch.arange(count - 1, -1, -1, dtype=cues.dtype, device=cues.device)
    weights = decay ** ages
    return torch.einsum("...nv,...n,...nk->...vk", responses, weights, cues)
