"""Scaled HMM message passing in three Triton launches (contract: ``naive.py``).

The torch scan of ``neuro/hmmglm/scan.py`` forms chunk products, scans them and re-runs
each chunk with about a hundred small elementwise launches per call, which dominate on a
GPU. Here time is cut into chunks of L steps and

1. chunk products: row i of P_c = M_(cL+1) ... M_(cL+L) is the basis vector e_i pushed
   through the chunk's L matrices, rescaled by its maximum after every step (log scale
   kept), so a chunk product is K independent vector walks: log P_c;
2. one lane per sequence walks the chunks in order, v_c+1 = logsumexp_i(v_c[i] +
   log P_c[i, :]): the exact log message entering every chunk;
3. one vector walk per (sequence, chunk) re-runs its L steps from that message,
   rescaling after every step, and writes the normalized messages and their log scales.

Each program handles a block of lanes (one lane = one vector walk: (sequence, chunk,
row) in step 1, (sequence, chunk) in step 3, a sequence in step 2), a lane's K-vector
and K x K matrix in registers: with one (sequence, chunk) per program, a 3 x 3 product
occupied a whole 4-warp program (H100, 64 restarts, both directions: 3.9 + 2.6 ms per
call for steps 1 and 3). K is padded to a power of two (entries 0, logs -inf).
Deterministic: no atomics, fixed summation order.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import new_buffer
from kernels.hmm_scan.naive import check_scan_inputs

CHUNK = 64
# lanes per program: 64 vector walks (steps 1, 3) and 16 sequences (step 2) at K <= 4;
# fewer for larger K so that a program holds at most ~1024 matrix entries (fp64 on sm_90:
# 64 lanes of 8 x 8 took all 255 registers and spilled)
LANES, PREFIX_LANES, MAX_TILE = 64, 16, 1024


def _lanes(most: int, block: int) -> int:
    return max(2, min(most, MAX_TILE // (block * block)))


@triton.jit
def _vector_walks_kernel(mats, log_start, log_final, vectors, log_scale, S, C, K, num_lanes,
                         STARTS: tl.constexpr, L: tl.constexpr, BK: tl.constexpr,
                         BLANE: tl.constexpr, WRITE_STEPS: tl.constexpr, TINY: tl.constexpr):
    """Lane n = (b, c, i), i < STARTS: v <- v M_s for the L steps s of chunk c of sequence b.

    STARTS = K (step 1): v starts at e_i, only log(v) + scale at the chunk end is written,
    to log_final (B, C, K, K). STARTS = 1 (step 3): v starts at exp(log_start[b, c] - max)
    and every step's normalized v and log scale are written (WRITE_STEPS).
    """
    lane = tl.program_id(0) * BLANE + tl.arange(0, BLANE)
    m_lane = lane < num_lanes
    row = lane % STARTS
    chunk = (lane // STARTS) % C
    seq = (lane // (STARTS * C)).to(tl.int64)
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    m_lk = m_lane[:, None] & m_k[None, :]
    m_lkk = m_lk[:, :, None] & m_k[None, None, :]
    if WRITE_STEPS:
        start = tl.load(log_start + ((seq * C + chunk) * K)[:, None] + o_k[None, :], mask=m_lk,
                        other=float("-inf"))
        scale = tl.max(start, axis=1)
        scale = tl.where(scale == float("-inf"), 0.0, scale)
        vec = tl.exp(start - scale[:, None])
    else:
        vec = tl.where(o_k[None, :] == row[:, None], 1.0, 0.0).to(mats.dtype.element_ty)
        scale = tl.zeros([BLANE], dtype=mats.dtype.element_ty)
    mat_offs = o_k[None, :, None] * K + o_k[None, None, :]  # (1, BK, BK): m * K + j
    for j in range(L):
        step = chunk * L + j
        live = m_lane & (step < S)
        base = (seq * S + step) * K * K  # (BLANE,)
        m = tl.load(mats + base[:, None, None] + mat_offs, mask=m_lkk & live[:, None, None],
                    other=0.0)
        moved = tl.sum(vec[:, :, None] * m, axis=1)  # (BLANE, BK): sum_m v_m M_mj
        top = tl.maximum(tl.max(moved, axis=1), TINY)
        # tl.max and tl.maximum drop NaN by default (seen under the interpreter); the reference's
        # amax keeps it: a NaN entry makes the whole message and its log scale NaN
        nan_entries = tl.sum(tl.where(tl.abs(moved) <= float("inf"), 0, 1), axis=1)  # NaN only
        top = tl.where(nan_entries > 0, float("nan"), top)
        vec = tl.where(live[:, None], moved / top[:, None], vec)
        scale = tl.where(live, scale + tl.log(top), scale)
        if WRITE_STEPS:
            tl.store(vectors + (seq * S + step)[:, None] * K + o_k[None, :], vec,
                     mask=live[:, None] & m_k[None, :])
            tl.store(log_scale + seq * S + step, scale, mask=live)
    if not WRITE_STEPS:
        out = tl.log(vec) + scale[:, None]
        tl.store(log_final + (((seq * C + chunk) * K + row) * K)[:, None] + o_k[None, :], out,
                 mask=m_lk)


@triton.jit
def _chunk_prefix_kernel(log_initial, log_chunk, log_enter, B, C, K, BK: tl.constexpr,
                         BLANE: tl.constexpr):
    seq = (tl.program_id(0) * BLANE + tl.arange(0, BLANE)).to(tl.int64)
    m_seq = seq < B
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    m_lk = m_seq[:, None] & m_k[None, :]
    m_lkk = m_lk[:, :, None] & m_k[None, None, :]
    v = tl.load(log_initial + seq[:, None] * K + o_k[None, :], mask=m_lk, other=float("-inf"))
    for c in range(C):
        tl.store(log_enter + ((seq * C + c) * K)[:, None] + o_k[None, :], v, mask=m_lk)
        log_p = tl.load(log_chunk + ((seq * C + c) * K * K)[:, None, None]
                        + o_k[None, :, None] * K + o_k[None, None, :], mask=m_lkk,
                        other=float("-inf"))
        x = v[:, :, None] + log_p
        top = tl.max(x, axis=1)
        top = tl.where(top == float("-inf"), 0.0, top)
        v = top + tl.log(tl.sum(tl.exp(x - top[:, None, :]), axis=1))


def triton_scaled_vecmat_scan(log_initial: torch.Tensor, mats: torch.Tensor, chunk: int = CHUNK
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``naive.scaled_vecmat_scan``; ``chunk`` = L steps per chunk."""
    check_scan_inputs(log_initial, mats)
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
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
    lanes, prefix_lanes = _lanes(LANES, block), _lanes(PREFIX_LANES, block)
    walks = batch * num_chunks * k
    _vector_walks_kernel[(triton.cdiv(walks, lanes),)](
        mats, None, log_chunk, None, None, steps, num_chunks, k, walks, k, chunk, block, lanes,
        False, tiny)
    _chunk_prefix_kernel[(triton.cdiv(batch, prefix_lanes),)](
        log_initial, log_chunk, log_enter, batch, num_chunks, k, block, prefix_lanes)
    walks = batch * num_chunks
    _vector_walks_kernel[(triton.cdiv(walks, lanes),)](
        mats, log_enter, None, vectors, log_scale, steps, num_chunks, k, walks, 1, chunk, block,
        lanes, True, tiny)
    return vectors, log_scale
