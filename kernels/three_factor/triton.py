"""Three-factor readout step in Triton (same maths and signature as ``naive.py``).

One launch per step, one program per network b (grid (B,)); D features, M readouts:

1. readout: z[m] = W[b, m] . x[b] for all M rows at once (a [BM, BD] tile per block of
   features, float32 accumulation), e = y - z, and the per-row step s = eta_m * g * e;
2. update, block by block over D: E' = a E + (1 - a) x, then the rank-one write
   W'[b, m] = W + s[m] E' (online rows) or A'[b, m] = A + s[m] E' (offline rows).

W[b] is read twice (the second read of a network's M x D block mostly hits L2), the
minimum for an update that needs z before it can write. One launch instead of the
reference's ~9 torch kernels: at the what/when sizes the step is bound by host-side
launch overhead, not by memory traffic.

As in the reference, inputs are never modified; with ``online`` a python bool the untouched
tensor (``pending`` when online, ``weights`` when offline) is returned as is.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import new_buffer

ALL_ONLINE, ALL_OFFLINE, MIXED = 0, 1, 2


@triton.jit
def _three_factor_kernel(w, pending, elig, x, y, gate, lr, online, z, err, w_new, pending_new,
                         elig_new, decay, lr_scalar, M, D, LR_PTR: tl.constexpr,
                         BM: tl.constexpr, BD: tl.constexpr, MODE: tl.constexpr):
    i_b = tl.program_id(0)
    o_m = tl.arange(0, BM)
    m_m = o_m < M
    rows = (i_b * M + o_m).to(tl.int64) * D
    # 1. readout with the old weights, error, per-row step size
    acc = tl.zeros([BM, BD], dtype=tl.float32)
    for start in range(0, D, BD):
        o_d = start + tl.arange(0, BD)
        m_d = o_d < D
        x_t = tl.load(x + i_b * D + o_d, mask=m_d, other=0.0).to(tl.float32)
        w_t = tl.load(w + rows[:, None] + o_d[None, :], mask=m_m[:, None] & m_d[None, :],
                      other=0.0).to(tl.float32)
        acc += w_t * x_t[None, :]
    out = tl.sum(acc, axis=1)
    e = tl.load(y + i_b * M + o_m, mask=m_m, other=0.0).to(tl.float32) - out
    if LR_PTR:
        rate = tl.load(lr + o_m, mask=m_m, other=0.0)
    else:
        rate = lr_scalar
    s = e * tl.load(gate + i_b * M + o_m, mask=m_m, other=0.0).to(tl.float32) * rate
    tl.store(z + i_b * M + o_m, out.to(z.dtype.element_ty), mask=m_m)
    tl.store(err + i_b * M + o_m, e.to(err.dtype.element_ty), mask=m_m)
    if MODE == 2:
        is_online = (tl.load(online + o_m, mask=m_m, other=0) != 0)[:, None]
    # 2. eligibility and the rank-one write, block by block
    for start in range(0, D, BD):
        o_d = start + tl.arange(0, BD)
        m_d = o_d < D
        x_t = tl.load(x + i_b * D + o_d, mask=m_d, other=0.0).to(tl.float32)
        e_old = tl.load(elig + i_b * D + o_d, mask=m_d, other=0.0).to(tl.float32)
        e_new = e_old * decay + x_t * (1.0 - decay)
        tl.store(elig_new + i_b * D + o_d, e_new.to(elig_new.dtype.element_ty), mask=m_d)
        change = s[:, None] * e_new[None, :]
        offs = rows[:, None] + o_d[None, :]
        mask = m_m[:, None] & m_d[None, :]
        if MODE == 0:
            w_old = tl.load(w + offs, mask=mask, other=0.0).to(tl.float32)
            tl.store(w_new + offs, (w_old + change).to(w_new.dtype.element_ty), mask=mask)
        elif MODE == 1:
            p_old = tl.load(pending + offs, mask=mask, other=0.0).to(tl.float32)
            tl.store(pending_new + offs, (p_old + change).to(pending_new.dtype.element_ty),
                     mask=mask)
        else:
            w_old = tl.load(w + offs, mask=mask, other=0.0).to(tl.float32)
            p_old = tl.load(pending + offs, mask=mask, other=0.0).to(tl.float32)
            tl.store(w_new + offs, tl.where(is_online, w_old + change, w_old)
                     .to(w_new.dtype.element_ty), mask=mask)
            tl.store(pending_new + offs, tl.where(is_online, p_old, p_old + change)
                     .to(pending_new.dtype.element_ty), mask=mask)


def triton_three_factor_step(weights, pending, eligibility, features, target, gate,
                             learning_rate, eligibility_decay, online):
    """Triton path of ``kernels.three_factor.three_factor_step`` (same contract)."""
    batch, readouts, dim = weights.shape
    device = weights.device
    given_weights, given_pending = weights, pending
    weights, pending, eligibility, features, target, gate = (
        t.contiguous() for t in (weights, pending, eligibility, features, target, gate))
    if isinstance(learning_rate, torch.Tensor):
        lr = learning_rate.to(device=device, dtype=torch.float32).expand(readouts).contiguous()
        lr_scalar, lr_ptr = 0.0, True
    else:
        lr, lr_scalar, lr_ptr = target, float(learning_rate), False  # lr: unused pointer
    if isinstance(online, bool):
        mode = ALL_ONLINE if online else ALL_OFFLINE
        online_rows = target  # unused placeholder pointer
    else:
        mode = MIXED
        online_rows = online.to(device=device, dtype=torch.int8).contiguous()
    output = new_buffer((batch, readouts), weights.dtype, device)
    error = new_buffer((batch, readouts), weights.dtype, device)
    new_eligibility = new_buffer((batch, dim), eligibility.dtype, device)
    new_weights = weights if mode == ALL_OFFLINE else new_buffer(weights.shape, weights.dtype,
                                                                 device)
    new_pending = pending if mode == ALL_ONLINE else new_buffer(pending.shape, pending.dtype,
                                                                device)
    block_m = max(1, triton.next_power_of_2(readouts))
    block_d = max(16, min(triton.next_power_of_2(max(dim, 1)), 4096 // block_m, 1024))
    if batch > 0:
        _three_factor_kernel[(batch,)](
            weights, pending, eligibility, features, target, gate, lr, online_rows, output,
            error, new_weights, new_pending, new_eligibility, float(eligibility_decay),
            lr_scalar, readouts, dim, lr_ptr, block_m, block_d, mode)
    if mode == ALL_OFFLINE:  # the untouched tensor as given (not its contiguous copy)
        new_weights = given_weights
    elif mode == ALL_ONLINE:
        new_pending = given_pending
    return output, error, new_eligibility, new_weights, new_pending
