"""Scaled HMM forward message passing (see ``naive.py`` for the contract).

``scaled_vecmat_scan`` dispatches (``kernels/dispatch.py``): the three-launch Triton scan
of ``triton.py`` on CUDA, the one-step-per-iteration torch reference of ``naive.py``
otherwise. On the CPU, ``neuro.hmmglm`` uses its own chunked torch scan (``scan.py``),
which is much faster than the reference there; it calls this op only on the Triton path.
"""
from __future__ import annotations

from torch import Tensor

from kernels.dispatch import use_triton
from kernels.hmm_scan.naive import scaled_vecmat_scan as naive_scaled_vecmat_scan

__all__ = ["naive_scaled_vecmat_scan", "scaled_vecmat_scan"]


def scaled_vecmat_scan(log_initial: Tensor, mats: Tensor) -> tuple[Tensor, Tensor]:
    """Prefix messages v_0 M_1 ... M_s as (vectors, log_scale); contract in ``naive.py``."""
    if use_triton(log_initial, mats):
        from kernels.hmm_scan.triton import triton_scaled_vecmat_scan
        return triton_scaled_vecmat_scan(log_initial, mats)
    return naive_scaled_vecmat_scan(log_initial, mats)
