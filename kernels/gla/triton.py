"""Gated linear attention in Triton: chunked forward/backward and a fused recurrent form.

Same maths and contract as ``naive.py`` (Yang et al., arXiv:2312.06635). Every batch is
handled as a packed variable-length batch: [B, T] becomes B sequences of length T laid
end to end, so one code path serves both ``cu_seqlens`` and a plain batch.

Chunked algorithm (chunk C = 64 rows, sub-blocks of 16), b = within-chunk cumulative log
decay (<= 0), S_n = state before chunk n:

forward
  1. ``b`` per chunk (cumsum of g), stored in float32.
  2. intra-chunk scores A_ij = sum_k q_ik k_jk exp(b_ik - b_jk) (j <= i). Off-diagonal
     16x16 blocks are matmuls of q_i exp(b_i - b_r) and k_j exp(b_r - b_j) with r the first
     row of the query block, so both factors are <= 1 (no overflow for any gate strength).
     A diagonal block is the same matmul, but on float32 operands with IEEE fp32 dots (its
     terms are the largest: rounding them to bf16 cost dg 1.7% relative RMS error on an
     H100), when the spread |b_i - b_r| inside it is at most ``DIAGONAL_SAFE_SPAN`` (30);
     else (very strong gates) it takes the exact pairwise exponent column by column. The
     backward (step 7) does the same.
  3. states S_{n+1} = exp(b_C) S_n + (k exp(b_C - b))^T v, sequential over chunks, float32.
  4. o = scale ((q exp(b)) S_n + A v).
backward (dS_n = gradient of the state entering chunk n, dS_end = d final_state)
  5. dS_n = exp(b_C) dS_{n+1} + scale (q exp(b))^T do, sequential backwards; dh0 = dS_0.
  6. dv = scale A^T do + (k exp(b_C - b)) dS_{n+1};  dA = scale do v^T (lower triangle).
  7. dq, dk: intra-chunk parts from dA with the same stable block scheme as step 2, plus
     dq += scale exp(b) (do S_n^T), dk += exp(b_C - b) (v dS_{n+1}^T).
  8. dg: with G_t the cumulative log decay over the whole sequence, the output depends on
     G only through q_t exp(G_t) and k_s exp(-G_s), and the final state also through
     exp(G_T); hence dg_t = sum_{s >= t} (q_s dq_s - k_s dk_s) + sum_v dS_end * S_end,
     a reverse cumulative sum per sequence.

Inputs in float32, float16 or bfloat16 (``kernels.gla`` sends float64 to the naive path).
g is clamped below at -110 (``naive.log_decay_floor``) when the cumulative sum is formed:
exp of it is already 0 in float32, so nothing changes but that -inf (a reset) and huge
finite gates stay harmless. Precision limit (shared with fla's chunked form): b is a float32
sum, so weak gates after strong ones within a chunk (|b| ~ 64 x 50) carry relative errors
near ulp(|b|) ~ 1e-5 in their decay factors. Matmul operands are cast to the input dtype (fp32 inputs use
IEEE fp32 dots, not TF32), accumulation and states are float32. Under ``TRITON_INTERPRET=1``
the kernels run on CPU (tests); there is no autotuning (one configuration), so the same code
runs under the interpreter and on a GPU.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
import triton
import triton.language as tl

from kernels.dispatch import new_buffer
from kernels.gla.naive import _check_inputs, log_decay_floor, resolve_scale

CHUNK = 64
SUB = 16
MAX_HEAD_DIM = 256
# Largest within-block spread |b_i - b_r| of cumulative log decay for which a diagonal
# 16 x 16 block goes through one float32 matmul via its reference row: factors up to
# e^30 ~ 1e13 leave 25 decades of float32 headroom (max ~3e38) whatever the input dtype.
DIAGONAL_SAFE_SPAN = 30.0
# float64 is not among them: float64 dots would break the float32 accumulators, and a
# float64 request asks for float64 exactness, which the naive path gives.
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _pow2(x: int) -> int:
    return max(16, triton.next_power_of_2(x))


@triton.jit
def _cumsum_kernel(g, gc, bounds, H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr,
                   BK: tl.constexpr, FLOOR: tl.constexpr):
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    bos = tl.load(bounds + i_c * 2)
    eos = tl.load(bounds + i_c * 2 + 1)
    o_t = bos + tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    mask = (o_t < eos)[:, None] & (o_k < K)[None, :]
    offs = (o_t * H + i_h)[:, None] * K + o_k[None, :]
    x = tl.load(g + offs, mask=mask, other=0.0).to(tl.float32)
    x = tl.where(x < FLOOR, FLOOR, x)  # not tl.maximum: its max.f32 turns a NaN gate into FLOOR
    tl.store(gc + offs, tl.cumsum(x, axis=0), mask=mask)


@triton.jit
def _intra_scores_kernel(q, k, gc, A, bounds, H: tl.constexpr, K: tl.constexpr,
                         BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
                         PREC: tl.constexpr, SAFE_SPAN: tl.constexpr):
    i_c, i_h, i_i = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos = tl.load(bounds + i_c * 2)
    eos = tl.load(bounds + i_c * 2 + 1)
    r0 = bos + i_i * BC
    if r0 < eos:
        dt = q.dtype.element_ty
        o_i = r0 + tl.arange(0, BC)
        o_k = tl.arange(0, BK)
        m_i = o_i < eos
        m_k = o_k < K
        m_ik = m_i[:, None] & m_k[None, :]
        offs_i = (o_i * H + i_h)[:, None] * K + o_k[None, :]
        q_i = tl.load(q + offs_i, mask=m_ik, other=0.0).to(tl.float32)
        b_i = tl.load(gc + offs_i, mask=m_ik, other=0.0)
        b_r = tl.load(gc + (r0 * H + i_h) * K + o_k, mask=m_k, other=0.0)
        q_ref = (q_i * tl.exp(tl.where(m_ik, b_i - b_r[None, :], 0.0))).to(dt)
        o_c = tl.arange(0, BC)
        for j_blk in range(i_i):
            o_j = bos + j_blk * BC + o_c
            offs_j = (o_j * H + i_h)[:, None] * K + o_k[None, :]
            k_j = tl.load(k + offs_j, mask=m_k[None, :], other=0.0).to(tl.float32)
            b_j = tl.load(gc + offs_j, mask=m_k[None, :], other=0.0)
            k_ref = (k_j * tl.exp(b_r[None, :] - b_j)).to(dt)
            a = tl.dot(q_ref, tl.trans(k_ref), input_precision=PREC)
            tl.store(A + (o_i * H + i_h)[:, None] * BT + (j_blk * BC + o_c)[None, :], a,
                     mask=m_i[:, None])
        span = tl.max(tl.max(tl.where(m_ik, tl.abs(b_i - b_r[None, :]), 0.0), axis=1), axis=0)
        if span <= SAFE_SPAN:  # diagonal block as one matmul through the reference row
            k_i = tl.load(k + offs_i, mask=m_ik, other=0.0).to(tl.float32)
            k_diag = tl.where(m_ik, k_i * tl.exp(tl.where(m_ik, b_r[None, :] - b_i, 0.0)), 0.0)
            q_diag = q_i * tl.exp(tl.where(m_ik, b_i - b_r[None, :], 0.0))
            acc = tl.dot(q_diag, tl.trans(k_diag), input_precision="ieee")
            acc = tl.where(o_c[:, None] >= o_c[None, :], acc, 0.0)
        else:  # exact pairwise exponents, column by column
            acc = tl.zeros([BC, BC], dtype=tl.float32)
            for j in range(BC):
                jj = r0 + j
                m_j = m_k & ((o_k * 0 + jj) < eos)
                k_j = tl.load(k + (jj * H + i_h) * K + o_k, mask=m_j, other=0.0).to(tl.float32)
                b_j = tl.load(gc + (jj * H + i_h) * K + o_k, mask=m_j, other=0.0)
                valid = m_i & (o_i >= jj)
                e = tl.exp(tl.where(valid[:, None], b_i - b_j[None, :], 0.0))
                col = tl.sum(tl.where(valid[:, None], q_i * k_j[None, :] * e, 0.0), axis=1)
                acc = tl.where(o_c[None, :] == j, col[:, None], acc)
        tl.store(A + (o_i * H + i_h)[:, None] * BT + (i_i * BC + o_c)[None, :], acc,
                 mask=m_i[:, None])


@triton.jit
def _state_fwd_kernel(k, v, gc, h0, hs, ht, cu, chunk_offsets, H: tl.constexpr,
                      K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
                      BV: tl.constexpr, HAS_H0: tl.constexpr, STORE_FINAL: tl.constexpr,
                      PREC: tl.constexpr):
    i_k, i_v, i_nh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n = i_nh // H
    i_h = i_nh % H
    bos = tl.load(cu + i_n)
    eos = tl.load(cu + i_n + 1)
    c0 = tl.load(chunk_offsets + i_n)
    num_chunks = tl.cdiv(eos - bos, BT)
    dt = k.dtype.element_ty
    o_k = i_k * BK + tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    offs_kv = o_k[:, None] * V + o_v[None, :]
    state = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        state += tl.load(h0 + i_nh * K * V + offs_kv, mask=m_kv, other=0.0).to(tl.float32)
    for i in range(num_chunks):
        tl.store(hs + ((c0 + i) * H + i_h) * K * V + offs_kv, state, mask=m_kv)
        o_t = bos + i * BT + tl.arange(0, BT)
        m_t = o_t < eos
        last = tl.minimum(bos + i * BT + BT, eos) - 1
        offs_tk = (o_t * H + i_h)[:, None] * K + o_k[None, :]
        m_tk = m_t[:, None] & m_k[None, :]
        k_t = tl.load(k + offs_tk, mask=m_tk, other=0.0).to(tl.float32)
        b_t = tl.load(gc + offs_tk, mask=m_tk, other=0.0)
        b_last = tl.load(gc + (last * H + i_h) * K + o_k, mask=m_k, other=0.0)
        v_t = tl.load(v + (o_t * H + i_h)[:, None] * V + o_v[None, :],
                      mask=m_t[:, None] & m_v[None, :], other=0.0).to(dt)
        k_dec = tl.where(m_tk, k_t * tl.exp(b_last[None, :] - b_t), 0.0).to(dt)
        state = state * tl.exp(b_last)[:, None] + tl.dot(tl.trans(k_dec), v_t,
                                                           input_precision=PREC)
    if STORE_FINAL:
        tl.store(ht + i_nh * K * V + offs_kv, state, mask=m_kv)


@triton.jit
def _output_kernel(q, v, gc, A, hs, o, bounds, scale, H: tl.constexpr, K: tl.constexpr,
                   V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                   PREC: tl.constexpr):
    i_v, i_c, i_h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos = tl.load(bounds + i_c * 2)
    eos = tl.load(bounds + i_c * 2 + 1)
    dt = q.dtype.element_ty
    o_t = bos + tl.arange(0, BT)
    m_t = o_t < eos
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    acc = tl.zeros([BT, BV], dtype=tl.float32)
    for i_k in range(tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m_tk = m_t[:, None] & m_k[None, :]
        offs_tk = (o_t * H + i_h)[:, None] * K + o_k[None, :]
        q_t = tl.load(q + offs_tk, mask=m_tk, other=0.0).to(tl.float32)
        b_t = tl.load(gc + offs_tk, mask=m_tk, other=0.0)
        q_dec = tl.where(m_tk, q_t * tl.exp(b_t), 0.0).to(dt)
        s = tl.load(hs + (i_c * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :],
                    mask=m_k[:, None] & m_v[None, :], other=0.0).to(dt)
        acc += tl.dot(q_dec, s, input_precision=PREC)
    o_s = tl.arange(0, BT)
    m_a = m_t[:, None] & (o_s[None, :] <= tl.arange(0, BT)[:, None])
    a = tl.load(A + (o_t * H + i_h)[:, None] * BT + o_s[None, :], mask=m_a, other=0.0)
    v_t = tl.load(v + (o_t * H + i_h)[:, None] * V + o_v[None, :],
                  mask=m_t[:, None] & m_v[None, :], other=0.0).to(dt)
    acc += tl.dot(a.to(dt), v_t, input_precision=PREC)
    tl.store(o + (o_t * H + i_h)[:, None] * V + o_v[None, :], (acc * scale).to(o.dtype.element_ty),
             mask=m_t[:, None] & m_v[None, :])


@triton.jit
def _state_bwd_kernel(q, do, gc, dht, dhs, dh0, cu, chunk_offsets, scale, H: tl.constexpr,
                      K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
                      BV: tl.constexpr, HAS_DHT: tl.constexpr, STORE_DH0: tl.constexpr,
                      PREC: tl.constexpr):
    i_k, i_v, i_nh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n = i_nh // H
    i_h = i_nh % H
    bos = tl.load(cu + i_n)
    eos = tl.load(cu + i_n + 1)
    c0 = tl.load(chunk_offsets + i_n)
    num_chunks = tl.cdiv(eos - bos, BT)
    dt = q.dtype.element_ty
    o_k = i_k * BK + tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    offs_kv = o_k[:, None] * V + o_v[None, :]
    grad = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DHT:
        grad += tl.load(dht + i_nh * K * V + offs_kv, mask=m_kv, other=0.0).to(tl.float32)
    for step in range(num_chunks):
        i = num_chunks - 1 - step
        tl.store(dhs + ((c0 + i) * H + i_h) * K * V + offs_kv, grad, mask=m_kv)
        o_t = bos + i * BT + tl.arange(0, BT)
        m_t = o_t < eos
        last = tl.minimum(bos + i * BT + BT, eos) - 1
        offs_tk = (o_t * H + i_h)[:, None] * K + o_k[None, :]
        m_tk = m_t[:, None] & m_k[None, :]
        q_t = tl.load(q + offs_tk, mask=m_tk, other=0.0).to(tl.float32)
        b_t = tl.load(gc + offs_tk, mask=m_tk, other=0.0)
        b_last = tl.load(gc + (last * H + i_h) * K + o_k, mask=m_k, other=0.0)
        do_t = tl.load(do + (o_t * H + i_h)[:, None] * V + o_v[None, :],
                       mask=m_t[:, None] & m_v[None, :], other=0.0).to(dt)
        q_dec = tl.where(m_tk, q_t * tl.exp(b_t) * scale, 0.0).to(dt)
        grad = grad * tl.exp(b_last)[:, None] + tl.dot(tl.trans(q_dec), do_t,
                                                         input_precision=PREC)
    if STORE_DH0:
        tl.store(dh0 + i_nh * K * V + offs_kv, grad, mask=m_kv)


@triton.jit
def _dv_kernel(k, do, gc, A, dhs, dv, bounds, scale, H: tl.constexpr, K: tl.constexpr,
               V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
               PREC: tl.constexpr):
    i_v, i_c, i_h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos = tl.load(bounds + i_c * 2)
    eos = tl.load(bounds + i_c * 2 + 1)
    dt = k.dtype.element_ty
    o_t = bos + tl.arange(0, BT)
    m_t = o_t < eos
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    last = eos - 1
    o_s = tl.arange(0, BT)
    m_a = m_t[:, None] & (o_s[None, :] <= tl.arange(0, BT)[:, None])
    a = tl.load(A + (o_t * H + i_h)[:, None] * BT + o_s[None, :], mask=m_a, other=0.0)
    do_t = tl.load(do + (o_t * H + i_h)[:, None] * V + o_v[None, :],
                   mask=m_t[:, None] & m_v[None, :], other=0.0).to(dt)
    acc = tl.dot(tl.trans(a.to(dt)), do_t, input_precision=PREC) * scale
    for i_k in range(tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m_tk = m_t[:, None] & m_k[None, :]
        offs_tk = (o_t * H + i_h)[:, None] * K + o_k[None, :]
        k_t = tl.load(k + offs_tk, mask=m_tk, other=0.0).to(tl.float32)
        b_t = tl.load(gc + offs_tk, mask=m_tk, other=0.0)
        b_last = tl.load(gc + (last * H + i_h) * K + o_k, mask=m_k, other=0.0)
        k_dec = tl.where(m_tk, k_t * tl.exp(b_last[None, :] - b_t), 0.0).to(dt)
        grad = tl.load(dhs + (i_c * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :],
                       mask=m_k[:, None] & m_v[None, :], other=0.0).to(dt)
        acc += tl.dot(k_dec, grad, input_precision=PREC)
    tl.store(dv + (o_t * H + i_h)[:, None] * V + o_v[None, :], acc.to(dv.dtype.element_ty),
             mask=m_t[:, None] & m_v[None, :])


@triton.jit
def _dscores_kernel(v, do, dA, bounds, scale, H: tl.constexpr, V: tl.constexpr,
                    BT: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr):
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    bos = tl.load(bounds + i_c * 2)
    eos = tl.load(bounds + i_c * 2 + 1)
    dt = v.dtype.element_ty
    o_t = bos + tl.arange(0, BT)
    m_t = o_t < eos
    acc = tl.zeros([BT, BT], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v < V)[None, :]
        offs = (o_t * H + i_h)[:, None] * V + o_v[None, :]
        do_t = tl.load(do + offs, mask=m_tv, other=0.0).to(dt)
        v_t = tl.load(v + offs, mask=m_tv, other=0.0).to(dt)
        acc += tl.dot(do_t, tl.trans(v_t), input_precision=PREC)
    o_s = tl.arange(0, BT)
    acc = tl.where(o_s[None, :] <= tl.arange(0, BT)[:, None], acc * scale, 0.0)
    tl.store(dA + (o_t * H + i_h)[:, None] * BT + o_s[None, :], acc, mask=m_t[:, None])


@triton.jit
def _intra_grad_kernel(q, k, gc, dA, dq, dk, bounds, H: tl.constexpr, K: tl.constexpr,
                       BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
                       PREC: tl.constexpr, SAFE_SPAN: tl.constexpr):
    i_c, i_h, i_x = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos = tl.load(bounds + i_c * 2)
    eos = tl.load(bounds + i_c * 2 + 1)
    r0 = bos + i_x * BC
    if r0 < eos:
        dt = q.dtype.element_ty
        o_c = tl.arange(0, BC)
        o_x = r0 + o_c
        o_k = tl.arange(0, BK)
        m_x = o_x < eos
        m_k = o_k < K
        m_xk = m_x[:, None] & m_k[None, :]
        offs_x = (o_x * H + i_h)[:, None] * K + o_k[None, :]
        q_x = tl.load(q + offs_x, mask=m_xk, other=0.0).to(tl.float32)
        b_x = tl.load(gc + offs_x, mask=m_xk, other=0.0)
        b_r = tl.load(gc + (r0 * H + i_h) * K + o_k, mask=m_k, other=0.0)
        # dq_x = sum_{j < block x} dA_xj k_j exp(b_x - b_j), through the reference row r0.
        grad_q = tl.zeros([BC, BK], dtype=tl.float32)
        for j_blk in range(i_x):
            o_j = bos + j_blk * BC + o_c
            offs_j = (o_j * H + i_h)[:, None] * K + o_k[None, :]
            k_j = tl.load(k + offs_j, mask=m_k[None, :], other=0.0).to(tl.float32)
            b_j = tl.load(gc + offs_j, mask=m_k[None, :], other=0.0)
            k_ref = (k_j * tl.exp(b_r[None, :] - b_j)).to(dt)
            da = tl.load(dA + (o_x * H + i_h)[:, None] * BT + (j_blk * BC + o_c)[None, :],
                         mask=m_x[:, None], other=0.0).to(dt)
            grad_q += tl.dot(da, k_ref, input_precision=PREC)
        # dk_x = sum_{i > block x} dA_ix q_i exp(b_i - b_x), reference = first row of block i.
        grad_k = tl.zeros([BC, BK], dtype=tl.float32)
        span = tl.max(tl.max(tl.where(m_xk, tl.abs(b_x - b_r[None, :]), 0.0), axis=1), axis=0)
        if span <= SAFE_SPAN:  # the diagonal block's dq and dk through the reference row r0
            k_x = tl.load(k + offs_x, mask=m_xk, other=0.0).to(tl.float32)
            k_diag = tl.where(m_xk, k_x * tl.exp(tl.where(m_xk, b_r[None, :] - b_x, 0.0)), 0.0)
            q_diag = tl.where(m_xk, q_x * tl.exp(tl.where(m_xk, b_x - b_r[None, :], 0.0)), 0.0)
            lower = m_x[:, None] & (o_c[:, None] >= o_c[None, :])
            da_diag = tl.load(dA + (o_x * H + i_h)[:, None] * BT + (i_x * BC + o_c)[None, :],
                              mask=lower, other=0.0)
            grad_q += tl.dot(da_diag, k_diag, input_precision="ieee")
            dk_diag = tl.dot(tl.trans(da_diag), q_diag, input_precision="ieee")
            grad_k += tl.where(m_xk, dk_diag * tl.exp(tl.where(m_xk, b_r[None, :] - b_x, 0.0)),
                               0.0)
        grad_q = tl.where(m_xk, grad_q * tl.exp(tl.where(m_xk, b_x - b_r[None, :], 0.0)), 0.0)
        num_blocks = tl.cdiv(eos - bos, BC)
        for i_blk in range(i_x + 1, num_blocks):
            ri = bos + i_blk * BC
            o_i = ri + o_c
            m_i = o_i < eos
            m_ik = m_i[:, None] & m_k[None, :]
            offs_i = (o_i * H + i_h)[:, None] * K + o_k[None, :]
            q_i = tl.load(q + offs_i, mask=m_ik, other=0.0).to(tl.float32)
            b_i = tl.load(gc + offs_i, mask=m_ik, other=0.0)
            b_ri = tl.load(gc + (ri * H + i_h) * K + o_k, mask=m_k, other=0.0)
            q_ref = (q_i * tl.exp(tl.where(m_ik, b_i - b_ri[None, :], 0.0))).to(dt)
            da = tl.load(dA + (o_i * H + i_h)[:, None] * BT + (i_x * BC + o_c)[None, :],
                         mask=m_i[:, None], other=0.0).to(dt)
            part = tl.dot(tl.trans(da), q_ref, input_precision=PREC)
            grad_k += tl.where(m_xk, part * tl.exp(b_ri[None, :] - b_x), 0.0)
        if span > SAFE_SPAN:  # diagonal block: exact pairwise exponents, column by column
            for j in range(BC):
                jj = r0 + j
                m_j = m_k & ((o_k * 0 + jj) < eos)
                k_j = tl.load(k + (jj * H + i_h) * K + o_k, mask=m_j, other=0.0).to(tl.float32)
                b_j = tl.load(gc + (jj * H + i_h) * K + o_k, mask=m_j, other=0.0)
                valid = m_x & (o_x >= jj)
                da = tl.load(dA + (o_x * H + i_h) * BT + i_x * BC + j, mask=valid, other=0.0)
                e = tl.exp(tl.where(valid[:, None], b_x - b_j[None, :], 0.0))
                w = tl.where(valid[:, None], da[:, None] * e, 0.0)
                grad_q += w * k_j[None, :]
                row = tl.sum(w * q_x, axis=0)
                grad_k = tl.where(o_c[:, None] == j, grad_k + row[None, :], grad_k)
        tl.store(dq + offs_x, grad_q, mask=m_xk)
        tl.store(dk + offs_x, grad_k, mask=m_xk)


@triton.jit
def _inter_grad_kernel(q, k, v, do, gc, hs, dhs, dq_intra, dk_intra, dq, dk, dg_local, bounds,
                       scale, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                       BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                       PREC: tl.constexpr):
    i_k, i_c, i_h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos = tl.load(bounds + i_c * 2)
    eos = tl.load(bounds + i_c * 2 + 1)
    dt = q.dtype.element_ty
    o_t = bos + tl.arange(0, BT)
    m_t = o_t < eos
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    m_tk = m_t[:, None] & m_k[None, :]
    offs_tk = (o_t * H + i_h)[:, None] * K + o_k[None, :]
    acc_q = tl.zeros([BT, BK], dtype=tl.float32)
    acc_k = tl.zeros([BT, BK], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        offs_tv = (o_t * H + i_h)[:, None] * V + o_v[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        do_t = tl.load(do + offs_tv, mask=m_tv, other=0.0).to(dt)
        v_t = tl.load(v + offs_tv, mask=m_tv, other=0.0).to(dt)
        offs_kv = (i_c * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :]
        m_kv = m_k[:, None] & m_v[None, :]
        s = tl.load(hs + offs_kv, mask=m_kv, other=0.0).to(dt)
        ds = tl.load(dhs + offs_kv, mask=m_kv, other=0.0).to(dt)
        acc_q += tl.dot(do_t, tl.trans(s), input_precision=PREC)
        acc_k += tl.dot(v_t, tl.trans(ds), input_precision=PREC)
    last = eos - 1
    b_t = tl.load(gc + offs_tk, mask=m_tk, other=0.0)
    b_last = tl.load(gc + (last * H + i_h) * K + o_k, mask=m_k, other=0.0)
    q_t = tl.load(q + offs_tk, mask=m_tk, other=0.0).to(tl.float32)
    k_t = tl.load(k + offs_tk, mask=m_tk, other=0.0).to(tl.float32)
    grad_q = acc_q * scale * tl.exp(b_t) + tl.load(dq_intra + offs_tk, mask=m_tk, other=0.0)
    grad_k = tl.where(m_tk, acc_k * tl.exp(b_last[None, :] - b_t), 0.0)
    grad_k += tl.load(dk_intra + offs_tk, mask=m_tk, other=0.0)
    tl.store(dq + offs_tk, grad_q.to(dq.dtype.element_ty), mask=m_tk)
    tl.store(dk + offs_tk, grad_k.to(dk.dtype.element_ty), mask=m_tk)
    tl.store(dg_local + offs_tk, q_t * grad_q - k_t * grad_k, mask=m_tk)


@triton.jit
def _reverse_cumsum_kernel(dg_local, dg_final, dg, cu, H: tl.constexpr, K: tl.constexpr,
                           BT: tl.constexpr, BK: tl.constexpr, HAS_FINAL: tl.constexpr):
    i_k, i_nh = tl.program_id(0), tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos = tl.load(cu + i_n)
    eos = tl.load(cu + i_n + 1)
    num_chunks = tl.cdiv(eos - bos, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    carry = tl.zeros([BK], dtype=tl.float32)
    if HAS_FINAL:
        carry += tl.load(dg_final + i_nh * K + o_k, mask=m_k, other=0.0)
    for step in range(num_chunks):
        i = num_chunks - 1 - step
        o_t = bos + i * BT + tl.arange(0, BT)
        m_tk = (o_t < eos)[:, None] & m_k[None, :]
        offs = (o_t * H + i_h)[:, None] * K + o_k[None, :]
        x = tl.load(dg_local + offs, mask=m_tk, other=0.0)
        total = tl.sum(x, axis=0)
        suffix = total[None, :] - tl.cumsum(x, axis=0) + x
        tl.store(dg + offs, (suffix + carry[None, :]).to(dg.dtype.element_ty), mask=m_tk)
        carry += total


@triton.jit
def _fused_recurrent_kernel(q, k, v, g, o, h0, ht, cu, scale, H: tl.constexpr,
                            K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
                            BV: tl.constexpr, HAS_G: tl.constexpr, HAS_H0: tl.constexpr,
                            STORE_FINAL: tl.constexpr):
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos = tl.load(cu + i_n)
    eos = tl.load(cu + i_n + 1)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    offs_kv = o_k[:, None] * V + o_v[None, :]
    state = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        state += tl.load(h0 + i_nh * K * V + offs_kv, mask=m_kv, other=0.0).to(tl.float32)
    for t in range(bos, eos):
        offs_k = (t * H + i_h) * K + o_k
        q_t = tl.load(q + offs_k, mask=m_k, other=0.0).to(tl.float32)
        k_t = tl.load(k + offs_k, mask=m_k, other=0.0).to(tl.float32)
        v_t = tl.load(v + (t * H + i_h) * V + o_v, mask=m_v, other=0.0).to(tl.float32)
        if HAS_G:
            g_t = tl.load(g + offs_k, mask=m_k, other=0.0).to(tl.float32)
            state = state * tl.exp(g_t)[:, None]
        state += k_t[:, None] * v_t[None, :]
        out = tl.sum(state * q_t[:, None], axis=0) * scale
        tl.store(o + (t * H + i_h) * V + o_v, out.to(o.dtype.element_ty), mask=m_v)
    if STORE_FINAL:
        tl.store(ht + i_nh * K * V + offs_kv, state, mask=m_kv)


# ----------------------------------------------------------------------------- host side
class _Layout:
    """Packed-sequence bookkeeping: sequence offsets and the chunk table."""

    def __init__(self, batch: int, length: int, cu_seqlens: torch.Tensor | None,
                 device: torch.device):
        if cu_seqlens is None:
            offsets = np.arange(batch + 1, dtype=np.int64) * length
        else:
            offsets = np.asarray(cu_seqlens.tolist(), dtype=np.int64)
        lengths = np.diff(offsets)
        counts = -(-lengths // CHUNK)
        chunk_offsets = np.concatenate([[0], np.cumsum(counts)])
        starts = np.concatenate([np.arange(a, b, CHUNK) for a, b in itertools.pairwise(offsets)]
                                + [np.zeros(0, dtype=np.int64)])
        seq_of_chunk = np.repeat(np.arange(len(lengths)), counts)
        ends = np.minimum(starts + CHUNK, offsets[1:][seq_of_chunk])
        self.num_sequences = len(lengths)
        self.num_chunks = int(chunk_offsets[-1])
        self.total = int(offsets[-1])
        to = {"dtype": torch.int32, "device": device}
        self.cu = torch.as_tensor(offsets, **to)
        self.chunk_offsets = torch.as_tensor(chunk_offsets, **to)
        self.bounds = torch.as_tensor(np.stack([starts, ends], axis=1).reshape(-1), **to)


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


def _blocks(key_dim: int, value_dim: int) -> tuple[int, int, int]:
    return min(64, _pow2(key_dim)), min(64, _pow2(value_dim)), _pow2(key_dim)


def _forward(q, k, v, g, scale, h0, want_final, layout):
    """q, k, g: [T, H, K]; v: [T, H, V] (packed, contiguous). Returns o, gc, A, hs, ht."""
    total, heads, key_dim = q.shape
    value_dim = v.shape[-1]
    dev = q.device
    bk, bv, bk_full = _blocks(key_dim, value_dim)
    prec = _precision(q.dtype)
    nc, nn = layout.num_chunks, layout.num_sequences
    gc = new_buffer((total, heads, key_dim), torch.float32, dev)
    scores = new_buffer((total, heads, CHUNK), torch.float32, dev)
    hs = new_buffer((nc, heads, key_dim, value_dim), torch.float32, dev)
    ht = new_buffer((nn, heads, key_dim, value_dim), torch.float32, dev) if want_final else None
    o = new_buffer((total, heads, value_dim), v.dtype, dev)
    if nc > 0:
        _cumsum_kernel[(nc, heads)](g, gc, layout.bounds, heads, key_dim, CHUNK, bk_full,
                                    log_decay_floor(torch.float32))
        _intra_scores_kernel[(nc, heads, CHUNK // SUB)](q, k, gc, scores, layout.bounds, heads,
                                                        key_dim, CHUNK, SUB, bk_full, prec,
                                                        DIAGONAL_SAFE_SPAN)
    if nn > 0:
        grid = (triton.cdiv(key_dim, bk), triton.cdiv(value_dim, bv), nn * heads)
        _state_fwd_kernel[grid](k, v, gc, h0, hs, ht, layout.cu, layout.chunk_offsets, heads,
                                key_dim, value_dim, CHUNK, bk, bv, h0 is not None, want_final,
                                prec)
    if nc > 0:
        _output_kernel[(triton.cdiv(value_dim, bv), nc, heads)](
            q, v, gc, scores, hs, o, layout.bounds, scale, heads, key_dim, value_dim, CHUNK, bk,
            bv, prec)
    return o, gc, scores, hs, ht


def _backward(q, k, v, gc, scores, hs, ht, do, dht, scale, has_h0, layout):
    total, heads, key_dim = q.shape
    value_dim = v.shape[-1]
    dev = q.device
    bk, bv, bk_full = _blocks(key_dim, value_dim)
    prec = _precision(q.dtype)
    nc, nn = layout.num_chunks, layout.num_sequences
    dhs = new_buffer((nc, heads, key_dim, value_dim), torch.float32, dev)
    dh0 = new_buffer((nn, heads, key_dim, value_dim), torch.float32, dev) if has_h0 else None
    dA = new_buffer((total, heads, CHUNK), torch.float32, dev)
    dq_intra = new_buffer((total, heads, key_dim), torch.float32, dev)
    dk_intra = new_buffer((total, heads, key_dim), torch.float32, dev)
    dg_local = new_buffer((total, heads, key_dim), torch.float32, dev)
    dq = new_buffer(q.shape, q.dtype, dev)
    dk = new_buffer(k.shape, k.dtype, dev)
    dv = new_buffer(v.shape, v.dtype, dev)
    dg = new_buffer(q.shape, torch.float32, dev)
    if nn > 0:
        grid = (triton.cdiv(key_dim, bk), triton.cdiv(value_dim, bv), nn * heads)
        _state_bwd_kernel[grid](q, do, gc, dht, dhs, dh0, layout.cu, layout.chunk_offsets, scale,
                                heads, key_dim, value_dim, CHUNK, bk, bv, dht is not None,
                                has_h0, prec)
    if nc > 0:
        _dv_kernel[(triton.cdiv(value_dim, bv), nc, heads)](
            k, do, gc, scores, dhs, dv, layout.bounds, scale, heads, key_dim, value_dim, CHUNK,
            bk, bv, prec)
        _dscores_kernel[(nc, heads)](v, do, dA, layout.bounds, scale, heads, value_dim, CHUNK,
                                     bv, prec)
        _intra_grad_kernel[(nc, heads, CHUNK // SUB)](q, k, gc, dA, dq_intra, dk_intra,
                                                      layout.bounds, heads, key_dim, CHUNK, SUB,
                                                      bk_full, prec, DIAGONAL_SAFE_SPAN)
        _inter_grad_kernel[(triton.cdiv(key_dim, bk), nc, heads)](
            q, k, v, do, gc, hs, dhs, dq_intra, dk_intra, dq, dk, dg_local, layout.bounds, scale,
            heads, key_dim, value_dim, CHUNK, bk, bv, prec)
    dg_final = None
    if dht is not None and ht is not None:
        dg_final = (dht.float() * ht).sum(-1).contiguous()          # [N, H, K]
    if nn > 0:
        _reverse_cumsum_kernel[(triton.cdiv(key_dim, bk), nn * heads)](
            dg_local, dg_final, dg, layout.cu, heads, key_dim, CHUNK, bk, dg_final is not None)
    return dq, dk, dv, dg, dh0


class ChunkGLAFunction(torch.autograd.Function):
    """Autograd wrapper: packed inputs [T, H, D] in, packed output [T, H, V] out."""

    @staticmethod
    def forward(ctx, q, k, v, g, initial_state, scale, want_final, layout):
        o, gc, scores, hs, ht = _forward(q, k, v, g, scale, initial_state, want_final, layout)
        ctx.save_for_backward(q, k, v, gc, scores, hs, ht)
        ctx.scale, ctx.layout = scale, layout
        ctx.has_h0 = initial_state is not None
        ctx.h0_dtype = None if initial_state is None else initial_state.dtype
        ctx.g_dtype = g.dtype
        return o, ht

    @staticmethod
    @torch.autograd.function.once_differentiable  # the kernels are not differentiable
    def backward(ctx, do, dht):
        q, k, v, gc, scores, hs, ht = ctx.saved_tensors
        dq, dk, dv, dg, dh0 = _backward(q, k, v, gc, scores, hs, ht, do.contiguous(),
                                        None if dht is None else dht.contiguous(), ctx.scale,
                                        ctx.has_h0, ctx.layout)
        if dh0 is not None:
            dh0 = dh0.to(ctx.h0_dtype)
        return dq, dk, dv, dg.to(ctx.g_dtype), dh0, None, None, None


def _pack(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]).contiguous()


def _prepare(q, k, v, g, scale, initial_state, cu_seqlens):
    _check_inputs(q, k, v, g, initial_state, cu_seqlens)
    scale = resolve_scale(scale, q.shape[-1])
    if q.dtype not in TRITON_DTYPES:
        raise TypeError(f"the Triton GLA takes q of dtype {', '.join(map(str, TRITON_DTYPES))}, "
                        f"got {q.dtype}; kernels.gla's ops run float64 on the naive path")
    if q.shape[-1] > MAX_HEAD_DIM or v.shape[-1] > MAX_HEAD_DIM:
        raise ValueError(f"the Triton GLA supports head dims up to {MAX_HEAD_DIM}, got "
                         f"K={q.shape[-1]}, V={v.shape[-1]}")
    batch, length = q.shape[:2]
    layout = _Layout(batch, length, cu_seqlens, q.device)
    heads, key_dim, value_dim = q.shape[2], q.shape[-1], v.shape[-1]
    largest = max(layout.total * heads * max(key_dim, value_dim, CHUNK),
                  max(layout.num_chunks, layout.num_sequences) * heads * key_dim * value_dim)
    if largest >= 2**31:  # the kernels index their buffers with int32 offsets
        raise ValueError(f"the Triton GLA indexes buffers with int32 offsets: this input needs "
                         f"{largest} elements in one buffer (tokens x heads x dim, or chunks x "
                         f"heads x K x V, or sequences x heads x K x V), more than 2^31 - 1; split the batch")
    if g is None:
        g = torch.zeros_like(q)
    h0 = None if initial_state is None else initial_state.contiguous()
    return _pack(q), _pack(k), _pack(v), _pack(g), scale, h0, layout


def triton_chunk_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False,
                     cu_seqlens=None):
    """Chunked GLA on the Triton path; contract of ``kernels.gla.chunk_gla``."""
    batch, length = q.shape[:2]
    had_gate = g is not None
    qp, kp, vp, gp, scale, h0, layout = _prepare(q, k, v, g, scale, initial_state, cu_seqlens)
    if not had_gate:
        gp = gp.detach()
    o, ht = ChunkGLAFunction.apply(qp, kp, vp, gp, h0, scale, bool(output_final_state), layout)
    return o.reshape(batch, length, *o.shape[1:]), ht


def triton_fused_recurrent_gla(q, k, v, g, scale=None, initial_state=None,
                               output_final_state=False, cu_seqlens=None):
    """Step-by-step GLA (decoding) on the Triton path, forward only."""
    batch, length = q.shape[:2]
    has_gate = g is not None
    qp, kp, vp, gp, scale, h0, layout = _prepare(q, k, v, g, scale, initial_state, cu_seqlens)
    heads, key_dim = qp.shape[1:]
    value_dim = vp.shape[-1]
    nn = layout.num_sequences
    o = new_buffer(vp.shape, v.dtype, q.device)
    ht = (new_buffer((nn, heads, key_dim, value_dim), torch.float32, q.device)
          if output_final_state else None)
    bv = min(32, _pow2(value_dim))
    if nn > 0:
        _fused_recurrent_kernel[(triton.cdiv(value_dim, bv), nn * heads)](
            qp, kp, vp, gp, o, h0, ht, layout.cu, scale, heads, key_dim, value_dim,
            _pow2(key_dim), bv, has_gate, h0 is not None, bool(output_final_state))
    return o.reshape(batch, length, *o.shape[1:]), ht
