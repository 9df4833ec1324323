"""The gated delta rule: a decaying memory with an error-driven write.

Yang, Kautz & Hatamizadeh 2024, "Gated Delta Networks" (arXiv:2412.06464), per batch b and
head h, state S of shape [K, V], scalar log decay g_t <= 0 per head and step:

    S'_{t-1} = exp(g_t) S_{t-1}                      (multiplicative synaptic decay)
    S_t      = S'_{t-1} + beta_t k_t (v_t - S'_{t-1}^T k_t)^T
    o_t      = scale * q_t S_t

i.e. ``S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T``. With g = 0 it is
the delta rule (:mod:`bridges.delta_rule`, which holds the recurrent and chunked code both
ops share); with the error term removed it is GLA with a scalar decay per head.
"""
from __future__ import annotations

from torch import Tensor

from bridges.delta_rule import delta_rule_core


def gated_delta_rule(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor,
                     scale: float | None = None, initial_state: Tensor | None = None,
                     output_final_state: bool = False, *, form: str = "chunked",
                     chunk_size: int = 64) -> tuple[Tensor, Tensor | None]:
    """Gated delta rule (module docstring); ``form`` in ``recurrent|chunked``.

    q, k: [B, T, H, K]; v: [B, T, H, V]; g: [B, T, H] log decay (<= 0, else ``ValueError``);
    beta: [B, T, H]; initial_state: [B, H, K, V]. Returns ``(o [B, T, H, V] in v's dtype,
    final_state [B, H, K, V] float32/float64 or None)``.
    """
    if g is None:
        raise ValueError("g must be a [B, T, H] log-decay tensor (use bridges.delta_rule.delta_rule "
                         "for no decay), got None")
    return delta_rule_core(q, k, v, beta, g, scale, initial_state, output_final_state, form,
                           chunk_size)
