"""Scaled forward message passing of an HMM: readable torch reference (test oracle).

A forward (or, on reversed time, backward) HMM message is a row vector pushed through a
product of K x K non-negative matrices (Rabiner 1989, the scaled forward algorithm):

    v_0 = exp(log_initial),   v_s = v_{s-1} M_s,   s = 1..S

Returned as (vectors, log_scale) with v_s = vectors[:, s-1] * exp(log_scale[:, s-1]) and
max_k vectors[:, s-1, k] = 1 (all zero where v_s = 0), so that nothing under- or
overflows however long the sequence.

Shapes: log_initial (B, K); mats (B, S, K, K), K >= 1, on log_initial's device, with
entries in [0, 1] (transition probabilities times emission likelihoods scaled by their
per-step maximum); outputs vectors (B, S, K), log_scale (B, S). One Python step per
time step: the oracle only.
"""
from __future__ import annotations

import torch

from kernels.dispatch import check_same_device


def check_scan_inputs(log_initial: torch.Tensor, mats: torch.Tensor) -> None:
    """ValueError naming the argument for wrong ranks, shapes (K = 0 included), dtypes or
    devices (TypeError: not a tensor)."""
    for name, value in (("log_initial", log_initial), ("mats", mats)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if mats.dim() != 4 or mats.shape[-1] != mats.shape[-2] or mats.shape[-1] == 0:
        raise ValueError(f"mats must have shape (B, S, K, K) with K >= 1 states, got "
                         f"{tuple(mats.shape)}")
    batch, _, k, _ = mats.shape
    if tuple(log_initial.shape) != (batch, k):
        raise ValueError(f"log_initial must have shape {(batch, k)}, got {tuple(log_initial.shape)}")
    if log_initial.dtype != mats.dtype or not mats.dtype.is_floating_point:
        raise ValueError(f"log_initial and mats must share one float dtype, got "
                         f"{log_initial.dtype} and {mats.dtype}")
    check_same_device(log_initial=log_initial, mats=mats)


def scaled_vecmat_scan(log_initial: torch.Tensor, mats: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """All prefix messages v_s = v_0 M_1 ... M_s as (vectors, log_scale); see the module."""
    check_scan_inputs(log_initial, mats)
    batch, steps, k, _ = mats.shape
    tiny = torch.finfo(mats.dtype).tiny
    scale = log_initial.amax(-1, keepdim=True)
    scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))
    vec = torch.exp(log_initial - scale)
    vectors, scales = [], []
    for s in range(steps):
        vec = (vec.unsqueeze(-2) @ mats[:, s]).squeeze(-2)
        vmax = vec.amax(-1, keepdim=True).clamp_min(tiny)
        vec = vec / vmax
        scale = scale + torch.log(vmax)
        vectors.append(vec)
        scales.append(scale.squeeze(-1))
    if not steps:
        return mats.new_zeros(batch, 0, k), mats.new_zeros(batch, 0)
    return torch.stack(vectors, 1), torch.stack(scales, 1)
