"""Weighted stochastic block model fitted by variational EM, number of blocks by ICL.

Undirected graph on n nodes with non-negative weights W (symmetric, diagonal ignored), block
labels z_i in {1..K} with prior pi, and for every pair i < j, given z_i = k, z_j = l:

  distribution="exponential" (hurdle; the "real-exponential" weights the paper uses through
  graph-tool, Peixoto 2018, arXiv 1705.10225):
      edge e_ij = [W_ij > 0] ~ Bernoulli(p_kl),  W_ij | e_ij = 1 ~ Exponential(mean mu_kl)
  distribution="lognormal" (hurdle; Peixoto's "real-normal" on log weights):
      e_ij ~ Bernoulli(p_kl),  log W_ij | e_ij = 1 ~ Normal(m_kl, v_kl), v_kl >= 1e-4
  distribution="poisson" (counts, e.g. synapse numbers):
      W_ij ~ Poisson(theta_i theta_j omega_kl), theta_i = 1 or, with degree_corrected=True,
      theta_i = d_i / mean(d) (plug-in strengths, Karrer & Newman 2011, arXiv 1008.3926).

Mean-field q(z) = prod_i Cat(tau_i) (Daudin, Picard & Robin 2008; Mariadassou, Robin & Vacher
2010, arXiv 0912.3838). E-step (coordinate ascent, one node at a time in a label-free order, ``node_order``):
    log tau_ik = log pi_k + sum_{j != i} sum_l tau_jl log f(W_ij | k, l) + const,
M-step: pi = mean tau; p_kl = (tau^T E tau)_kl / (tau^T O tau)_kl; mu_kl = (tau^T W tau) /
(tau^T E tau); m_kl, v_kl the tau-weighted mean and variance of log W over the edges;
omega_kl = (tau^T W tau) / (tau^T Theta tau), with E the edge indicator, O = 1 - I and
Theta = theta theta^T - diag(theta^2). The number of blocks maximises the integrated
classification likelihood ICL = log f(W, z_hat | theta_hat) - (K - 1)/2 log n
- q K (K + 1)/4 log(n (n - 1)/2), q = parameters per block pair (2, 3 or 1). ICL needs a good
fit at every K: after the fits K = 1..max_blocks, a backward pass also starts each K from the
K + 1 fit with the pair of blocks merged whose merge keeps the highest likelihood, and keeps
the fit of higher ICL (a K fit stuck in a poor optimum would hand ICL a spuriously larger K).
The ELBO and the ICL's log f are the full log-likelihoods (for the Poisson, including the
label-free sum over i < j of W_ij log(theta_i theta_j) - log W_ij!). Our choice, not the paper's:
Dyballa et al. use graph-tool's nested (hierarchical) weighted SBM; this is a flat SBM (one
level of blocks) fitted by variational EM, K chosen by ICL.
Initialization (our choice): k-means on the spectral embedding (top-K eigenvectors of W by
|eigenvalue| of the regularised normalised adjacency) from a deterministic farthest-point start, which keeps the fit
invariant to node relabeling, plus `num_restarts` seeded k-means++ starts; the
`num_vem_starts` distinct k-means partitions of lowest inertia start variational EM and the best
evidence lower bound wins.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from neuro.connectome._checks import (
    Seed,
    check_adjacency,
    check_choice,
    check_flag,
    check_positive_int,
    check_real,
    check_seed,
    numpy_generator,
)
from neuro.connectome.node_order import canonical_node_order

__all__ = ["SBMFit", "fit_sbm"]

_TINY = 1e-12


class SBMFit(NamedTuple):
    """labels (n,) hard blocks numbered by first appearance; responsibilities (n, K);
    num_blocks; icl per tried K (dict); elbo; block parameters (K, K) as a dict."""

    labels: np.ndarray
    responsibilities: np.ndarray
    num_blocks: int
    icl: dict
    elbo: float
    parameters: dict


def _by_first_appearance(labels: np.ndarray, num_blocks: int) -> np.ndarray:
    """Block ids (num_blocks,) in the order they first appear in ``labels``, unused ones last."""
    _, first = np.unique(labels, return_index=True)
    seen = labels[np.sort(first)]
    return np.concatenate([seen, np.setdiff1d(np.arange(num_blocks), seen)])


def _canonical(labels: np.ndarray) -> np.ndarray:
    """``labels`` renumbered by first appearance."""
    return np.argsort(_by_first_appearance(labels, labels.max() + 1))[labels]


def _spectral_embedding(weights: np.ndarray) -> np.ndarray:
    """Rows of the leading eigenvectors (by |eigenvalue|) of the regularised normalised
    adjacency D_t^-1/2 W D_t^-1/2, D_t = D + mean degree (Qin & Rohe 2013, arXiv 1309.4111),
    scaled by |eigenvalue|; each eigenvector's sign fixed by its largest-magnitude entry."""
    degree = weights.sum(1)
    regularised = degree + degree.mean()
    inverse_root = 1.0 / np.sqrt(regularised)
    normalised = inverse_root[:, None] * weights * inverse_root[None, :]
    eigenvalues, eigenvectors = np.linalg.eigh(normalised)
    order = np.argsort(-np.abs(eigenvalues), kind="stable")
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    signs = np.sign(eigenvectors[np.abs(eigenvectors).argmax(0), np.arange(eigenvectors.shape[1])])
    return eigenvectors * np.where(signs == 0, 1, signs) * np.abs(eigenvalues)


