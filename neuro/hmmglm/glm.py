"""GLM emission terms: links, per-bin log-likelihoods and their derivatives.

For neuron n in state k the linear predictor is ``eta = phi_t . theta_kn`` with
``phi_t = [1, X[t].flatten()]`` and ``theta_kn = [b_kn, W_k[n].flatten()]``.

* Poisson, ``lambda = f(eta)`` with f = exp or softplus:
  ``log p(y) = y log lambda - lambda - log y!``
* Bernoulli with the logistic link (our choice for binary counts):
  ``log p(y) = y eta - log(1 + e^eta)``

Both are concave in eta (softplus: log f concave, f convex), so the M-step of each
(state, neuron) problem is a concave maximization (Paninski 2004). ``elementwise``
returns the log-likelihood without the ``-log y!`` constant, its first derivative in
eta and the non-negative curvature ``-d2/deta2`` used by Newton's method (it lives in
``kernels/glm_terms/naive.py``, the reference of the fused GPU kernel EM uses on CUDA).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.glm_terms.naive import MAX_ETA, elementwise, softplus_terms

DISTRIBUTIONS = ("poisson", "bernoulli")
DEFAULT_LINKS = {"poisson": "softplus", "bernoulli": "logistic"}  # link=None picks these


def check_link(distribution: str, link: str) -> None:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    allowed = ("exp", "softplus") if distribution == "poisson" else ("logistic",)
    if link not in allowed:
        raise ValueError(f"link for distribution={distribution!r} must be one of {allowed}, got {link!r}")


def mean_function(eta: torch.Tensor, link: str) -> torch.Tensor:
    """Expected count per bin: exp(eta), softplus(eta) or sigmoid(eta)."""
    if link == "exp":
        return torch.exp(eta.clamp(max=MAX_ETA))
    if link == "softplus":
        return F.softplus(eta)
    return torch.sigmoid(eta)


def inverse_mean_function(rate: torch.Tensor, link: str) -> torch.Tensor:
    """eta such that mean_function(eta) = rate (rate clamped away from its bounds)."""
    tiny = 1e-8
    if link == "exp":
        return torch.log(rate.clamp_min(tiny))
    if link == "softplus":
        rate = rate.clamp_min(tiny)
        return rate + torch.log(-torch.expm1(-rate))
    rate = rate.clamp(tiny, 1 - tiny)
    return torch.log(rate) - torch.log1p(-rate)


def batched_terms(eta: torch.Tensor, counts: torch.Tensor, link: str, derivatives: bool = True,
                  need_loglik: bool = True, spikes: tuple[torch.Tensor, torch.Tensor] | None = None,
                  weight: torch.Tensor | None = None, curvature_dtype: torch.dtype | None = None):
    """``elementwise`` for eta (T, *batch, N) against counts (T, N), sparse-aware.

    Returns (loglik or None, grad, curvature) with derivatives, else loglik. With the
    softplus link the terms that involve y (y log f, y f'/f, ...) are evaluated only at
    the nonzero counts (spike trains are mostly zeros), gathered as (spikes, batch) blocks
    of eta viewed as (T, batch, N): the log-likelihood alone takes two dense passes
    (softplus, negation) instead of five, the derivatives alone need no dense softplus,
    and each spike block is written by one scatter. Equals ``elementwise`` to rounding.
    Measured (1 thread, float64, T=20,000, batch 16 x 3, N=20, problem (a)'s counts, CPU ms):
    log-likelihood ~1250 dense (``elementwise``) vs ~340 sparse; with derivatives ~3400 vs
    ~760. ``spikes``:
    ``counts.nonzero(as_tuple=True)`` when already known (finding it waits on the device).

    ``weight`` (T, *batch, 1), e.g. the posteriors of the (restart, state) problems: the
    derivatives come back weighted, ``(weight * l', weight * (-l''))``, the curvature in
    ``curvature_dtype`` (default eta's): the same products, rounded the same way, as
    weighting (and casting) the unweighted arrays afterwards, with fewer dense passes
    and temporaries (softplus: 5 passes and 2.5 new float64-sized (T, *batch, N) arrays
    instead of 6 and 5.5; on the CPU a new array of that size costs about a pass in page
    faults).
    """
    if link != "softplus":
        shape = (counts.shape[0],) + (1,) * (eta.dim() - 2) + (counts.shape[1],)
        out = elementwise(eta, counts.reshape(shape), link, derivatives)
        if derivatives and weight is not None:
            out = (out[0], weight * out[1],
                   (weight * out[2]).to(curvature_dtype or eta.dtype))
        return out if not derivatives or need_loglik else (None,) + tuple(out[1:])
    t_idx, n_idx = counts.nonzero(as_tuple=True) if spikes is None else spikes
    num_timesteps, num_neurons = counts.shape
    eta = eta.contiguous()
    y = counts[t_idx, n_idx].unsqueeze(1)  # (S, 1)

    def at_spikes(dense):  # (S, M) view-gather of a (T, *batch, N) array
        return dense.view(num_timesteps, -1, num_neurons)[t_idx, :, n_idx]

    def put_at_spikes(dense, values):  # one scatter; values replace the entries at the spikes
        dense.view(num_timesteps, -1, num_neurons)[t_idx, :, n_idx] = values

    # the terms at the spikes (f, log f, f'/f, ... accurate for any eta: softplus_terms)
    spike_terms = softplus_terms(at_spikes(eta), derivatives=derivatives)
    rate_s, log_rate_s = spike_terms[:2]
    loglik = None
    if need_loglik or not derivatives:
        loglik = F.softplus(eta).neg_()  # -f everywhere ...
        put_at_spikes(loglik, rate_s.neg() + y * log_rate_s)  # ... -f + y log f at the spikes
        if not derivatives:
            return loglik
    slope_s, ratio_s, excess_s = spike_terms[2:]
    grad_s = slope_s.neg() + y * ratio_s
    curvature_s = (slope_s * (1.0 - slope_s) + y * excess_s).clamp_min(0.0)
    slope = torch.sigmoid(eta)
    if weight is None:
        grad = slope.neg()
        curvature = torch.addcmul(slope, slope, slope, value=-1.0)  # f'' = s (1 - s)
        put_at_spikes(grad, grad_s)
        put_at_spikes(curvature, curvature_s)
        return loglik, grad, curvature
    # weighted: -(s w) = w (-s) and w c exactly (IEEE products commute, negation is exact)
    weight_s = weight.reshape(num_timesteps, -1)[t_idx]  # (S, batch) weights at the spikes
    grad = torch.mul(slope, weight).neg_()
    put_at_spikes(grad, weight_s * grad_s)
    curvature = slope.addcmul_(slope, slope, value=-1.0)  # f'' = s (1 - s), in slope's buffer
    put_at_spikes(curvature, curvature_s)
    weighted = torch.empty(eta.shape, dtype=curvature_dtype or eta.dtype, device=eta.device)
    torch.mul(curvature, weight, out=weighted)  # the float64 product, then rounded to its dtype
    return loglik, grad, weighted


def count_constant(counts: torch.Tensor, distribution: str) -> torch.Tensor:
    """The -log y! term of the Poisson log-likelihood (0 for Bernoulli)."""
    if distribution == "poisson":
        return -torch.lgamma(counts + 1.0)
    return torch.zeros_like(counts)


def log_likelihood_terms(eta: torch.Tensor, counts: torch.Tensor, link: str, distribution: str):
    """Exact per-bin, per-neuron log p(y | eta); eta broadcasts against counts."""
    return elementwise(eta, counts, link, derivatives=False) + count_constant(counts, distribution)


def linear_predictor(design: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """eta (T, *batch, N) = design (T, D) @ theta (*batch, N, D)."""
    flat = theta.reshape(-1, theta.shape[-1])
    eta = design @ flat.transpose(0, 1)
    return eta.reshape(design.shape[0], *theta.shape[:-1])


def emission_log_likelihoods(
    design: torch.Tensor, counts: torch.Tensor, theta: torch.Tensor, link: str, distribution: str,
    terms: torch.Tensor | None = None, constant: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(y_t | z_t = k) summed over neurons: (T, *batch) for theta (*batch, N, D).

    ``terms``: the elementwise log-likelihoods (T, *batch, N) at theta, if already known.
    """
    if terms is None:
        eta = linear_predictor(design, theta)
        terms = batched_terms(eta, counts, link, derivatives=False)
    if constant is None or distribution != "poisson":
        constant = count_constant(counts, distribution).sum(-1)
    return terms.sum(-1) + constant.reshape((-1,) + (1,) * (theta.dim() - 2))
