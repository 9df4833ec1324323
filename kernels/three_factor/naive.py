"""Fused three-factor readout step: readable torch reference (CPU path, test oracle).

One call advances B independent networks, each with M linear readouts of the same
D input features (filtered spike traces r, optionally a constant bias column), by
one time step of the error-modulated, gated Hebbian rule used for the what/when
study (Yamada & Chao, arXiv 2510.14382; the paper's exact rule is not public, so the
equations below are OUR choice, in the generic three-factor form of Fremaux &
Gerstner 2016):

    tau_e dE/dt = -E + x            eligibility of each presynaptic feature
    z = W x                         readout
    e = y - z                       error (third factor, with the gate)
    dW/dt = eta * g * e outer E     gated Hebbian weight change

Discrete update, in exactly this order (a = ``eligibility_decay`` = exp(-dt / tau_e),
x_t the features at step t, y_t the targets, g_t the gate, eta the learning rate per
step: the dt of dW/dt is folded into eta, so the same eta learns twice as fast per ms at
half the dt):

    1. E_t     = a * E_{t-1} + (1 - a) * x_t                  [B, D]
    2. z_t     = W_{t-1} x_t                                   [B, M]
    3. e_t     = y_t - z_t                                     [B, M]
    4. beta_t  = eta * g_t                                     [B, M]
    5. D_t     = (beta_t * e_t) outer E_t                      [B, M, D]
    6. online rows m:   W_t[m]       = W_{t-1}[m] + D_t[m],   A_t[m] = A_{t-1}[m]
       offline rows m:  A_t[m]       = A_{t-1}[m] + D_t[m],   W_t[m] = W_{t-1}[m]

Offline rows accumulate their change in ``pending`` (A) while W stays frozen for the
whole trial; the caller consolidates A into W between trials (W += A, A = 0).
Relation to the gated delta rule S_t = S_{t-1} + beta_t (v_t - S_{t-1} q_t) k_t^T:
an online row is exactly that write with query q_t = x_t, key k_t = E_t, value
v_t = y_t and beta_t = eta * g_t. With ``eligibility_decay = 0`` (tau_e -> 0) the
key equals the query, E_t = x_t, and step 6 is the classic gated delta rule.

Public function (stable name and signature; a Triton version must match it):

    three_factor_step(weights, pending, eligibility, features, target, gate,
                      learning_rate, eligibility_decay, online)
        -> (output z_t [B, M], error e_t [B, M], eligibility E_t [B, D],
            weights W_t [B, M, D], pending A_t [B, M, D])

    weights, pending  [B, M, D]   float
    eligibility       [B, D]      float
    features          [B, D]      float (x_t)
    target, gate      [B, M]      float (gate in [0, 1], not checked here)
    learning_rate     [M] (or [1]) tensor of weights' dtype, a 0-dim float tensor (a
                      scalar: any float dtype), or python float (eta per readout)
    eligibility_decay python float in [0, 1]
    online            [M] bool tensor, or python bool for all rows

Inputs are never modified; new tensors are returned. ``check_three_factor_inputs``
(shapes, dtypes and Python scalars only: no tensor values, no host sync) runs in the
dispatching ``kernels.three_factor.three_factor_step``, before either path.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from kernels.dispatch import check_same_device

__all__ = ["check_three_factor_inputs", "three_factor_step"]


def check_three_factor_inputs(weights, pending, eligibility, features, target, gate,
                              learning_rate, eligibility_decay, online) -> None:
    """TypeError / ValueError naming the argument for a wrong type, rank, shape or dtype."""
    for name, tensor in (("weights", weights), ("pending", pending), ("eligibility", eligibility),
                         ("features", features), ("target", target), ("gate", gate)):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if weights.dim() != 3 or not weights.is_floating_point():
        raise ValueError(f"weights must be a float [B, M, D] tensor, got {weights.dtype} {tuple(weights.shape)}")
    batch, readouts, dim = weights.shape
    expected = {"pending": (pending, (batch, readouts, dim)), "eligibility": (eligibility, (batch, dim)),
                "features": (features, (batch, dim)), "target": (target, (batch, readouts)),
                "gate": (gate, (batch, readouts))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} (weights are {tuple(weights.shape)}), "
                             f"got {tuple(tensor.shape)}")
        if tensor.dtype != weights.dtype:
            raise TypeError(f"{name} has dtype {tensor.dtype}; expected weights' dtype {weights.dtype}")
    if isinstance(learning_rate, Tensor):
        if learning_rate.dim() > 1 or learning_rate.numel() not in (1, readouts):
            raise ValueError(f"learning_rate must be a float, or a tensor [{readouts}] or [1], got "
                             f"shape {tuple(learning_rate.shape)}")
        # another dtype would promote the reference's weights/pending (float64 rate: float64
        # weights; float32 rate beside float16 weights: float32), not the Triton path's; a
        # 0-dim float tensor is a scalar to type promotion (both paths keep weights' dtype)
        if not learning_rate.dtype.is_floating_point or (learning_rate.dim() > 0
                                                         and learning_rate.dtype != weights.dtype):
            raise TypeError(f"learning_rate has dtype {learning_rate.dtype}; expected weights' dtype "
                            f"{weights.dtype}")
    elif isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)):
        raise TypeError(f"learning_rate={learning_rate!r} must be a finite float, or a tensor "
                        f"[{readouts}] or [1]")
    elif not math.isfinite(learning_rate):
        raise ValueError(f"learning_rate={learning_rate!r} must be a finite float")
    if isinstance(eligibility_decay, bool) or not isinstance(eligibility_decay, (int, float)):
        raise TypeError(f"eligibility_decay={eligibility_decay!r} must be a float in [0, 1]")
    if not 0.0 <= eligibility_decay <= 1.0:
        raise ValueError(f"eligibility_decay={eligibility_decay!r} is outside the allowed range [0, 1]")
    if isinstance(online, Tensor):
        if online.dtype != torch.bool or tuple(online.shape) != (readouts,):
            raise ValueError(f"online must be a bool or a bool tensor [{readouts}], got "
                             f"{online.dtype} {tuple(online.shape)}")
    elif not isinstance(online, bool):
        raise TypeError(f"online={online!r} must be a bool or a bool tensor [{readouts}]")
    check_same_device(weights=weights, pending=pending, eligibility=eligibility, features=features,
                      target=target, gate=gate, learning_rate=learning_rate, online=online)


def three_factor_step(
    weights: Tensor,
    pending: Tensor,
    eligibility: Tensor,
    features: Tensor,
    target: Tensor,
    gate: Tensor,
    learning_rate: Tensor | float,
    eligibility_decay: float,
    online: Tensor | bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One fused step of the gated three-factor rule (see the module docstring)."""
    # 1. eligibility: exact integration of tau_e dE/dt = -E + x for x held over the step
    new_eligibility = eligibility * eligibility_decay + features * (1.0 - eligibility_decay)
    # 2-3. readout with the old weights, then the error
    output = torch.bmm(weights, features.unsqueeze(-1)).squeeze(-1)
    error = target - output
    # 4-5. per-row step size and the rank-one change
    scaled_error = error * gate * learning_rate
    change = scaled_error.unsqueeze(-1) * new_eligibility.unsqueeze(-2)
    # 6. online rows write W, offline rows accumulate into the pending consolidation
    if isinstance(online, bool):
        if online:
            return output, error, new_eligibility, weights + change, pending
        return output, error, new_eligibility, weights, pending + change
    # a select, not a multiply by the 0/1 mask: inf * 0 = NaN would reach the frozen rows
    online_rows = online.unsqueeze(-1)  # [M, 1]
    new_weights = torch.where(online_rows, weights + change, weights)
    new_pending = torch.where(online_rows, pending, pending + change)
    return output, error, new_eligibility, new_weights, new_pending