def _kmeans(points: np.ndarray, num_clusters: int, centres: np.ndarray, iterations: int = 100):
    for _ in range(iterations):
        distance = ((points[:, None, :] - centres[None]) ** 2).sum(-1)
        labels = distance.argmin(1)
        new = np.array([points[labels == k].mean(0) if (labels == k).any() else centres[k]
                        for k in range(num_clusters)])
        if np.allclose(new, centres):
            break
        centres = new
    return labels


def _farthest_point_centres(points: np.ndarray, num_clusters: int) -> np.ndarray:
    chosen = [int(np.argmax((points**2).sum(1)))]
    distance = ((points - points[chosen[0]]) ** 2).sum(1)
    while len(chosen) < num_clusters:
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, ((points - points[chosen[-1]]) ** 2).sum(1))
    return points[chosen]


def _kmeans_plus_plus_centres(points, num_clusters, rng):
    chosen = [int(rng.integers(points.shape[0]))]
    distance = ((points - points[chosen[0]]) ** 2).sum(1)
    while len(chosen) < num_clusters:
        total = distance.sum()
        pick = int(rng.integers(points.shape[0])) if total <= 0 else int(
            rng.choice(points.shape[0], p=distance / total))
        chosen.append(pick)
        distance = np.minimum(distance, ((points - points[pick]) ** 2).sum(1))
    return points[chosen]


HURDLE = ("exponential", "lognormal")
DISTRIBUTIONS = (*HURDLE, "poisson")
LOG_VARIANCE_FLOOR = 1e-4  # lognormal: the least variance of log W in a block pair (std 0.01)


