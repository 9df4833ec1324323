"""Fused three-factor readout update (see ``naive.py`` for the equations and signature).

``three_factor_step`` dispatches (``kernels/dispatch.py``): the Triton kernels of
``triton.py`` when the tensors are on CUDA and triton imports, the torch reference of
``naive.py`` otherwise; ``NEUROBRIDGE_KERNELS=naive|triton`` forces either. float64 always
takes the torch reference (the Triton kernels compute in float32).
"""
from __future__ import annotations

from torch import Tensor

from kernels.dispatch import use_triton
from kernels.three_factor.naive import check_three_factor_inputs
from kernels.three_factor.naive import three_factor_step as naive_three_factor_step

__all__ = [
    "check_three_factor_inputs",
    "naive_three_factor_step",
    "three_factor_step",
    "three_factor_step_unchecked",
]


def three_factor_step(weights: Tensor, pending: Tensor, eligibility: Tensor, features: Tensor,
                      target: Tensor, gate: Tensor, learning_rate: Tensor | float,
                      eligibility_decay: float, online: Tensor | bool
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One fused step of the gated three-factor rule; contract in ``naive.py``. The inputs
    are checked (shapes, dtypes, scalars) before either path runs."""
    check_three_factor_inputs(weights, pending, eligibility, features, target, gate,
                              learning_rate, eligibility_decay, online)
    return three_factor_step_unchecked(weights, pending, eligibility, features, target, gate,
                                       learning_rate, eligibility_decay, online)


def three_factor_step_unchecked(weights: Tensor, pending: Tensor, eligibility: Tensor,
                                features: Tensor, target: Tensor, gate: Tensor,
                                learning_rate: Tensor | float, eligibility_decay: float,
                                online: Tensor | bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``three_factor_step`` without its checks (~9 us on a CPU), for a caller that checked
    its inputs once and steps in a loop (``neuro.reservoir.ThreeFactorReadout``)."""
    if use_triton(weights, pending, eligibility, features, target, gate, float32_kernel=True):
        from kernels.three_factor.triton import triton_three_factor_step
        return triton_three_factor_step(weights, pending, eligibility, features, target, gate,
                                        learning_rate, eligibility_decay, online)
    return naive_three_factor_step(weights, pending, eligibility, features, target, gate,
                                   learning_rate, eligibility_decay, online)
