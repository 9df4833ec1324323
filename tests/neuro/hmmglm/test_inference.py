"""Forward-backward and Viterbi against brute-force enumeration and sequential loops.

Tolerances: float64 throughout. Enumeration sums at most 3^6 = 729 path probabilities,
so the oracle itself is exact to ~1e-13; 1e-10 leaves room for the scans' rescaling.
"""

import itertools

import numpy as np
import pytest
import scipy.stats
import torch

from neuro.hmmglm import HMMGLM, forward_backward, make_params, viterbi
from neuro.hmmglm.basis import exponential_basis

TOL = 1e-10


def brute_force(log_pi, log_a, log_lik):
    steps, k = log_lik.shape
    paths = list(itertools.product(range(k), repeat=steps))
    joint = np.array([
        log_pi[p[0]] + log_lik[0, p[0]]
        + sum(log_a[p[t - 1], p[t]] + log_lik[t, p[t]] for t in range(1, steps))
        for p in paths
    ])
    log_z = np.logaddexp.reduce(joint)
    weights = np.exp(joint - log_z)
    gamma = np.zeros((steps, k))
    xi = np.zeros((max(steps - 1, 0), k, k))
    for w, p in zip(weights, paths):
        for t in range(steps):
            gamma[t, p[t]] += w
        for t in range(steps - 1):
            xi[t, p[t], p[t + 1]] += w
    best = int(np.argmax(joint))
    return log_z, gamma, xi, np.array(paths[best]), joint[best]


def random_hmm(rng, k, steps, spread=3.0):
    log_pi = np.log(rng.dirichlet(np.ones(k)))
    log_a = np.log(rng.dirichlet(np.ones(k), size=k))
    log_lik = spread * rng.standard_normal((steps, k))
    return log_pi, log_a, log_lik


@pytest.mark.parametrize("k,steps", [(1, 4), (2, 5), (3, 1), (3, 2), (3, 6)])
@pytest.mark.parametrize("chunk", [None, 2, 4])
def test_forward_backward_and_viterbi_match_enumeration(k, steps, chunk):
    rng = np.random.default_rng(10 * k + steps)
    log_pi, log_a, log_lik = random_hmm(rng, k, steps)
    log_z, gamma, xi, path, best = brute_force(log_pi, log_a, log_lik)
    t = lambda x: torch.as_tensor(x)
    post = forward_backward(t(log_pi), t(log_a), t(log_lik), return_pairwise=True, chunk=chunk)
    assert abs(float(post.log_normalizer[0]) - log_z) < TOL
    np.testing.assert_allclose(post.smoothed[0].numpy(), gamma, atol=TOL, rtol=0)
    np.testing.assert_allclose(post.pairwise[0].numpy(), xi, atol=TOL, rtol=0)
    np.testing.assert_allclose(post.expected_transitions[0].numpy(), xi.sum(0), atol=TOL, rtol=0)
    states, log_prob = viterbi(t(log_pi), t(log_a), t(log_lik), chunk=chunk)
    np.testing.assert_array_equal(states[0].numpy(), path)
    assert abs(float(log_prob[0]) - best) < TOL


def explicit_emissions(spikes, params, basis, link):
    """log p(y_t | z_t = k) with the history written as an explicit loop and scipy.stats."""
    steps, _n = spikes.shape
    k = params["bias"].shape[0]
    out = np.zeros((steps, k))
    for s in range(k):
        for t in range(steps):
            eta = params["bias"][s].copy()
            for lag in range(1, basis.shape[1] + 1):
                if t - lag >= 0:
                    for j in range(basis.shape[0]):
                        eta += params["weights"][s, :, :, j] @ spikes[t - lag] * basis[j, lag - 1]
            rate = np.exp(eta) if link == "exp" else np.logaddexp(0, eta)
            out[t, s] = scipy.stats.poisson.logpmf(spikes[t], rate).sum()
    return out


@pytest.mark.parametrize("k", [2, 3])
def test_model_posterior_matches_enumeration_with_glm_emissions(k):
    rng = np.random.default_rng(k)
    n, steps = 2, 6
    basis = exponential_basis(2, (1.0, 2.0))
    weights = 0.5 * rng.standard_normal((k, n, n, 2))
    bias = rng.normal(-0.5, 0.5, (k, n))
    initial = rng.dirichlet(np.ones(k))
    transition = rng.dirichlet(np.ones(k), size=k)
    model = HMMGLM(k, n, basis=basis, link="softplus")
    model.set_params(make_params(initial, transition, bias, weights))
    spikes = rng.poisson(1.0, (steps, n)).astype(float)
    log_lik = explicit_emissions(spikes, model.params.numpy(), basis, "softplus")
    log_z, gamma, _xi, path, _ = brute_force(np.log(initial), np.log(transition), log_lik)
    post = model.posterior(spikes)
    assert abs(float(post.log_normalizer[0]) - log_z) < TOL
    np.testing.assert_allclose(post.smoothed[0].numpy(), gamma, atol=TOL, rtol=0)
    np.testing.assert_array_equal(model.most_likely_states(spikes), path)
    assert abs(model.log_likelihood(spikes) - log_z) < TOL


def sequential_scaled(log_pi, log_a, log_lik):
    """Textbook scaled forward loop (Rabiner 1989): the long-sequence reference."""
    a = np.exp(log_a)
    alpha = np.exp(log_pi + log_lik[0] - log_lik[0].max())
    log_z = log_lik[0].max() + np.log(alpha.sum())
    alpha /= alpha.sum()
    for t in range(1, log_lik.shape[0]):
        alpha = (alpha @ a) * np.exp(log_lik[t] - log_lik[t].max())
        c = alpha.sum()
        log_z += np.log(c) + log_lik[t].max()
        alpha /= c
    return log_z