class _Model:
    """The per-pair likelihood of one distribution. Hurdle models (exponential, lognormal)
    write log f(W_ij | k, l) = sum_s S_s[i, j] c_s[k, l] + O_ij c_O[k, l] with per-pair
    statistics S (E = [W > 0], then W, or log W and (log W)^2) and O = 1 - I, so every
    node's block log-likelihood is a few (n, n) @ (n, K) products (``node_block_loglik``)."""

    def __init__(self, weights, distribution, degree_corrected):
        n = weights.shape[0]
        self.weights = weights
        self.off_diagonal = 1.0 - np.eye(n)
        self.edges = (weights > 0).astype(np.float64)
        self.distribution = distribution
        if distribution == "exponential":
            self.statistics = np.stack([self.edges, weights])  # (S, n, n)
        elif distribution == "lognormal":
            log_weights = np.log(np.where(weights > 0, weights, 1.0))
            self.statistics = np.stack([self.edges, log_weights, log_weights**2])
        degree = weights.sum(1)
        if degree_corrected and degree.mean() > 0:
            self.theta = degree / degree.mean()
        else:
            self.theta = np.ones(n)
        # the label-free part of log f summed over pairs i < j: 0 for the hurdle models; for
        # the Poisson, sum W_ij log(theta_i theta_j) - log Gamma(W_ij + 1) (left out of the
        # per-node terms, which only compare blocks; added to the ELBO and the ICL likelihood)
        self.constant = 0.0
        if distribution == "poisson":
            from scipy.special import gammaln  # lazy: keeps the import light

            upper = np.triu(weights, k=1)
            log_theta = np.log(np.where(self.theta > 0, self.theta, 1.0))
            self.constant = float(np.sum(upper * (log_theta[:, None] + log_theta[None, :]))
                                  - np.sum(gammaln(upper + 1.0)))

    def m_step(self, tau):
        counts = tau.sum(0)
        pair_mass = np.outer(counts, counts) - tau.T @ tau
        if self.distribution == "poisson":
            theta_tau = tau * self.theta[:, None]
            exposure = np.outer(theta_tau.sum(0), theta_tau.sum(0)) - theta_tau.T @ theta_tau
            rate = np.maximum(tau.T @ self.weights @ tau / np.maximum(exposure, _TINY), _TINY)
            return {"rate": rate}
        edge_mass = tau.T @ self.edges @ tau
        probability = np.clip(edge_mass / np.maximum(pair_mass, _TINY), _TINY, 1 - _TINY)
        moments = [tau.T @ statistic @ tau / np.maximum(edge_mass, _TINY) for statistic in self.statistics[1:]]
        if self.distribution == "exponential":
            return {"edge_probability": probability, "weight_mean": np.maximum(moments[0], _TINY)}
        variance = np.maximum(moments[1] - moments[0] ** 2, LOG_VARIANCE_FLOOR)
        return {"edge_probability": probability, "log_weight_mean": moments[0], "log_weight_variance": variance}

    def node_block_loglik(self, tau, params):
        """(n, K): sum_{j != i} sum_l tau_jl log f(W_ij | k, l)."""
        if self.distribution == "poisson":
            rate = params["rate"]
            theta_tau = (self.off_diagonal @ (tau * self.theta[:, None])) * self.theta[:, None]
            return (self.weights @ tau) @ np.log(rate).T - theta_tau @ rate.T
        *coefficients, pair_coefficient = _block_terms(self, params)
        total = (self.off_diagonal @ tau) @ pair_coefficient.T
        for statistic, coefficient in zip(self.statistics, coefficients):
            total += (statistic @ tau) @ coefficient.T
        return total

    def num_parameters_per_pair(self):
        return {"exponential": 2, "lognormal": 3, "poisson": 1}[self.distribution]


def _block_terms(model: _Model, params):
    """Per-block-pair coefficients: (c_s for each statistic S_s, then c_O) for the hurdle
    models (see ``_Model``); (log rate, -rate) for the Poisson model."""
    if model.distribution == "poisson":
        return np.log(params["rate"]), -params["rate"]
    p = params["edge_probability"]
    no_edge = np.log1p(-p)
    if model.distribution == "exponential":  # E: log p - log mu; W: -1/mu
        mean = params["weight_mean"]
        return np.log(p) - np.log(mean) - no_edge, -1.0 / mean, no_edge
    # lognormal, L = log W: log p - log(2 pi v)/2 - (L - m)^2 / (2 v) - L (the Jacobian 1/W)
    m, v = params["log_weight_mean"], params["log_weight_variance"]
    return (np.log(p) - 0.5 * np.log(2 * np.pi * v) - m**2 / (2 * v) - no_edge, m / v - 1.0,
            -0.5 / v, no_edge)


