"""Gated linear attention with dispatch (see kernels/dispatch.py and naive.py for the maths).

Public ops, all in fla's form ``o, final_state = op(q, k, v, g, scale=None,
initial_state=None, output_final_state=False, cu_seqlens=None)``, layout [B, T, H, D]:

* :func:`chunk_gla` -- chunked GLA for training/prefill (differentiable).
* :func:`fused_recurrent_gla` -- the step-by-step form for decoding (T small, state carried).
* :func:`linear_attention` -- causal linear attention, i.e. GLA with zero gates (no ``g``).

On CUDA tensors with triton importable these run the Triton kernels of ``triton.py``;
otherwise the torch references of ``naive.py``. ``NEUROBRIDGE_KERNELS`` forces either.
float64 inputs always take the naive path: the Triton kernels accumulate in float32.
A NaN or inf in k or v of the chunked forms reaches every output row of its chunk, the
rows before it too (inside a chunk the scores multiply values as one matrix product, whose
zeros above the diagonal times a NaN are NaN, as in fla); the recurrent form and NaN gates
reach only their own and later rows.
"""
from __future__ import annotations

import torch
from torch import Tensor

from kernels.dispatch import use_triton
from kernels.gla.naive import naive_chunk_gla, naive_linear_attention, naive_recurrent_gla

__all__ = [
    "chunk_gla",
    "fused_recurrent_gla",
    "linear_attention",
    "naive_chunk_gla",
    "naive_linear_attention",
    "naive_recurrent_gla",
    "runs_triton",
]


def _check_tensors(q, k, v, g) -> None:
    """TypeError naming a non-tensor argument (before dispatch; the rest: ``naive._check_inputs``)."""
    for name, tensor in (("q", q), ("k", k), ("v", v), ("g", g)):
        if not isinstance(tensor, Tensor) and not (name == "g" and tensor is None):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")


def runs_triton(q: Tensor, k: Tensor, v: Tensor, g: Tensor | None,
                initial_state: Tensor | None) -> bool:
    """Whether these ops take the Triton path for these arguments (module docstring)."""
    return use_triton(q, k, v, g, initial_state, float32_kernel=True)


def chunk_gla(q: Tensor, k: Tensor, v: Tensor, g: Tensor | None, scale: float | None = None,
              initial_state: Tensor | None = None, output_final_state: bool = False,
              cu_seqlens: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Chunked GLA: ``S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t``, ``o_t = scale q_t S_t``.

    q, k, g: [B, T, H, K]; v: [B, T, H, V]; g is the per-key log decay (<= 0), ``None``
    for zero gates. Returns ``(o [B, T, H, V] in v's dtype, final_state [N, H, K, V]
    float32 (float64 for float64 inputs) or None)``. Differentiable in q, k, v, g and initial_state.
    """
    _check_tensors(q, k, v, g)
    if runs_triton(q, k, v, g, initial_state):
        from kernels.gla.triton import triton_chunk_gla
        return triton_chunk_gla(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)
    return naive_chunk_gla(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)


def fused_recurrent_gla(q: Tensor, k: Tensor, v: Tensor, g: Tensor | None,
                        scale: float | None = None, initial_state: Tensor | None = None,
                        output_final_state: bool = False, cu_seqlens: Tensor | None = None
                        ) -> tuple[Tensor, Tensor | None]:
    """GLA computed step by step (decoding); same contract as :func:`chunk_gla`.

    The Triton recurrent kernel is forward-only (inference); when a gradient is needed
    (grad mode on and an input requires grad) the Triton path runs the differentiable
    chunked kernels instead (same maths), so gradients are never silently dropped.
    """
    _check_tensors(q, k, v, g)
    if runs_triton(q, k, v, g, initial_state):
        tensors = (q, k, v, g, initial_state)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
            return chunk_gla(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)
        from kernels.gla.triton import triton_fused_recurrent_gla
        return triton_fused_recurrent_gla(q, k, v, g, scale, initial_state, output_final_state,
                                          cu_seqlens)
    return naive_recurrent_gla(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)


def linear_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None,
                     initial_state: Tensor | None = None, output_final_state: bool = False,
                     cu_seqlens: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Causal linear attention ``o_t = scale q_t sum_{s<=t} k_s^T v_s`` (GLA, zero gates)."""
    return chunk_gla(q, k, v, None, scale, initial_state, output_final_state, cu_seqlens)
