"""Scaled HMM message passing in three Triton launches (contract: ``naive.py``).

The torch scan of ``neuro/hmmglm/scan.py`` forms chunk products, scans them and re-runs
each chunk with about a hundred small elementwise launches per call, which dominate on a
GPU. Here time is cut into chunks of L steps and

1. one program per (sequence, chunk) multiplies its L matrices in registers, rescaling
   each row by its maximum after every step (row log scales kept): log P_c;
2. one program per sequence walks the chunks in order, v_c+1 = logsumexp_i(v_c[i] +
   log P_c[i, :]): the exact log message entering every chunk;
3. one program per (sequence, chunk) re-runs its L steps from that message, rescaling
   after every step, and writes the normalized messages and their log scales.

K is padded to a power of two inside the kernels (entries 0, logs -inf). Deterministic:
no atomics, fixed summation order.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import new_buffer
from kernels.hmm_scan.naive import check_scan_inputs

CHUNK = 32


@triton.jit
def _chunk_products_kernel(mats, log_chunk, S, C, K, L: tl.constexpr, BK: tl.constexpr,
                           TINY: tl.constexpr):
    b, c = tl.program_id(0), tl.program_id(1)
    o_i = tl.arange(0, BK)
    o_j = tl.arange(0, BK)
    m_kk = (o_i < K)[:, None] & (o_j < K)[None, :]
    dtype = mats.dtype.element_ty
    running = tl.where((o_i[:, None] == o_j[None, :]) & m_kk, 1.0, 0.0).to(dtype)
    row_log = tl.zeros([BK], dtype=dtype)
    base = b.to(tl.int64) * S
    for j in range(L):
        s = c * L + j
        if s < S:
            m = tl.load(mats + ((base + s) * K + o_i[:, None]) * K + o_j[None, :], mask=m_kk,
                        other=0.0)
            running = tl.sum(running[:, :, None] * m[None, :, :], axis=1)
            row_max = tl.maximum(tl.max(running, axis=1), TINY)
            running = running / row_max[:, None]
            row_log += tl.log(row_max)
    out = tl.log(running) + row_log[:, None]
    tl.store(log_chunk + ((b.to(tl.int64) * C + c) * K + o_i[:, None]) * K + o_j[None, :], out,
             mask=m_kk)


@triton.jit
def _chunk_prefix_kernel(log_initial, log_chunk, log_enter, C, K, BK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    o_i = tl.arange(0, BK)
    o_j = tl.arange(0, BK)
    m_k = o_i < K
    m_kk = m_k[:, None] & (o_j < K)[None, :]
    v = tl.load(log_initial + b * K + o_i, mask=m_k, other=float("-inf"))
    for c in range(C):
        tl.store(log_enter + (b * C + c) * K + o_i, v, mask=m_k)
        log_p = tl.load(log_chunk + ((b * C + c) * K + o_i[:, None]) * K + o_j[None, :],
                        mask=m_kk, other=float("-inf"))
        x = v[:, None] + log_p
        top = tl.max(x, axis=0)
        top = tl.where(top == float("-inf"), 0.0, top)
        v = top + tl.log(tl.sum(tl.exp(x - top[None, :]), axis=0))


@triton.jit
def _chunk_messages_kernel(mats, log_enter, vectors, log_scale, S, C, K, L: tl.constexpr,
                           BK: tl.constexpr, TINY: tl.constexpr):
    b, c = tl.program_id(0), tl.program_id(1)
    o_i = tl.arange(0, BK)
    o_j = tl.arange(0, BK)
    m_k = o_i < K
    m_kk = m_k[:, None] & (o_j < K)[None, :]
    base = b.to(tl.int64) * S
    enter = tl.load(log_enter + (b.to(tl.int64) * C + c) * K + o_i, mask=m_k, other=float("-inf"))
    scale = tl.max(enter, axis=0)
    scale = tl.where(scale == float("-inf"), 0.0, scale)
    vec = tl.exp(enter - scale)
    for j in range(L):
        s = c * L + j
        if s < S:
            m = tl.load(mats + ((base + s) * K + o_i[:, None]) * K + o_j[None, :], mask=m_kk,
                        other=0.0)
            vec = tl.sum(vec[:, None] * m, axis=0)
            vmax = tl.maximum(tl.max(vec, axis=0), TINY)
            vec = vec / vmax
            scale += tl.log(vmax)
            tl.store(vectors + (base + s) * K + o_j, vec, mask=o_j < K)
            tl.store(log_scale + base + s, scale)


def triton_scaled_vecmat_scan(log_initial: torch.Tensor, mats: torch.Tensor, chunk: int = CHUNK
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``naive.scaled_vecmat_scan``."""
    check_scan_inputs(log_initial, mats)
    batch, steps, k, _ = mats.shape
    if steps == 0 or batch == 0:
        return mats.new_zeros(batch, steps, k), mats.new_zeros(batch, steps)
    mats, log_initial = mats.contiguous(), log_initial.contiguous()
    num_chunks = triton.cdiv(steps, chunk)
    block = max(2, triton.next_power_of_2(k))
    tiny = float(torch.finfo(mats.dtype).tiny)
    device, dtype = mats.device, mats.dtype
    log_chunk = new_buffer((batch, num_chunks, k, k), dtype, device)
    log_enter = new_buffer((batch, num_chunks, k), dtype, device)
    vectors = new_buffer((batch, steps, k), dtype, device)
    log_scale = new_buffer((batch, steps), dtype, device)
    _chunk_products_kernel[(batch, num_chunks)](mats, log_chunk, steps, num_chunks, k, chunk,
                                                block, tiny)
    _chunk_prefix_kernel[(batch,)](log_initial, log_chunk, log_enter, num_chunks, k, block)
    _chunk_messages_kernel[(batch, num_chunks)](mats, log_enter, vectors, log_scale, steps,
                                                num_chunks, k, chunk, block, tiny)
    return vectors, log_scale
