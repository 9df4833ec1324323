"""Causal softmax (dot-product) attention, the readable reference.

Vaswani et al. 2017 (arXiv:1706.03762), causal form, per batch b and head h:

    o_t = sum_{s <= t} softmax_s(scale * q_t . k_s) v_s

Layout [B, T, H, D]. Its "state" is the key-value cache: a :class:`KVCache` holding every
key and value seen so far ([B, T_past, H, K] and [B, T_past, H, V]). With an
``initial_state`` the queries also attend to the cached past, so running T single steps
with the cache carried equals one call on all T tokens (that is how decoding works; the
state grows with T, which is the point of contrast with the fixed-size linear memories).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from bridges._validation import check_flag, check_qkv, check_tensor, compute_dtype, resolve_scale


class KVCache(NamedTuple):
    """Keys [B, T_past, H, K] and values [B, T_past, H, V] seen so far."""

    keys: Tensor
    values: Tensor


def _check_cache(cache: object, q: Tensor, v: Tensor) -> KVCache:
    if not isinstance(cache, tuple) or len(cache) != 2:
        raise TypeError(f"initial_state must be a KVCache(keys, values) or None, "
                        f"got {type(cache).__name__}")
    keys, values = cache
    check_tensor("initial_state.keys", keys, ndim=4, layout="[B, T_past, H, K]")
    check_tensor("initial_state.values", values, ndim=4, layout="[B, T_past, H, V]")
    for name, tensor in (("initial_state.keys", keys), ("initial_state.values", values)):
        if tensor.device != q.device:
            raise ValueError(f"{name} must be on q's device {q.device}, got {tensor.device}")
    batch, _, heads, key_dim = q.shape
    if (keys.shape[0], keys.shape[2], keys.shape[3]) != (batch, heads, key_dim):
        raise ValueError(f"initial_state.keys must have shape [B, T_past, H, K] with B={batch}, "
                         f"H={heads}, K={key_dim}, got {tuple(keys.shape)}")
    if (values.shape[0], values.shape[1], values.shape[2], values.shape[3]) != (
            batch, keys.shape[1], heads, v.shape[-1]):
        raise ValueError(f"initial_state.values must have shape {(batch, keys.shape[1], heads, v.shape[-1])}"
                         f" [B, T_past, H, V], got {tuple(values.shape)}")
    return KVCache(keys, values)


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None,
                      initial_state: KVCache | None = None, output_final_state: bool = False
                      ) -> tuple[Tensor, KVCache | None]:
    """Causal softmax attention; returns ``(o [B, T, H, V], final KVCache or None)``.

    Query t (absolute position ``T_past + t``) attends to every cached key and to keys
    ``0..t`` of this call. Arithmetic in float32 (float64 stays float64); ``o`` has v's
    dtype. ``scale`` defaults to ``K ** -0.5``.
    """
    _, length, _, key_dim, _ = check_qkv(q, k, v)
    scale = resolve_scale(scale, key_dim)
    output_final_state = check_flag("output_final_state", output_final_state)
    past = 0
    keys, values = k, v
    if initial_state is not None:
        cache = _check_cache(initial_state, q, v)
        past = cache.keys.shape[1]
        keys = torch.cat([cache.keys.to(k.dtype), k], dim=1)
        values = torch.cat([cache.values.to(v.dtype), v], dim=1)
    dtype = compute_dtype(q)
    scores = torch.einsum("bthk,bshk->bhts", q.to(dtype), keys.to(dtype)) * scale
    # Query t may see absolute positions s <= past + t.
    allowed = torch.ones(length, past + length, dtype=torch.bool, device=q.device).tril(past)
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    out = torch.einsum("bhts,bshv->bthv", weights, values.to(dtype)).to(v.dtype)
    final_state = KVCache(keys, values) if output_final_state else None
    return out, final_state