def _vem(model: _Model, tau: np.ndarray, iterations: int, tol: float, order: np.ndarray):
    """Coordinate-ascent mean field: nodes updated one at a time in `order` (a canonical,
    label-free order), block parameters re-estimated after every sweep."""
    elbo_previous = -np.inf
    tau = tau.copy()
    params = model.m_step(tau)
    elbo = -np.inf
    hurdle = model.distribution in HURDLE
    rows = model.statistics.transpose(1, 0, 2) if hurdle else model.weights[:, None, :]  # (n, S, n)
    theta = model.theta
    for _ in range(iterations):
        log_prior = np.log(np.maximum(tau.mean(0), _TINY))
        terms = _block_terms(model, params)
        if hurdle:
            # logits_i = log pi + [S_i tau for each statistic, sum_{j != i} tau_j] @ [c_s; c_O]
            stacked = np.concatenate([term.T for term in terms], axis=0)
            total = tau.sum(0)
            for i in order:
                aggregate = (rows[i] @ tau).reshape(-1)
                logits = log_prior + np.concatenate([aggregate, total - tau[i]]) @ stacked
                new = np.exp(logits - logits.max())
                new /= new.sum()
                total += new - tau[i]
                tau[i] = new
        else:
            stacked = np.concatenate([terms[0].T, terms[1].T], axis=0)
            theta_total = theta @ tau
            for i in order:
                weighted = rows[i, 0] @ tau
                others = theta[i] * (theta_total - theta[i] * tau[i])
                logits = log_prior + np.concatenate([weighted, others]) @ stacked
                new = np.exp(logits - logits.max())
                new /= new.sum()
                theta_total += theta[i] * (new - tau[i])
                tau[i] = new
        params = model.m_step(tau)
        prior = np.maximum(tau.mean(0), _TINY)
        expected = 0.5 * np.sum(tau * model.node_block_loglik(tau, params))
        entropy = -np.sum(tau * np.log(np.maximum(tau, _TINY)))
        # stop on the label-dependent part: the constant would loosen the relative tolerance
        elbo = expected + np.sum(tau @ np.log(prior)) + entropy
        if abs(elbo - elbo_previous) <= tol * max(1.0, abs(elbo)):
            break
        elbo_previous = elbo
    return tau, params, elbo + model.constant


def _hard_loglik(model: _Model, labels: np.ndarray, num_blocks: int) -> float:
    tau = np.eye(num_blocks)[labels]
    params = model.m_step(tau)
    counts = tau.sum(0)
    prior = np.maximum(counts / counts.sum(), _TINY)
    return float(0.5 * np.sum(tau * model.node_block_loglik(tau, params)) + model.constant
                 + counts @ np.log(prior))


def _kmeans_starts(embedding, k, rng, num_restarts, order) -> list:
    """Distinct k-means partitions of the embedding (a farthest-point start and
    ``num_restarts`` k-means++ starts), lowest inertia first. Every draw, tie and partition
    key is taken in the canonical node ``order``, so the seeded starts pick the same nodes
    however the nodes are numbered (drawn by index, they would not: the fit would change
    with a relabelling whenever a seeded start wins)."""
    canonical = embedding[order]
    starts = [_farthest_point_centres(canonical, k)]
    starts += [_kmeans_plus_plus_centres(canonical, k, rng) for _ in range(num_restarts)]
    partitions = {}
    for centres in starts:
        labels = _canonical(_kmeans(canonical, k, centres))
        inertia = float(sum(((canonical[labels == c] - canonical[labels == c].mean(0)) ** 2).sum()
                            for c in np.unique(labels)))
        partitions.setdefault(tuple(labels), inertia)
    ranked = sorted(partitions.items(), key=lambda item: (item[1], item[0]))
    results = []
    for labels, _ in ranked:  # back from the canonical order to the nodes' own numbering
        own = np.empty(len(labels), dtype=np.int64)
        own[order] = labels
        results.append(own)
    return results


def _soft_start(labels: np.ndarray, k: int) -> np.ndarray:
    """Responsibilities (n, k): 0.95 on each node's label, the rest spread evenly."""
    n = labels.size
    if k == 1:
        return np.ones((n, 1))
    tau = np.full((n, k), 0.05 / (k - 1))
    tau[np.arange(n), labels] = 0.95
    return tau


def _best_merge(model: _Model, labels: np.ndarray, k: int) -> np.ndarray:
    """Hard labels with at most k blocks: ``labels`` (their empty blocks dropped) if they use
    at most k, else the merge of one pair of blocks with the highest hard log-likelihood."""
    used, labels = np.unique(labels, return_inverse=True)
    if used.size <= k:
        return labels
    best = None
    for a in range(used.size):
        for b in range(a + 1, used.size):
            merged = np.where(labels == b, a, labels)
            merged = np.where(merged > b, merged - 1, merged)
            score = _hard_loglik(model, merged, used.size - 1)
            if best is None or score > best[0]:
                best = (score, merged)
    return best[1]


