"""Causal linear attention in its parallel, recurrent and chunked forms (readable references).

Katharopoulos et al. 2020 (arXiv:2006.16236), causal, no feature map (apply one to q and
k before calling if you want one), per batch b and head h, with state S_t of shape [K, V]:

    S_t = S_{t-1} + k_t^T v_t            (S_0 = initial_state or 0)
    o_t = scale * q_t S_t                 = scale * (q_t S_0 + sum_{s <= t} (q_t . k_s) v_s)

Three forms compute the same numbers:

* ``parallel``: the masked T x T score matrix ``(q k^T) * causal`` times v (O(T^2)).
* ``recurrent``: the state update one step at a time (O(T), what decoding runs).
* ``chunked``: parallel inside chunks of ``chunk_size`` tokens, state carried between them.

``normalize=True`` divides by ``scale * q_t . z_t`` with ``z_t = z_0 + sum_{s<=t} k_s`` (the
softmax-like normaliser of Katharopoulos et al.; meaningful for positive feature maps). We
carry z as one extra value column: the state then has shape [B, H, K, V + 1] with the last
column z, i.e. normalized linear attention is plain linear attention on ``[v, 1]`` followed
by a division. This packing is our choice.

This is the same memory as :func:`bridges.hebbian.hebbian_memory` (the Hebbian outer-product
memory read out by the query); the tests check that equality to 1e-10 in float64.
"""
from __future__ import annotations

import torch
from torch import Tensor

from bridges._validation import (
    check_choice,
    check_chunk_size,
    check_flag,
    check_qkv,
    check_state,
    compute_dtype,
    resolve_scale,
)

FORMS = ("parallel", "recurrent", "chunked")


def _prepare(q, k, v, scale, initial_state, normalize):
    batch, _, heads, key_dim, value_dim = check_qkv(q, k, v)
    scale = resolve_scale(scale, key_dim)
    if normalize and not scale > 0:  # the normaliser carries the scale: its sign test needs > 0
        raise ValueError(f"scale={scale} with normalize=True: the scale cancels in the ratio "
                         "but must be > 0 (the normaliser's sign is checked)")
    dtype = compute_dtype(q)
    q, k, v = (x.to(dtype) for x in (q, k, v))
    if normalize:
        v = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
    state_dim = v.shape[-1]
    if initial_state is None:
        state = q.new_zeros(batch, heads, key_dim, state_dim)
    else:
        layout = "[B, H, K, V + 1] (last column: key sum)" if normalize else "[B, H, K, V]"
        state = check_state("initial_state", initial_state, (batch, heads, key_dim, state_dim),
                            layout, q).to(dtype)
    return q, k, v, scale, state, value_dim


def _finish(out, state, normalize, value_dim, out_dtype, output_final_state):
    if normalize:
        denominator = out[..., value_dim:]
        if not bool((denominator > 0).all()):
            raise ValueError("normalize=True needs q_t . sum_{i<=t} k_i > 0 at every step (use "
                             "positive feature maps, e.g. elu(x) + 1); got a zero or negative "
                             "normaliser, which would give inf/NaN")
        out = out[..., :value_dim] / denominator
    return out.to(out_dtype), (state if output_final_state else None)


def _parallel(q, k, v, scale, state):
    length = q.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
    scores = torch.einsum("bthk,bshk->bhts", q, k).masked_fill(~causal, 0.0)
    out = torch.einsum("bhts,bshv->bthv", scores, v) + torch.einsum("bthk,bhkv->bthv", q, state)
    return scale * out, state + torch.einsum("bthk,bthv->bhkv", k, v)


def _recurrent(q, k, v, scale, state):
    outputs = []
    for t in range(q.shape[1]):
        state = state + k[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)
        outputs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], state))
    if not outputs:
        return v.new_zeros(v.shape), state
    return torch.stack(outputs, dim=1), state


def _chunked(q, k, v, scale, state, chunk_size):
    outputs = []
    for start in range(0, q.shape[1], chunk_size):
        end = start + chunk_size
        out, state = _parallel(q[:, start:end], k[:, start:end], v[:, start:end], scale, state)
        outputs.append(out)
    if not outputs:
        return v.new_zeros(v.shape), state
    return torch.cat(outputs, dim=1), state


def linear_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None,
                     initial_state: Tensor | None = None, output_final_state: bool = False,
                     *, form: str = "chunked", chunk_size: int = 64, normalize: bool = False
                     ) -> tuple[Tensor, Tensor | None]:
    """Causal linear attention (module docstring); ``form`` in ``parallel|recurrent|chunked``.

    q, k: [B, T, H, K]; v: [B, T, H, V]; initial_state: [B, H, K, V] ([B, H, K, V + 1] when
    ``normalize``). Returns ``(o [B, T, H, V] in v's dtype, final_state or None)``; the state
    is float32 (float64 for float64 inputs).
    """
    check_choice("form", form, FORMS)
    chunk_size = check_chunk_size(chunk_size)
    normalize = check_flag("normalize", normalize)
    output_final_state = check_flag("output_final_state", output_final_state)
    out_dtype = v.dtype if isinstance(v, Tensor) else None
    q, k, v, scale, state, value_dim = _prepare(q, k, v, scale, initial_state, normalize)
    if form == "parallel":
        out, state = _parallel(q, k, v, scale, state)
    elif form == "recurrent":
        out, state = _recurrent(q, k, v, scale, state)
    else:
        out, state = _chunked(q, k, v, scale, state, chunk_size)
    return _finish(out, state, normalize, value_dim, out_dtype, output_final_state)


def parallel_linear_attention(q, k, v, scale=None, initial_state=None, output_final_state=False,
                              *, normalize=False):
    """:func:`linear_attention` with ``form="parallel"``."""
    return linear_attention(q, k, v, scale, initial_state, output_final_state, form="parallel",
                            normalize=normalize)


def recurrent_linear_attention(q, k, v, scale=None, initial_state=None, output_final_state=False,
                               *, normalize=False):
    """:func:`linear_attention` with ``form="recurrent"``."""
    return linear_attention(q, k, v, scale, initial_state, output_final_state, form="recurrent",
                            normalize=normalize)


def chunked_linear_attention(q, k, v, scale=None, initial_state=None, output_final_state=False,
                             *, chunk_size=64, normalize=False):
    """:func:`linear_attention` with ``form="chunked"``."""
    return linear_attention(q, k, v, scale, initial_state, output_final_state, form="chunked",
                            chunk_size=chunk_size, normalize=normalize)
