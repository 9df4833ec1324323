"""Gated linear attention (GLA): readable torch references (the CPU path and the test oracle).

Recurrence (Yang et al., arXiv:2312.06635, eq. 3-4), per batch b and head h, with a
state matrix ``S_t`` of shape [K, V] kept in float32:

    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t
    o_t = scale * q_t S_t

``g_t`` is the per-key *log* decay (``g <= 0``; ``g = 0`` everywhere is plain causal
linear attention, Katharopoulos et al. arXiv:2006.16236). Layout follows fla:
q, k, g: [B, T, H, K]; v: [B, T, H, V]; ``initial_state`` / ``final_state``: [B, H, K, V]
(or [N, H, K, V] with ``cu_seqlens``). ``scale`` defaults to K ** -0.5.

Two references:

* :func:`naive_recurrent_gla` -- the recurrence above, one time step at a time.
* :func:`naive_chunk_gla` -- the chunked form. Inside a chunk with cumulative log decay
  ``b_i = sum_{s <= i} g_s`` (relative to the chunk start, so ``b <= 0``):

      o_i = scale * ((q_i * exp(b_i)) S_0 + sum_{j <= i} (sum_k q_ik k_jk exp(b_ik - b_jk)) v_j)
      S_C = exp(b_C) * S_0 + sum_j (k_j * exp(b_C - b_j))^T v_j

  Every exponent here is a difference ``b_i - b_j`` with ``j <= i`` (or ``b_C - b_j``),
  hence <= 0: no factor can overflow however strong the gates are (the trick of dividing
  by ``exp(b_j)`` overflows for strong gates, fla issues #77/#122). The pairwise decay is
  materialised as a [C, C, K] tensor per chunk, so memory is B*H*C*C*K per chunk.

Variable-length batches follow fla: ``cu_seqlens`` (int, [N + 1], cumulative offsets
starting at 0) with B == 1; sequence n is rows ``cu_seqlens[n]:cu_seqlens[n+1]`` and has its
own initial and final state. A zero-length sequence returns its initial state (zeros if
none) as its final state.

Outputs have v's dtype; arithmetic runs in float32 (float64 inputs stay float64).
Gradients come from autograd through these references.
"""
from __future__ import annotations

import itertools
import math
import numbers

import torch
from torch import Tensor

from kernels.dispatch import check_same_device


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, g: Tensor | None,
                  initial_state: Tensor | None, cu_seqlens: Tensor | None) -> None:
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() != 4:
            raise ValueError(f"{name} must have shape [B, T, H, D], got shape "
                             f"{tuple(tensor.shape)}")
    for name, tensor in (("q", q), ("k", k), ("v", v), ("g", g), ("initial_state", initial_state)):
        if tensor is not None and isinstance(tensor, Tensor) and not tensor.is_floating_point():
            raise TypeError(f"{name} has dtype {tensor.dtype}; allowed: a floating dtype")
    for name, tensor in (("k", k), ("v", v)):
        if tensor.dtype != q.dtype:
            raise TypeError(f"{name} has dtype {tensor.dtype}; expected q's dtype {q.dtype}")
    check_same_device(q=q, k=k, v=v, g=g, initial_state=initial_state)
    if k.shape != q.shape:
        raise ValueError(f"k must have q's shape {tuple(q.shape)}, got {tuple(k.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must have shape [B, T, H, V] = {tuple(q.shape[:3])} + [V], "
                         f"got {tuple(v.shape)}")
    if g is not None:
        if not isinstance(g, Tensor):
            raise TypeError(f"g must be a torch.Tensor or None, got {type(g).__name__}")
        if g.shape != q.shape:
            raise ValueError(f"g (log decay per key) must have q's shape {tuple(q.shape)}, "
                             f"got {tuple(g.shape)}")
    batch, _, heads, key_dim = q.shape
    value_dim = v.shape[-1]
    num_sequences = batch
    if cu_seqlens is not None:
        if not isinstance(cu_seqlens, Tensor) or cu_seqlens.dtype not in (torch.int32, torch.int64):
            raise TypeError("cu_seqlens must be an int32/int64 tensor of cumulative sequence "
                            f"offsets, got {cu_seqlens!r}")
        if batch != 1:
            raise ValueError(f"with cu_seqlens the batch size must be 1 (sequences are packed "
                             f"along T), got B={batch}")
        if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
            raise ValueError(f"cu_seqlens must be 1-D with at least 2 entries, got shape "
                             f"{tuple(cu_seqlens.shape)}")
        offsets = cu_seqlens.tolist()
        if offsets[0] != 0 or offsets[-1] != q.shape[1] or any(
                b < a for a, b in itertools.pairwise(offsets)):
            raise ValueError(f"cu_seqlens must be non-decreasing from 0 to T={q.shape[1]}, "
                             f"got {offsets}")
        num_sequences = len(offsets) - 1
    if initial_state is not None:
        expected = (num_sequences, heads, key_dim, value_dim)
        if not isinstance(initial_state, Tensor) or tuple(initial_state.shape) != expected:
            got = tuple(initial_state.shape) if isinstance(initial_state, Tensor) else initial_state
            raise ValueError(f"initial_state must have shape [N, H, K, V] = {expected}, got {got}")


