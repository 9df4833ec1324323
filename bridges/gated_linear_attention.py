"""Gated linear attention (GLA): per-key, data-dependent multiplicative decay of the memory.

Yang et al. 2023 (arXiv:2312.06635), per batch b and head h, state S of shape [K, V]:

    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,   g_t <= 0 per key (log decay)
    o_t = scale * q_t S_t

In Hebbian terms each presynaptic (cue) unit j has its own synaptic decay exp(g_tj) at
step t (:func:`bridges.hebbian.hebbian_memory` with a per-key ``log_decay``). One
implementation, not two: the readable recurrent and overflow-free chunked references live
in ``kernels/gla/naive.py`` (they are also the Triton kernel's oracle); this module checks
the arguments the way every ``bridges`` op does and dispatches through ``kernels.gla``
(torch reference on CPU, Triton on CUDA).
"""
from __future__ import annotations

from torch import Tensor

from bridges._validation import (
    check_choice,
    check_chunk_size,
    check_flag,
    check_log_decay,
    check_per_step,
    check_qkv,
    check_state,
    resolve_scale,
)

FORMS = ("recurrent", "chunked")


def gated_linear_attention(q: Tensor, k: Tensor, v: Tensor, g: Tensor | None,
                           scale: float | None = None, initial_state: Tensor | None = None,
                           output_final_state: bool = False, *, form: str = "chunked",
                           chunk_size: int = 32) -> tuple[Tensor, Tensor | None]:
    """GLA (module docstring); ``g`` [B, T, H, K] log decay <= 0, ``None`` for no decay.

    ``form="chunked"`` runs ``kernels.gla.chunk_gla`` (``chunk_size`` is used by the CPU
    reference), ``form="recurrent"`` runs ``kernels.gla.fused_recurrent_gla``.
    Returns ``(o [B, T, H, V] in v's dtype, final_state [B, H, K, V] float32/float64 or None)``.
    """
    batch, _, heads, key_dim, value_dim = check_qkv(q, k, v)
    check_choice("form", form, FORMS)
    if g is not None:
        check_log_decay("g", check_per_step("g", g, q, per_key=True))
    if initial_state is not None:
        check_state("initial_state", initial_state, (batch, heads, key_dim, value_dim),
                    "[B, H, K, V]", q)
    chunk_size = check_chunk_size(chunk_size)
    output_final_state = check_flag("output_final_state", output_final_state)
    scale = resolve_scale(scale, key_dim)
    from kernels import gla  # bridges -> kernels; imported here to keep `import bridges` light

    if form == "recurrent":
        return gla.fused_recurrent_gla(q, k, v, g, scale, initial_state, output_final_state)
    if gla.runs_triton(q, k, v, g, initial_state):
        return gla.chunk_gla(q, k, v, g, scale, initial_state, output_final_state)
    return gla.naive_chunk_gla(q, k, v, g, scale, initial_state, output_final_state,
                               chunk_size=chunk_size)
