"""GLM emission terms of an HMM-GLM, reduced for EM: readable torch reference (CPU path,
test oracle for ``triton.py``).

For M = R x K (restart, state) problems, N neurons and T bins, with linear predictors
x[t, m, n] = eta[t, m, n] + step * delta[t, m, n] (delta optional: a line-search trial),
counts y[t, n] and posterior weights r[t, m], the per-bin log-likelihood l (without the
-log y! constant) and its derivatives in x are, per link:

    Poisson, exp:       f = exp(min(x, 80)),  l = y x - f,      l' = y - f,   -l'' = f
    Poisson, softplus:  f = softplus(x),      l = y log f - f,  s = sigmoid(x),
                        l' = y s / f - s,     -l'' = s (1 - s) + y (s / f) (s / f + s - 1)
                        (log f, s / f and the last product from series far below 0:
                        ``softplus_terms``)
    Bernoulli, logistic: l = y x - softplus(x),  l' = y - s,  -l'' = s (1 - s)

(-l'' >= 0: every problem is concave; Paninski 2004.) ``glm_terms`` returns the
reductions EM needs, never the (T, M, N) log-likelihoods themselves:

    value[m, n]              = sum_t r[t, m] l[t, m, n]         (the M-step objective;
                                                                 r = 1 when resp is None)
    per_bin[t, m]            = sum_n l[t, m, n]                 (E-step emissions)
    weighted_gradient        = r[t, m] l'[t, m, n]               (T, M, N)
    weighted_curvature       = r[t, m] (-l''[t, m, n])           (T, M, N)

Shapes: eta, delta (T, M, N); counts (T, N); resp (T, M) or None; all one float dtype and
one device. ``curvature_dtype`` (None: eta's) is the float dtype of weighted_curvature.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from kernels.dispatch import check_same_device

LINKS = ("exp", "softplus", "logistic")
MAX_ETA = 80.0  # exp(80) ~ 5.5e34 counts per bin: far beyond any data; avoids inf


class GLMTerms(NamedTuple):
    value: torch.Tensor                      # (M, N)
    per_bin: torch.Tensor | None             # (T, M)
    weighted_gradient: torch.Tensor | None   # (T, M, N)
    weighted_curvature: torch.Tensor | None  # (T, M, N)


def series_below(dtype: torch.dtype) -> float:
    """x below which the softplus terms come from their series: where the series' error
    (~e^4 relative, e = exp(x)) meets the direct formulas' cancellation (~eps / e):
    e^-7 = 9e-4 in float64 (both ~1e-12), e^-4 = 0.018 in float32 (1e-7 and 7e-6)."""
    return -7.0 if dtype == torch.float64 else -4.0


def softplus_terms(x: torch.Tensor, derivatives: bool = True):
    """(f, log f, s, s / f, (s / f)(s / f + s - 1)) of the softplus link, accurate for all x
    ((f, log f) alone without ``derivatives``).

    f = log1p(e^x) and s = sigmoid(x). Below ``series_below`` log f, s/f and the curvature
    excess come from their series in e (to e^4), which avoids log(0) and 0/0 once f
    underflows (x < -88 in float32) and the cancellation in s/f + s - 1 (~e/2):
        log f = x - e/2 + 5e^2/24 - e^3/8 + 251 e^4/2880
        s / f = 1 - e/2 + 5e^2/12 - 3e^3/8 + 251 e^4/720
        excess = e/2 - 5e^2/6 + 9e^3/8 - 251 e^4/180
    """
    rate = F.softplus(x)
    below = series_below(x.dtype)
    e = torch.exp(x.clamp(max=below))
    small = x < below
    log_rate = torch.where(small, x + e * (-1 / 2 + e * (5 / 24 + e * (-1 / 8 + e * 251 / 2880))),
                           torch.log(rate))
    if not derivatives:
        return rate, log_rate
    slope = torch.sigmoid(x)
    ratio = torch.where(small, 1 + e * (-1 / 2 + e * (5 / 12 + e * (-3 / 8 + e * 251 / 720))),
                        slope / rate)
    excess = torch.where(small, e * (1 / 2 + e * (-5 / 6 + e * (9 / 8 - e * 251 / 180))),
                         ratio * (ratio + slope - 1.0))
    return rate, log_rate, slope, ratio, excess


def elementwise(eta: torch.Tensor, counts: torch.Tensor, link: str, derivatives: bool = True):
    """(l, l', -l'') elementwise for the link (table above); counts broadcast against eta."""
    if link == "exp":
        eta = eta.clamp(max=MAX_ETA)
        rate = torch.exp(eta)
        loglik = torch.addcmul(-rate, counts, eta)
        if not derivatives:
            return loglik
        return loglik, counts - rate, rate
    if link == "softplus":
        if not derivatives:
            rate, log_rate = softplus_terms(eta, derivatives=False)
            return torch.addcmul(-rate, counts, log_rate)
        rate, log_rate, slope, ratio, excess = softplus_terms(eta)
        loglik = torch.addcmul(-rate, counts, log_rate)
        grad = torch.addcmul(-slope, counts, ratio)  # ratio = f'/f, -> 1 as eta -> -inf
        bend = torch.addcmul(slope, slope, slope, value=-1.0)  # f'' = s (1 - s)
        # excess = (f'/f)(f'/f - (1 - s)) >= 0
        curvature = torch.addcmul(bend, counts, excess).clamp_min_(0.0)
        return loglik, grad, curvature
    if link != "logistic":
        raise ValueError(f"link must be one of {LINKS}, got {link!r}")
    loglik = counts * eta - F.softplus(eta)
    if not derivatives:
        return loglik
    prob = torch.sigmoid(eta)
    return loglik, counts - prob, prob * (1.0 - prob)


def check_glm_terms_inputs(eta, counts, resp, link, delta=None, step=0.0,
                           curvature_dtype=None) -> None:
    """ValueError naming the argument for a wrong link, rank, shape, dtype, device or step;
    TypeError for a non-tensor or a ``curvature_dtype`` that is not None or a float dtype."""
    for name, value in (("eta", eta), ("counts", counts), ("resp", resp), ("delta", delta)):
        if not (isinstance(value, torch.Tensor) or (value is None and name in ("resp", "delta"))):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not isinstance(link, str) or link not in LINKS:
        raise ValueError(f"link must be one of {LINKS}, got {link!r}")
    if isinstance(step, (bool, str, bytes)) or not hasattr(step, "__float__"):
        raise TypeError(f"step={step!r} must be a float (0 or a power of two)")
    mantissa, exponent = math.frexp(float(step))
    if abs(mantissa) not in (0.0, 0.5) or not -125 <= exponent <= 128:
        raise ValueError(f"step must be 0 or a power of two (+-2^k, |k| < 126: exact in "
                         f"float32, as the line search's step sizes are), got {step!r}")
    if eta.dim() != 3:
        raise ValueError(f"eta must have shape (T, M, N), got {tuple(eta.shape)}")
    num_timesteps, num_problems, num_neurons = eta.shape
    expected = {"counts": (counts, (num_timesteps, num_neurons))}
    if resp is not None:
        expected["resp"] = (resp, (num_timesteps, num_problems))
    if delta is not None:
        expected["delta"] = (delta, tuple(eta.shape))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
        if tensor.dtype != eta.dtype:
            raise ValueError(f"{name} must have eta's dtype {eta.dtype}, got {tensor.dtype}")
    if not eta.dtype.is_floating_point:
        raise ValueError(f"eta must be a float tensor, got {eta.dtype}")
    check_same_device(eta=eta, counts=counts, resp=resp, delta=delta)
    if curvature_dtype is not None and not (isinstance(curvature_dtype, torch.dtype)
                                            and curvature_dtype.is_floating_point):
        raise TypeError(f"curvature_dtype must be None or a floating torch.dtype, got "
                        f"{curvature_dtype!r}")


def glm_terms(eta: torch.Tensor, counts: torch.Tensor, resp: torch.Tensor | None, link: str,
              delta: torch.Tensor | None = None, step: float = 0.0, per_bin: bool = False,
              derivatives: bool = False, curvature_dtype: torch.dtype | None = None) -> GLMTerms:
    """The EM reductions of the module docstring at x = eta + step * delta."""
    check_glm_terms_inputs(eta, counts, resp, link, delta, step, curvature_dtype)
    x = eta if delta is None else eta + step * delta
    y = counts.unsqueeze(1)
    weight = 1.0 if resp is None else resp.unsqueeze(-1)
    if derivatives:
        loglik, grad, curvature = elementwise(x, y, link, derivatives=True)
        weighted_gradient = weight * grad
        weighted_curvature = (weight * curvature).to(curvature_dtype or eta.dtype)
    else:
        loglik = elementwise(x, y, link, derivatives=False)
        weighted_gradient = weighted_curvature = None
    return GLMTerms(value=(weight * loglik).sum(0),
                    per_bin=loglik.sum(-1) if per_bin else None,
                    weighted_gradient=weighted_gradient,
                    weighted_curvature=weighted_curvature)