def resolve_scale(scale, key_dim: int) -> float:
    """``scale``: None (K ** -0.5, needs K >= 1) or a finite real number."""
    if scale is None:
        if key_dim == 0:
            raise ValueError("scale=None means K ** -0.5, undefined for key dim K=0; pass scale")
        return key_dim ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):  # numpy floats too
        raise TypeError(f"scale={scale!r} must be a float or None")
    if not math.isfinite(scale):
        raise ValueError(f"scale={scale!r} must be finite")
    return float(scale)


def log_decay_floor(dtype: torch.dtype) -> float:
    """A log decay below which exp() of it, or of any sum containing it, is exactly 0 in
    ``dtype`` (float32's smallest subnormal is e^-103.3, float64's e^-744.4). The chunked
    forms clamp g to it: the result is unchanged, -inf (a full reset) gives no
    exp(-inf - -inf) = NaN, and a huge finite gate no longer swamps the float cumulative
    sum that the weak gates after it are differences of."""
    return -750.0 if dtype == torch.float64 else -110.0


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _split_sequences(q, k, v, g, initial_state, cu_seqlens):
    """Yield (q, k, v, g, h0) per sequence as [1, T_n, H, D] slices (or the whole batch)."""
    if cu_seqlens is None:
        yield q, k, v, g, initial_state
        return
    offsets = cu_seqlens.tolist()
    for n, (start, end) in enumerate(itertools.pairwise(offsets)):
        h0 = None if initial_state is None else initial_state[n:n + 1]
        yield (q[:, start:end], k[:, start:end], v[:, start:end],
               None if g is None else g[:, start:end], h0)


def _recurrent_one(q, k, v, g, scale, h0):
    batch, length, heads, key_dim = q.shape
    dtype = _compute_dtype(q)
    q, k, v = (x.to(dtype) for x in (q, k, v))
    state = (torch.zeros(batch, heads, key_dim, v.shape[-1], dtype=dtype, device=q.device)
             if h0 is None else h0.to(dtype))
    outputs = []
    for t in range(length):
        if g is not None:
            state = torch.exp(g[:, t].to(dtype)).unsqueeze(-1) * state
        state = state + k[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)
        outputs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], state))
    out = (torch.stack(outputs, dim=1) if outputs
           else q.new_zeros(batch, 0, heads, v.shape[-1], dtype=dtype))
    return out, state


