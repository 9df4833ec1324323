"""GLM emission terms of an HMM-GLM, reduced for EM: readable torch reference (CPU path,
test oracle for ``triton.py``).

For M = R x K (restart, state) problems, N neurons and T bins, with linear predictors
x[t, m, n] = eta[t, m, n] + step * delta[t, m, n] (delta optional: a line-search trial),
counts y[t, n] and posterior weights r[t, m], the per-bin log-likelihood l (without the
-log y! constant) and its derivatives in x are, per link:

    Poisson, exp:       f = exp(min(x, 80)),  l = y x - f,      l' = y - f,   -l'' = f
    Poisson, softplus:  f = softplus(x),      l = y log f - f,  s = sigmoid(x),
                        l' = y s / f - s,     -l'' = s (1 - s) + y (s / f) (s / f + s - 1)
    Bernoulli, logistic: l = y x - softplus(x),  l' = y - s,  -l'' = s (1 - s)

(-l'' >= 0: every problem is concave; Paninski 2004.) ``glm_terms`` returns the
reductions EM needs, never the (T, M, N) log-likelihoods themselves:

    value[m, n]              = sum_t r[t, m] l[t, m, n]         (the M-step objective;
                                                                 r = 1 when resp is None)
    per_bin[t, m]            = sum_n l[t, m, n]                 (E-step emissions)
    weighted_gradient        = r[t, m] l'[t, m, n]               (T, M, N)
    weighted_curvature       = r[t, m] (-l''[t, m, n])           (T, M, N)

Shapes: eta, delta (T, M, N); counts (T, N); resp (T, M) or None; all one float dtype.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

LINKS = ("exp", "softplus", "logistic")
MAX_ETA = 80.0  # exp(80) ~ 5.5e34 counts per bin: far beyond any data; avoids inf


class GLMTerms(NamedTuple):
    value: torch.Tensor                      # (M, N)
    per_bin: torch.Tensor | None             # (T, M)
    weighted_gradient: torch.Tensor | None   # (T, M, N)
    weighted_curvature: torch.Tensor | None  # (T, M, N)


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
        # fused/in-place passes: this runs on (T, R, K, N) arrays every Newton trial
        rate = F.softplus(eta).clamp_min_(1e-300)  # log softplus(eta) ~ eta holds to eta ~ -690
        log_rate = torch.log(rate)
        loglik = torch.addcmul(-rate, counts, log_rate)
        if not derivatives:
            return loglik
        slope = torch.sigmoid(eta)
        ratio = slope / rate  # f'/f, -> 1 as eta -> -inf
        grad = torch.addcmul(-slope, counts, ratio)
        bend = torch.addcmul(slope, slope, slope, value=-1.0)  # f'' = s (1 - s)
        excess = (ratio + slope).sub_(1.0).mul_(ratio)  # (f'/f)(f'/f - (1 - s)) >= 0
        curvature = torch.addcmul(bend, counts, excess).clamp_min_(0.0)
        return loglik, grad, curvature
    if link != "logistic":
        raise ValueError(f"link must be one of {LINKS}, got {link!r}")
    loglik = counts * eta - F.softplus(eta)
    if not derivatives:
        return loglik
    prob = torch.sigmoid(eta)
    return loglik, counts - prob, prob * (1.0 - prob)


def check_glm_terms_inputs(eta, counts, resp, link, delta=None) -> None:
    """ValueError naming the argument for a wrong link, rank, shape or dtype."""
    if link not in LINKS:
        raise ValueError(f"link must be one of {LINKS}, got {link!r}")
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


def glm_terms(eta: torch.Tensor, counts: torch.Tensor, resp: torch.Tensor | None, link: str,
              delta: torch.Tensor | None = None, step: float = 0.0, per_bin: bool = False,
              derivatives: bool = False, curvature_dtype: torch.dtype | None = None) -> GLMTerms:
    """The EM reductions of the module docstring at x = eta + step * delta."""
    check_glm_terms_inputs(eta, counts, resp, link, delta)
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
