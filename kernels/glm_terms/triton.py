"""GLM emission terms for EM in one Triton pass (contract and equations: ``naive.py``).

The torch path evaluates the link's log-likelihood and derivatives in about ten
elementwise passes over the (T, M, N) predictors (plus gathers and scatters at the
spikes on the CPU), then multiplies by the posterior weights and reduces over time in
more passes. Here one program takes a (BT, BM, BN) tile of x = eta + step * delta, reads
the counts and posterior weights it needs, and writes only what EM uses: the per-tile
partial sums over time of r * l (summed over tiles afterwards, in a fixed order, so the
result is deterministic), the per-bin sums over neurons of l, and, for a Newton step,
r * l' and r * (-l''). softplus is max(x, 0) + log1p(exp(-|x|)) (x itself above 20, as
torch), with log1p to ~1 ulp as log(u) - ((u - 1) - z) / u, u = 1 + z (the first-order
correction of u's rounding), and the series of ``naive.softplus_terms`` far below 0. NaN predictors stay NaN (min/max
propagate them). ``step`` travels as a float32 scalar: it must be 0 or a power of two
(checked), as the line search's step sizes are, so it is exact in any float dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import new_buffer
from kernels.glm_terms.naive import LINKS, MAX_ETA, GLMTerms, check_glm_terms_inputs, series_below

_MAX_ETA = tl.constexpr(MAX_ETA)
# elements per tile: 8 (float64) or 16 (float32) per thread at 4 warps; float64 tiles of
# 2048 with derivatives spilled registers on sm_90 (255 registers, 260 bytes of spill)
TILE_ELEMENTS = {torch.float64: 1024}


@triton.jit
def _softplus_and_sigmoid(x):
    """(softplus(x), sigmoid(x), z = exp(-|x|)) from ONE exponential (fp64 exp, log and
    division are instruction sequences, not hardware units, and bound this kernel):
    softplus = max(x, 0) + log1p(z) (x itself above 20, as torch), sigmoid = 1 / (1 + z)
    for x >= 0, else z / (1 + z); z = exp(x) for x < 0 (the series below 0 use it)."""
    z = tl.exp(-tl.abs(x))
    u = 1.0 + z
    inverse = 1.0 / u
    log1p = tl.log(u) - ((u - 1.0) - z) * inverse  # corrects the rounding of u; = z if u == 1
    softplus = tl.where(x > 20.0, x, tl.maximum(x, 0.0) + log1p)
    return softplus, tl.where(x >= 0.0, inverse, z * inverse), z


@triton.jit
def _glm_terms_kernel(eta, delta, counts, resp, value_part, per_bin_part, grad_out, curv_out,
                      step, T, M, N, LINK: tl.constexpr, HAS_DELTA: tl.constexpr,
                      HAS_RESP: tl.constexpr,
                      PER_BIN: tl.constexpr, DERIVATIVES: tl.constexpr,
                      SERIES_BELOW: tl.constexpr, BT: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    i_t, i_m, i_n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_t = (i_t * BT + tl.arange(0, BT)).to(tl.int64)
    o_m = i_m * BM + tl.arange(0, BM)
    o_n = i_n * BN + tl.arange(0, BN)
    m_t, m_m, m_n = o_t < T, o_m < M, o_n < N
    t3, p3, n3 = o_t[:, None, None], o_m[None, :, None], o_n[None, None, :]
    mask = m_t[:, None, None] & m_m[None, :, None] & m_n[None, None, :]
    offs = (t3 * M + p3) * N + n3
    x = tl.load(eta + offs, mask=mask, other=0.0)
    if HAS_DELTA:
        x += step * tl.load(delta + offs, mask=mask, other=0.0)
    y = tl.load(counts + t3 * N + n3, mask=m_t[:, None, None] & m_n[None, None, :], other=0.0)
    if HAS_RESP:
        r = tl.load(resp + t3 * M + p3, mask=m_t[:, None, None] & m_m[None, :, None], other=0.0)
    else:
        r = tl.full([BT, BM, 1], 1.0, x.dtype)
    if LINK == 0:  # Poisson, exp
        x = tl.minimum(x, _MAX_ETA, propagate_nan=tl.PropagateNan.ALL)
        f = tl.exp(x)
        loglik = y * x - f
        grad = y - f
        curv = f
    elif LINK == 1:  # Poisson, softplus; series in e = exp(x) below SERIES_BELOW (naive.py)
        f, s, e = _softplus_and_sigmoid(x)  # e = exp(x) wherever the series use it
        small = x < SERIES_BELOW
        log_f = tl.where(small, x + e * (-1 / 2 + e * (5 / 24 + e * (-1 / 8 + e * 251 / 2880))),
                         tl.log(f))
        ratio = tl.where(small, 1 + e * (-1 / 2 + e * (5 / 12 + e * (-3 / 8 + e * 251 / 720))),
                         s / f)
        excess = tl.where(small, e * (1 / 2 + e * (-5 / 6 + e * (9 / 8 - e * 251 / 180))),
                          ratio * (ratio + s - 1.0))
        loglik = y * log_f - f
        grad = y * ratio - s
        curv = tl.maximum(s - s * s + y * excess, 0.0, propagate_nan=tl.PropagateNan.ALL)
    else:  # Bernoulli, logistic
        f, s, _ = _softplus_and_sigmoid(x)
        loglik = y * x - f
        grad = y - s
        curv = s - s * s
    loglik = tl.where(mask, loglik, 0.0)
    tl.store(value_part + (i_t * M + o_m[:, None]) * N + o_n[None, :], tl.sum(r * loglik, axis=0),
             mask=m_m[:, None] & m_n[None, :])
    if PER_BIN:
        tl.store(per_bin_part + (i_n * T + o_t[:, None]) * M + o_m[None, :], tl.sum(loglik, axis=2),
                 mask=m_t[:, None] & m_m[None, :])
    if DERIVATIVES:
        tl.store(grad_out + offs, r * grad, mask=mask)
        tl.store(curv_out + offs, (r * curv).to(curv_out.dtype.element_ty), mask=mask)


def _tiles(num_problems: int, num_neurons: int, dtype: torch.dtype) -> tuple[int, int, int]:
    bn = min(triton.next_power_of_2(num_neurons), 64)
    bm = min(triton.next_power_of_2(num_problems), max(1, 128 // bn))
    return max(1, TILE_ELEMENTS.get(dtype, 2048) // (bm * bn)), bm, bn


def triton_glm_terms(eta, counts, resp, link, delta=None, step=0.0, per_bin=False,
                     derivatives=False, curvature_dtype=None) -> GLMTerms:
    """Same contract as ``naive.glm_terms``."""
    check_glm_terms_inputs(eta, counts, resp, link, delta, step, curvature_dtype)
    eta, counts = eta.contiguous(), counts.contiguous()
    resp = None if resp is None else resp.contiguous()
    delta = None if delta is None else delta.contiguous()
    num_timesteps, num_problems, num_neurons = eta.shape
    device, dtype = eta.device, eta.dtype
    grad = new_buffer(eta.shape, dtype, device) if derivatives else None
    curv = new_buffer(eta.shape, curvature_dtype or dtype, device) if derivatives else None
    if eta.numel() == 0:  # T, M or N = 0: nothing to launch (and no tile sizes for M, N = 0)
        value = torch.zeros(num_problems, num_neurons, dtype=dtype, device=device)
        per_bin_sum = (torch.zeros(num_timesteps, num_problems, dtype=dtype, device=device)
                       if per_bin else None)
        return GLMTerms(value, per_bin_sum, grad, curv)
    bt, bm, bn = _tiles(num_problems, num_neurons, eta.dtype)
    grid = (triton.cdiv(num_timesteps, bt), triton.cdiv(num_problems, bm),
            triton.cdiv(num_neurons, bn))
    value_part = new_buffer((grid[0], num_problems, num_neurons), dtype, device)
    per_bin_part = new_buffer((grid[2], num_timesteps, num_problems), dtype, device) if per_bin else None
    _glm_terms_kernel[grid](eta, delta, counts, resp, value_part, per_bin_part, grad, curv,
                            float(step), num_timesteps, num_problems, num_neurons,
                            LINKS.index(link), delta is not None, resp is not None, per_bin,
                            derivatives, series_below(dtype),
                            bt, bm, bn)
    return GLMTerms(value=value_part.sum(0), per_bin=per_bin_part.sum(0) if per_bin else None,
                    weighted_gradient=grad, weighted_curvature=curv)
