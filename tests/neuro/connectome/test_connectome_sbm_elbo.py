"""The SBM's evidence lower bound against brute-force enumeration of every block assignment.

Oracle: for a 6-node graph and K = 2 there are 2^6 assignments z; with q(z) = prod_i tau_i,z_i
the ELBO is sum_z q(z) log p(W, z | params) + H(q), every log p a sum of scipy log densities over
the pairs i < j plus log pi_{z_i}. The log evidence log sum_z p(W, z) bounds it from above.
Everything is float64 and sums ~20 terms of size ~1-10: agreement to 1e-10 relative.
"""

import itertools

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from neuro.connectome.sbm import _hard_loglik, _Model, _vem, fit_sbm

NUM_NODES, NUM_BLOCKS = 6, 2


def _pair_logpdf(weight, k, l, i, j, params, distribution, theta):
    if distribution == "poisson":
        return stats.poisson.logpmf(weight, theta[i] * theta[j] * params["rate"][k, l])
    p = params["edge_probability"][k, l]
    if weight == 0:
        return np.log1p(-p)
    if distribution == "exponential":
        return np.log(p) + stats.expon.logpdf(weight, scale=params["weight_mean"][k, l])
    return np.log(p) + stats.lognorm.logpdf(
        weight, s=np.sqrt(params["log_weight_variance"][k, l]),
        scale=np.exp(params["log_weight_mean"][k, l]))


def _log_joint(weights, z, params, prior, distribution, theta):
    total = float(np.sum(np.log(prior[z])))
    for i in range(NUM_NODES):
        for j in range(i + 1, NUM_NODES):
            total += _pair_logpdf(weights[i, j], z[i], z[j], i, j, params, distribution, theta)
    return total


def _brute_force(weights, tau, params, prior, distribution, theta):
    """(ELBO of q = prod tau, log evidence) by enumerating all assignments."""
    expected, log_joints = 0.0, []
    for z in itertools.product(range(NUM_BLOCKS), repeat=NUM_NODES):
        z = np.array(z)
        log_joint = _log_joint(weights, z, params, prior, distribution, theta)
        log_joints.append(log_joint)
        expected += np.prod(tau[np.arange(NUM_NODES), z]) * log_joint
    entropy = -float(np.sum(tau * np.log(tau)))
    return expected + entropy, float(logsumexp(log_joints))


def _graph(distribution, seed):
    rng = np.random.default_rng(seed)
    shape = (NUM_NODES, NUM_NODES)
    if distribution == "poisson":
        weights = rng.poisson(2.0, shape).astype(float)
    else:
        weights = np.where(rng.random(shape) < 0.6, rng.exponential(1.0, shape), 0.0)
    weights = np.triu(weights, k=1)
    return weights + weights.T


CASES = [("exponential", False), ("lognormal", False), ("poisson", False), ("poisson", True)]


@pytest.mark.parametrize(("distribution", "degree_corrected"), CASES)
@pytest.mark.parametrize("seed", range(3))
def test_sbm_elbo_equals_brute_force_enumeration(distribution, degree_corrected, seed):
    weights = _graph(distribution, seed)
    model = _Model(weights, distribution, degree_corrected)
    start = np.random.default_rng(100 + seed).dirichlet(np.ones(NUM_BLOCKS), size=NUM_NODES)
    for iterations in (1, 3):
        tau, params, elbo = _vem(model, start, iterations, 0.0, np.arange(NUM_NODES))
        expected, log_evidence = _brute_force(weights, tau, params, tau.mean(0), distribution,
                                              model.theta)
        assert elbo == pytest.approx(expected, rel=1e-10)
        assert elbo <= log_evidence + 1e-10 * abs(log_evidence)  # a lower bound


@pytest.mark.parametrize(("distribution", "degree_corrected"), CASES)
def test_sbm_hard_log_likelihood_equals_scipy(distribution, degree_corrected):
    weights = _graph(distribution, 7)
    model = _Model(weights, distribution, degree_corrected)
    labels = np.array([0, 0, 1, 0, 1, 1])
    params = model.m_step(np.eye(NUM_BLOCKS)[labels])
    prior = np.bincount(labels) / NUM_NODES
    expected = _log_joint(weights, labels, params, prior, distribution, model.theta)
    assert _hard_loglik(model, labels, NUM_BLOCKS) == pytest.approx(expected, rel=1e-10)


def test_fitted_poisson_sbm_elbo_is_below_its_log_evidence():
    weights = _graph("poisson", 11)
    fit = fit_sbm(weights, NUM_BLOCKS, distribution="poisson", seed=0)
    tau = np.clip(fit.responsibilities, 1e-300, 1.0)
    expected, log_evidence = _brute_force(weights, tau, fit.parameters, tau.mean(0), "poisson",
                                          np.ones(NUM_NODES))
    assert fit.elbo == pytest.approx(expected, rel=1e-10)
    assert fit.elbo <= log_evidence + 1e-10 * abs(log_evidence)