def _chunk_one(q, k, v, g, scale, h0, chunk_size):
    batch, length, heads, key_dim = q.shape
    dtype = _compute_dtype(q)
    # [B, H, T, D] in the compute dtype.
    q, k, v = (x.transpose(1, 2).to(dtype) for x in (q, k, v))
    g = None if g is None else g.transpose(1, 2).to(dtype)
    state = (torch.zeros(batch, heads, key_dim, v.shape[-1], dtype=dtype, device=q.device)
             if h0 is None else h0.to(dtype))
    outputs = []
    for start in range(0, length, chunk_size):
        end = min(start + chunk_size, length)
        size = end - start
        q_c, k_c, v_c = q[:, :, start:end], k[:, :, start:end], v[:, :, start:end]
        causal = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
        if g is None:
            scores = (q_c @ k_c.transpose(-1, -2)).masked_fill(~causal, 0.0)
            inter = q_c @ state
            state = state + k_c.transpose(-1, -2) @ v_c
        else:
            cum = torch.cumsum(g[:, :, start:end].clamp_min(log_decay_floor(dtype)), dim=2)  # b_i
            diff = cum.unsqueeze(3) - cum.unsqueeze(2)                          # b_i - b_j
            diff = torch.where(causal[:, :, None], diff, torch.full_like(diff, -torch.inf))
            scores = torch.einsum("bhik,bhjk,bhijk->bhij", q_c, k_c, torch.exp(diff))
            inter = (q_c * torch.exp(cum)) @ state
            last = cum[:, :, -1]                                                # b_C, [B,H,K]
            k_decayed = k_c * torch.exp(last.unsqueeze(2) - cum)
            state = torch.exp(last).unsqueeze(-1) * state + k_decayed.transpose(-1, -2) @ v_c
        outputs.append(scale * (inter + scores @ v_c))
    out = (torch.cat(outputs, dim=2) if outputs
           else q.new_zeros(batch, heads, 0, v.shape[-1], dtype=dtype))
    return out.transpose(1, 2), state


def _run(one, q, k, v, g, scale, initial_state, output_final_state, cu_seqlens, **kwargs):
    _check_inputs(q, k, v, g, initial_state, cu_seqlens)
    scale = resolve_scale(scale, q.shape[-1])
    outs, finals = [], []
    for q_n, k_n, v_n, g_n, h0_n in _split_sequences(q, k, v, g, initial_state, cu_seqlens):
        out, final = one(q_n, k_n, v_n, g_n, scale, h0_n, **kwargs)
        outs.append(out)
        finals.append(final)
    out = torch.cat(outs, dim=1).to(v.dtype)
    final_state = None
    if output_final_state:
        final = torch.cat(finals, dim=0)
        final_state = final if final.dtype == torch.float64 else final.float()
    return out, final_state


def naive_recurrent_gla(q: Tensor, k: Tensor, v: Tensor, g: Tensor | None = None,
                        scale: float | None = None, initial_state: Tensor | None = None,
                        output_final_state: bool = False, cu_seqlens: Tensor | None = None
                        ) -> tuple[Tensor, Tensor | None]:
    """GLA by the step-by-step recurrence (module docstring). ``g=None`` means zero gates.

    Returns ``(o [B, T, H, V] in v's dtype, final_state [N, H, K, V] float32 (float64 for
    float64 inputs) or None)``.
    """
    return _run(_recurrent_one, q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)


def naive_chunk_gla(q: Tensor, k: Tensor, v: Tensor, g: Tensor | None = None,
                    scale: float | None = None, initial_state: Tensor | None = None,
                    output_final_state: bool = False, cu_seqlens: Tensor | None = None,
                    chunk_size: int = 32) -> tuple[Tensor, Tensor | None]:
    """GLA in the overflow-free chunked form (module docstring). ``g=None`` means zero gates.

    Same contract as :func:`naive_recurrent_gla`; ``chunk_size`` only trades memory
    (B*H*chunk_size^2*K per chunk) for Python-loop iterations.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return _run(_chunk_one, q, k, v, g, scale, initial_state, output_final_state, cu_seqlens,
                chunk_size=chunk_size)


def naive_linear_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None,
                           initial_state: Tensor | None = None, output_final_state: bool = False,
                           cu_seqlens: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Causal linear attention ``o_t = scale * q_t sum_{s<=t} k_s^T v_s``: GLA with zero gates."""
    return naive_chunk_gla(q, k, v, None, scale, initial_state, output_final_state, cu_seqlens)
