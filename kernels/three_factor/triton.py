"""Three-factor readout step in Triton (same maths and signature as ``naive.py``).

Two launches per step (B networks, M readouts, D features):

1. ``_readout_kernel``, grid (B, M): z = W[b, m] . x[b] (reduction over D in blocks,
   float32 accumulation), e = y - z, and the per-row step s = eta_m * g * e.
2. ``_update_kernel``, grid (B, D / BD): E' = a E + (1 - a) x for a block of features,
   then for every readout m the rank-one write W'[b, m] = W + s[b, m] E' (online rows)
   or A'[b, m] = A + s[b, m] E' (offline rows). W is read twice in all (once per
   launch), the minimum for an update that needs z before it can write.

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
def _readout_kernel(w, x, y, gate, lr, z, err, step, M: tl.constexpr, D: tl.constexpr,
                    BD: tl.constexpr):
    i_b, i_m = tl.program_id(0), tl.program_id(1)
    acc = tl.zeros([BD], dtype=tl.float32)
    row = (i_b * M + i_m) * D
    for start in range(0, D, BD):
        o_d = start + tl.arange(0, BD)
        m_d = o_d < D
        acc += (tl.load(w + row + o_d, mask=m_d, other=0.0).to(tl.float32)
                * tl.load(x + i_b * D + o_d, mask=m_d, other=0.0).to(tl.float32))
    out = tl.sum(acc, axis=0)
    e = tl.load(y + i_b * M + i_m).to(tl.float32) - out
    s = e * tl.load(gate + i_b * M + i_m).to(tl.float32) * tl.load(lr + i_m)
    tl.store(z + i_b * M + i_m, out.to(z.dtype.element_ty))
    tl.store(err + i_b * M + i_m, e.to(err.dtype.element_ty))
    tl.store(step + i_b * M + i_m, s)


@triton.jit
def _update_kernel(w, pending, elig, x, step, online, w_new, pending_new, elig_new, decay,
                   M: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, MODE: tl.constexpr):
    i_b, i_d = tl.program_id(0), tl.program_id(1)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < D
    e_old = tl.load(elig + i_b * D + o_d, mask=m_d, other=0.0).to(tl.float32)
    x_t = tl.load(x + i_b * D + o_d, mask=m_d, other=0.0).to(tl.float32)
    e_new = e_old * decay + x_t * (1.0 - decay)
    tl.store(elig_new + i_b * D + o_d, e_new.to(elig_new.dtype.element_ty), mask=m_d)
    for i_m in range(0, M):
        offs = (i_b * M + i_m) * D + o_d
        change = tl.load(step + i_b * M + i_m) * e_new
        if MODE == 0:
            w_old = tl.load(w + offs, mask=m_d, other=0.0).to(tl.float32)
            tl.store(w_new + offs, (w_old + change).to(w_new.dtype.element_ty), mask=m_d)
        elif MODE == 1:
            p_old = tl.load(pending + offs, mask=m_d, other=0.0).to(tl.float32)
            tl.store(pending_new + offs, (p_old + change).to(pending_new.dtype.element_ty),
                     mask=m_d)
        else:
            is_online = tl.load(online + i_m) != 0
            w_old = tl.load(w + offs, mask=m_d, other=0.0).to(tl.float32)
            p_old = tl.load(pending + offs, mask=m_d, other=0.0).to(tl.float32)
            tl.store(w_new + offs, tl.where(is_online, w_old + change, w_old)
                     .to(w_new.dtype.element_ty), mask=m_d)
            tl.store(pending_new + offs, tl.where(is_online, p_old, p_old + change)
                     .to(pending_new.dtype.element_ty), mask=m_d)


def triton_three_factor_step(weights, pending, eligibility, features, target, gate,
                             learning_rate, eligibility_decay, online):
    """Triton path of ``kernels.three_factor.three_factor_step`` (same contract)."""
    batch, readouts, dim = weights.shape
    device = weights.device
    weights, pending, eligibility, features, target, gate = (
        t.contiguous() for t in (weights, pending, eligibility, features, target, gate))
    lr = torch.as_tensor(learning_rate, dtype=torch.float32, device=device).expand(readouts)
    lr = lr.contiguous()
    if isinstance(online, bool):
        mode = ALL_ONLINE if online else ALL_OFFLINE
        online_rows = lr  # unused placeholder pointer
    else:
        mode = MIXED
        online_rows = online.to(device=device, dtype=torch.int8).contiguous()
    output = new_buffer((batch, readouts), weights.dtype, device)
    error = new_buffer((batch, readouts), weights.dtype, device)
    step = new_buffer((batch, readouts), torch.float32, device)
    new_eligibility = new_buffer((batch, dim), eligibility.dtype, device)
    new_weights = weights if mode == ALL_OFFLINE else new_buffer(weights.shape, weights.dtype,
                                                                 device)
    new_pending = pending if mode == ALL_ONLINE else new_buffer(pending.shape, pending.dtype,
                                                                device)
    block = min(1024, max(16, triton.next_power_of_2(dim)))
    if batch * readouts > 0:
        _readout_kernel[(batch, readouts)](weights, features, target, gate, lr, output, error,
                                           step, readouts, dim, block)
    if batch * dim > 0:
        _update_kernel[(batch, triton.cdiv(dim, block))](
            weights, pending, eligibility, features, step, online_rows, new_weights, new_pending,
            new_eligibility, float(eligibility_decay), readouts, dim, block, mode)
    return output, error, new_eligibility, new_weights, new_pending
