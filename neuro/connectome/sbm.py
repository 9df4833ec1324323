"""Weighted stochastic block model fitted by variational EM, number of blocks by ICL.

Undirected graph on n nodes with non-negative weights W (symmetric, diagonal ignored), block
labels z_i in {1..K} with prior pi, and for every pair i < j, given z_i = k, z_j = l:

  distribution="exponential" (hurdle; the "real-exponential" weights the paper uses through
  graph-tool, Peixoto 2018, arXiv 1705.10225):
      edge e_ij = [W_ij > 0] ~ Bernoulli(p_kl),  W_ij | e_ij = 1 ~ Exponential(mean mu_kl)
  distribution="poisson" (counts, e.g. synapse numbers):
      W_ij ~ Poisson(theta_i theta_j omega_kl), theta_i = 1 or, with degree_corrected=True,
      theta_i = d_i / mean(d) (plug-in strengths, Karrer & Newman 2011, arXiv 1008.3926).

Mean-field q(z) = prod_i Cat(tau_i) (Daudin, Picard & Robin 2008; Mariadassou, Robin & Vacher
2010, arXiv 0912.3838). E-step (coordinate ascent, one node at a time in a label-free order):
    log tau_ik = log pi_k + sum_{j != i} sum_l tau_jl log f(W_ij | k, l) + const,
M-step: pi = mean tau; p_kl = (tau^T E tau)_kl / (tau^T O tau)_kl; mu_kl = (tau^T W tau) /
(tau^T E tau); omega_kl = (tau^T W tau) / (tau^T Theta tau), with E the edge indicator, O = 1 - I
and Theta = theta theta^T - diag(theta^2). The number of blocks maximises the integrated
classification likelihood ICL = log f(W, z_hat | theta_hat) - (K - 1)/2 log n
- q K (K + 1)/4 log(n (n - 1)/2), q = parameters per block pair (2 or 1).
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


def _canonical(labels: np.ndarray) -> np.ndarray:
    _, first = np.unique(labels, return_index=True)
    mapping = np.zeros(labels.max() + 1, dtype=np.int64)
    for new, old in enumerate(labels[np.sort(first)]):
        mapping[old] = new
    return mapping[labels]


def _canonical_node_order(weights: np.ndarray) -> np.ndarray:
    """Nodes sorted by strength, then by sorted weight profile: depends only on the graph."""
    profile = -np.sort(-weights, axis=1)
    keys = [profile[:, c] for c in range(profile.shape[1] - 1, -1, -1)] + [weights.sum(1)]
    return np.lexsort(keys)


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


class _Model:
    def __init__(self, weights, distribution, degree_corrected):
        n = weights.shape[0]
        self.weights = weights
        self.off_diagonal = 1.0 - np.eye(n)
        self.edges = (weights > 0).astype(np.float64)
        self.distribution = distribution
        degree = weights.sum(1)
        if degree_corrected and degree.mean() > 0:
            self.theta = degree / degree.mean()
        else:
            self.theta = np.ones(n)

    def m_step(self, tau):
        counts = tau.sum(0)
        pair_mass = np.outer(counts, counts) - tau.T @ tau
        weight_mass = tau.T @ self.weights @ tau
        if self.distribution == "exponential":
            edge_mass = tau.T @ self.edges @ tau
            probability = np.clip(edge_mass / np.maximum(pair_mass, _TINY), _TINY, 1 - _TINY)
            mean = np.maximum(weight_mass / np.maximum(edge_mass, _TINY), _TINY)
            return {"edge_probability": probability, "weight_mean": mean}
        theta_tau = tau * self.theta[:, None]
        exposure = np.outer(theta_tau.sum(0), theta_tau.sum(0)) - theta_tau.T @ theta_tau
        rate = np.maximum(weight_mass / np.maximum(exposure, _TINY), _TINY)
        return {"rate": rate}

    def node_block_loglik(self, tau, params):
        """(n, K): sum_{j != i} sum_l tau_jl log f(W_ij | k, l)."""
        if self.distribution == "exponential":
            p, mean = params["edge_probability"], params["weight_mean"]
            edge_tau = self.edges @ tau
            non_edge_tau = self.off_diagonal @ tau - edge_tau
            return (edge_tau @ (np.log(p) - np.log(mean)).T + non_edge_tau @ np.log1p(-p).T
                    - (self.weights @ tau) @ (1.0 / mean).T)
        rate = params["rate"]
        theta_tau = (self.off_diagonal @ (tau * self.theta[:, None])) * self.theta[:, None]
        return (self.weights @ tau) @ np.log(rate).T - theta_tau @ rate.T

    def num_parameters_per_pair(self):
        return 2 if self.distribution == "exponential" else 1


def _block_terms(model: _Model, params):
    """Per-block-pair coefficients c of node_block_loglik = sum_s aggregate_s @ c_s^T."""
    if model.distribution == "exponential":
        p, mean = params["edge_probability"], params["weight_mean"]
        return np.log(p) - np.log(mean) - np.log1p(-p), np.log1p(-p), -1.0 / mean
    return np.log(params["rate"]), -params["rate"]


def _vem(model: _Model, tau: np.ndarray, iterations: int, tol: float, order: np.ndarray):
    """Coordinate-ascent mean field: nodes updated one at a time in `order` (a canonical,
    label-free order), block parameters re-estimated after every sweep."""
    elbo_previous = -np.inf
    tau = tau.copy()
    params = model.m_step(tau)
    elbo = -np.inf
    if model.distribution == "exponential":
        rows = np.stack([model.edges, model.weights], axis=1)  # (n, 2, n)
    else:
        rows = model.weights[:, None, :]
    theta = model.theta
    for _ in range(iterations):
        log_prior = np.log(np.maximum(tau.mean(0), _TINY))
        terms = _block_terms(model, params)
        if model.distribution == "exponential":
            # logits_i = log pi + [E_i tau, sum_{j != i} tau_j, W_i tau] @ [T0; T1; T2]
            stacked = np.concatenate([terms[0].T, terms[2].T, terms[1].T], axis=0)
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
        elbo = expected + np.sum(tau @ np.log(prior)) + entropy
        if abs(elbo - elbo_previous) <= tol * max(1.0, abs(elbo)):
            break
        elbo_previous = elbo
    return tau, params, elbo


def _hard_loglik(model: _Model, labels: np.ndarray, num_blocks: int) -> float:
    tau = np.eye(num_blocks)[labels]
    params = model.m_step(tau)
    counts = tau.sum(0)
    prior = np.maximum(counts / counts.sum(), _TINY)
    return float(0.5 * np.sum(tau * model.node_block_loglik(tau, params)) + counts @ np.log(prior))


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
    check_choice("distribution", distribution, ("exponential", "poisson"))
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
    embedding_all = _spectral_embedding(weights)
    order = _canonical_node_order(weights)
    num_pairs = n * (n - 1) / 2
    best = None
    icl_by_k = {}
    for k in candidates:
        embedding = embedding_all[:, :k]
        starts = [_farthest_point_centres(embedding, k)]
        starts += [_kmeans_plus_plus_centres(embedding, k, rng) for _ in range(num_restarts)]
        partitions = {}
        for centres in starts:
            labels = _kmeans(embedding, k, centres)
            inertia = float(sum(((embedding[labels == c] - embedding[labels == c].mean(0)) ** 2)
                                .sum() for c in np.unique(labels)))
            partitions.setdefault(tuple(_canonical(labels)), inertia)
        ranked = sorted(partitions.items(), key=lambda item: (item[1], item[0]))
        best_k = None
        for labels, _ in ranked[:num_vem_starts]:
            labels = np.asarray(labels)
            tau = np.full((n, k), 0.05 / max(k - 1, 1)) if k > 1 else np.ones((n, 1))
            tau[np.arange(n), labels] = 0.95 if k > 1 else 1.0
            tau, params, elbo = _vem(model, tau, iterations, tol, order)
            if best_k is None or elbo > best_k[2] + 1e-9 * abs(elbo):
                best_k = (tau, params, elbo)
        tau, params, elbo = best_k
        hard = tau.argmax(1)
        used = np.unique(hard)
        hard = np.searchsorted(used, hard)
        penalty = 0.5 * (used.size - 1) * np.log(n) + 0.25 * model.num_parameters_per_pair() \
            * used.size * (used.size + 1) * np.log(num_pairs)
        icl = _hard_loglik(model, hard, used.size) - penalty
        icl_by_k[k] = float(icl)
        if best is None or icl > best[0]:
            best = (icl, tau, params, elbo)
    _, tau, params, elbo = best
    labels = _canonical(tau.argmax(1))
    return SBMFit(labels, tau, int(labels.max() + 1), icl_by_k, float(elbo),
                  {key: value.copy() for key, value in params.items()})