def sequential_viterbi(log_pi, log_a, log_lik):
    delta = log_pi + log_lik[0]
    pointers = []
    for t in range(1, log_lik.shape[0]):
        scores = delta[:, None] + log_a
        pointers.append(scores.argmax(0))
        delta = scores.max(0) + log_lik[t]
    path = [int(delta.argmax())]
    for ptr in reversed(pointers):
        path.append(int(ptr[path[-1]]))
    return np.array(path[::-1]), delta.max()


def test_long_sequence_against_sequential_loops_and_normalization():
    rng = np.random.default_rng(0)
    log_pi, log_a, log_lik = random_hmm(rng, 3, 3000, spread=4.0)
    t = lambda x: torch.as_tensor(x)
    post = forward_backward(t(log_pi), t(log_a), t(log_lik), return_pairwise=True)
    ref = sequential_scaled(log_pi, log_a, log_lik)
    # 3000 accumulated log terms of size ~10: rounding ~1e-12 relative to |log Z| ~ 1e4
    assert abs(float(post.log_normalizer[0]) - ref) < 1e-9 * abs(ref)
    gamma, xi = post.smoothed[0], post.pairwise[0]
    np.testing.assert_allclose(gamma.sum(-1).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(xi.sum(-1).numpy(), gamma[:-1].numpy(), atol=1e-10)
    np.testing.assert_allclose(xi.sum(-2).numpy(), gamma[1:].numpy(), atol=1e-10)
    states, log_prob = viterbi(t(log_pi), t(log_a), t(log_lik))
    path, best = sequential_viterbi(log_pi, log_a, log_lik)
    np.testing.assert_array_equal(states[0].numpy(), path)
    assert abs(float(log_prob[0]) - best) < 1e-9 * abs(best)


def test_padded_batch_equals_separate_sequences():
    rng = np.random.default_rng(1)
    lengths = [7, 3, 12]
    k = 3
    log_pi, log_a, _ = random_hmm(rng, k, 1)
    seqs = [3 * rng.standard_normal((n, k)) for n in lengths]
    padded = np.zeros((3, max(lengths), k))
    for b, s in enumerate(seqs):
        padded[b, : len(s)] = s
    t = lambda x: torch.as_tensor(x)
    post = forward_backward(t(log_pi), t(log_a), t(padded), lengths=torch.tensor(lengths), chunk=4)
    states, _ = viterbi(t(log_pi), t(log_a), t(padded), lengths=torch.tensor(lengths), chunk=4)
    for b, s in enumerate(seqs):
        single = forward_backward(t(log_pi), t(log_a), t(s))
        assert abs(float(post.log_normalizer[b] - single.log_normalizer[0])) < TOL
        np.testing.assert_allclose(post.smoothed[b, : len(s)].numpy(), single.smoothed[0].numpy(), atol=TOL)
        assert float(post.smoothed[b, len(s):].abs().sum()) == 0.0
        path, _ = sequential_viterbi(log_pi, log_a, s)
        np.testing.assert_array_equal(states[b, : len(s)].numpy(), path)


def test_parameters_with_a_batch_axis_of_one_are_shared():
    rng = np.random.default_rng(3)
    log_pi, log_a, _ = random_hmm(rng, 3, 1)
    padded = torch.as_tensor(rng.standard_normal((4, 9, 3)))
    shared = forward_backward(torch.as_tensor(log_pi), torch.as_tensor(log_a), padded)
    one = forward_backward(torch.as_tensor(log_pi)[None], torch.as_tensor(log_a)[None], padded)
    for x, y in zip(shared, one):
        assert (x is None and y is None) or torch.equal(x, y)
    assert torch.equal(viterbi(torch.as_tensor(log_pi)[None], torch.as_tensor(log_a)[None], padded)[0],
                       viterbi(torch.as_tensor(log_pi), torch.as_tensor(log_a), padded)[0])
    with pytest.raises(ValueError, match=r"log_initial \(2, 3\) .* for K=3, B=4"):
        forward_backward(torch.as_tensor(log_pi).expand(2, 3), torch.as_tensor(log_a), padded)


def test_extreme_and_impossible_values_give_no_nan():
    rng = np.random.default_rng(2)
    k, steps = 3, 500
    log_lik = rng.standard_normal((steps, k)) * 300.0  # likelihood ratios of e^600
    log_lik[:, 2] = -np.inf  # a state that can never emit the data
    with np.errstate(divide="ignore"):  # log(0) = -inf on purpose: impossible transitions
        log_a = np.log(np.array([[0.9, 0.1, 0.0], [0.0, 0.5, 0.5], [0.3, 0.3, 0.4]]))
        log_pi = np.log(np.array([0.5, 0.5, 0.0]))
    t = lambda x: torch.as_tensor(x)
    post = forward_backward(t(log_pi), t(log_a), t(log_lik))
    assert bool(torch.isfinite(post.log_normalizer).all())
    assert bool(torch.isfinite(post.smoothed).all())
    assert float(post.smoothed[..., 2].abs().max()) == 0.0
    # the scaled loop underflows here (ratios of e^600 per step); a log-space loop does not
    log_alpha = log_pi + log_lik[0]
    for t_ in range(1, steps):
        log_alpha = np.logaddexp.reduce(log_alpha[:, None] + log_a, axis=0) + log_lik[t_]
    ref = np.logaddexp.reduce(log_alpha)
    assert abs(float(post.log_normalizer[0]) - ref) < 1e-9 * abs(ref)
    states, _ = viterbi(t(log_pi), t(log_a), t(log_lik))
    path, _ = sequential_viterbi(log_pi, log_a, log_lik)
    np.testing.assert_array_equal(states[0].numpy(), path)