def _icl(model: _Model, tau: np.ndarray) -> float:
    """ICL of the hard labels of ``tau`` over the blocks they use (module docstring)."""
    n = tau.shape[0]
    used, hard = np.unique(tau.argmax(1), return_inverse=True)
    penalty = 0.5 * (used.size - 1) * np.log(n) + 0.25 * model.num_parameters_per_pair() \
        * used.size * (used.size + 1) * np.log(n * (n - 1) / 2)
    return float(_hard_loglik(model, hard, used.size) - penalty)


def fit_sbm(
    adjacency,
    num_blocks: int | None = None,
    *,
    max_blocks: int = 10,
    distribution: str = "exponential",
    degree_corrected: bool = False,
    num_restarts: int = 20,
    num_vem_starts: int = 3,
    iterations: int = 200,
    tol: float = 1e-7,
    seed: Seed = 0,
) -> SBMFit:
    """Fit the weighted SBM of the module docstring to a symmetric non-negative (n, n)
    `adjacency`. num_blocks None: choose K in 1..max_blocks by ICL. An edgeless graph gives
    singletons."""
    weights = check_adjacency(adjacency)
    check_choice("distribution", distribution, DISTRIBUTIONS)
    if check_flag("degree_corrected", degree_corrected) and distribution != "poisson":
        raise ValueError("degree_corrected=True needs distribution='poisson'")
    n = weights.shape[0]
    max_blocks = check_positive_int("max_blocks", max_blocks)
    if num_blocks is not None:
        num_blocks = check_positive_int("num_blocks", num_blocks)
        if num_blocks > n:
            raise ValueError(f"num_blocks ({num_blocks}) must be <= number of nodes ({n})")
    num_restarts = check_positive_int("num_restarts", num_restarts, minimum=0)
    num_vem_starts = check_positive_int("num_vem_starts", num_vem_starts)
    iterations = check_positive_int("iterations", iterations)
    tol = check_real("tol", tol, 0)
    check_seed(seed)
    weights = weights * (1.0 - np.eye(n))
    if not weights.any():
        labels = np.arange(n)
        return SBMFit(labels, np.eye(n), n, {}, 0.0, {})
    rng = numpy_generator(seed)
    candidates = range(1, min(max_blocks, n) + 1) if num_blocks is None else [num_blocks]
    model = _Model(weights, distribution, degree_corrected)
    embedding = _spectral_embedding(weights)
    order = canonical_node_order(weights)

    def fit_from(labels, k):
        return _vem(model, _soft_start(labels, k), iterations, tol, order)

    fits = {}  # K -> (tau, params, elbo)
    for k in candidates:
        for labels in _kmeans_starts(embedding[:, :k], k, rng, num_restarts, order)[:num_vem_starts]:
            fit = fit_from(labels, k)
            if k not in fits or fit[2] > fits[k][2] + 1e-9 * abs(fit[2]):
                fits[k] = fit
    # backward pass: K also starts from the K + 1 fit with its best pair of blocks merged (a
    # K fit stuck in a poor optimum would otherwise hand ICL a spuriously larger K); the fit
    # kept is the one ICL scores higher, so the chosen ICL is never lower than without it
    icl_by_k = {k: _icl(model, tau) for k, (tau, _, _) in fits.items()}
    for k in sorted(fits, reverse=True)[1:]:
        fit = fit_from(_best_merge(model, fits[k + 1][0].argmax(1), k), k)
        icl = _icl(model, fit[0])
        if icl > icl_by_k[k]:
            fits[k], icl_by_k[k] = fit, icl
    best = fits[max(icl_by_k, key=icl_by_k.get)]  # the smallest K on a tie
    tau, params, elbo = best
    # blocks renumbered by first appearance in the hard labels (blocks no node takes last),
    # and the responsibilities' columns and the (K, K) parameters with them
    hard = tau.argmax(1)
    order = _by_first_appearance(hard, tau.shape[1])
    labels = np.argsort(order)[hard]
    return SBMFit(labels, tau[:, order].copy(), int(labels.max() + 1), icl_by_k, float(elbo),
                  {key: value[np.ix_(order, order)].copy() for key, value in params.items()})
