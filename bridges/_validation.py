"""Argument checks shared by the token mixers of ``bridges`` (one place, one wording).

Every check raises ``TypeError`` for an argument of the wrong Python type and
``ValueError`` for a tensor whose shape, dtype or values are not allowed; the message
names the argument, what it got and what is allowed.
"""
from __future__ import annotations

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, value: object, *, ndim: int, layout: str) -> Tensor:
    """``value`` must be a floating torch tensor of rank ``ndim`` (``layout`` names the axes)."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, "
                        f"got {type(value).__name__}")
    if value.dim() != ndim:
        raise ValueError(f"{name} must have rank {ndim} ({layout}), got shape {tuple(value.shape)}")
    if value.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must have a floating dtype (float16, bfloat16, float32, "
                         f"float64), got {value.dtype}")
    return value


def check_qkv(q: Tensor, k: Tensor, v: Tensor) -> tuple[int, int, int, int, int]:
    """Check the [B, T, H, D] triple; return ``(batch, length, heads, key_dim, value_dim)``."""
    check_tensor("q", q, ndim=4, layout="[B, T, H, K]")
    check_tensor("k", k, ndim=4, layout="[B, T, H, K]")
    check_tensor("v", v, ndim=4, layout="[B, T, H, V]")
    if k.shape != q.shape:
        raise ValueError(f"k must have q's shape {tuple(q.shape)} [B, T, H, K], got {tuple(k.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must have shape [B, T, H, V] with [B, T, H] = {tuple(q.shape[:3])}, "
                         f"got {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    batch, length, heads, key_dim = q.shape
    return batch, length, heads, key_dim, v.shape[-1]


def check_per_step(name: str, value: object, q: Tensor, *, per_key: bool) -> Tensor:
    """A per-step gate: [B, T, H] (``per_key=False``) or [B, T, H, K] (``per_key=True``)."""
    layout = "[B, T, H, K]" if per_key else "[B, T, H]"
    check_tensor(name, value, ndim=4 if per_key else 3, layout=layout)
    expected = tuple(q.shape) if per_key else tuple(q.shape[:3])
    if tuple(value.shape) != expected:
        raise ValueError(f"{name} must have shape {layout} = {expected}, got {tuple(value.shape)}")
    if value.device != q.device:
        raise ValueError(f"{name} must be on q's device {q.device}, got {value.device}")
    return value


def check_log_decay(name: str, value: Tensor) -> Tensor:
    """A log decay must be <= 0 (decay factor in (0, 1]) and not NaN."""
    if bool(torch.isnan(value).any()):
        raise ValueError(f"{name} (log decay) contains NaN")
    if bool((value > 0).any()):
        raise ValueError(f"{name} is a log decay and must be <= 0 (decay factor exp({name}) in "
                         f"(0, 1]), got max {value.max().item():.4g}")
    return value


def check_state(name: str, value: object, expected: tuple[int, ...], layout: str,
                like: Tensor) -> Tensor:
    """An initial state of the given shape, on ``like``'s device, floating."""
    check_tensor(name, value, ndim=len(expected), layout=layout)
    if tuple(value.shape) != expected:
        raise ValueError(f"{name} must have shape {layout} = {expected}, got {tuple(value.shape)}")
    if value.device != like.device:
        raise ValueError(f"{name} must be on q's device {like.device}, got {value.device}")
    return value


def check_chunk_size(chunk_size: object) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


def resolve_scale(scale: float | None, key_dim: int) -> float:
    """``scale`` defaults to ``key_dim ** -0.5`` (fla's and Vaswani et al.'s choice)."""
    if scale is None:
        return key_dim ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    return float(scale)


def compute_dtype(x: Tensor) -> torch.dtype:
    """References compute in float32, or float64 when given float64 (gradcheck, oracles)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
