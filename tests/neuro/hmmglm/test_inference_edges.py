"""forward_backward where the scaled messages lose a path that the posterior needs.

A deterministic 2-cycle (0 -> 1 -> 0 ..., forbidden self-transitions) has two state paths.
The first half of the data favours path a by more than the float range, the second half
favours path b by a bit more: alpha drops b, beta drops a, and their product at the
boundary was empty (gamma_t summing to 0) or normalised garbage. The oracle is an exact
log-space forward-backward in numpy. The drift check (every step's p(y) must agree) sends
such sequences to the log-space path; on well-posed data it must not fire: measured
relative drift (scaled by the largest message log scale) on HMM-GLM emissions (K 2-5,
N 20-200, T 2k-20k) was < 1e-15 in float64 and <= 1e-6 in float32.
"""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from neuro.hmmglm import forward_backward, inference


def log_space_oracle(log_pi, log_a, log_lik):
    steps, k = log_lik.shape
    log_alpha, log_beta = np.zeros((steps, k)), np.zeros((steps, k))
    log_alpha[0] = log_pi + log_lik[0]
    for t in range(1, steps):
        log_alpha[t] = logsumexp(log_alpha[t - 1][:, None] + log_a, axis=0) + log_lik[t]
    for t in range(steps - 2, -1, -1):
        log_beta[t] = logsumexp(log_a + (log_lik[t + 1] + log_beta[t + 1])[None, :], axis=1)
    log_z = logsumexp(log_alpha[-1])
    return log_z, np.exp(log_alpha + log_beta - log_z)


def two_cycle(favour_a, favour_b, steps=8):
    """Path a visits 0, 1, 0, ...; path b 1, 0, 1, ...; each bin of the first half gives
    path a's state ``favour_a`` nats, each bin of the second half path b's ``favour_b``."""
    log_lik = np.zeros((steps, 2))
    for t in range(steps):
        if t < steps // 2:
            log_lik[t, t % 2] = favour_a
        else:
            log_lik[t, 1 - t % 2] = favour_b
    with np.errstate(divide="ignore"):
        log_a = np.log(np.array([[0.0, 1.0], [1.0, 0.0]]))
    return np.log([0.5, 0.5]), log_a, log_lik


@pytest.mark.parametrize("dtype,favour_a,favour_b,tol", [
    (torch.float64, 200.0, 210.0, 1e-10),  # 800 nats for a, then 840 for b: beyond e^709
    (torch.float32, 30.0, 32.0, 1e-5),  # 120 nats, then 128: beyond float32's e^88
])
def test_paths_lost_by_alpha_and_beta_get_the_exact_posterior(dtype, favour_a, favour_b, tol):
    log_pi, log_a, log_lik = two_cycle(favour_a, favour_b)
    log_z, gamma = log_space_oracle(log_pi, log_a, log_lik)
    as_t = lambda x: torch.as_tensor(x, dtype=dtype)
    post = forward_backward(as_t(log_pi), as_t(log_a), as_t(log_lik), return_pairwise=True, chunk=4)
    smoothed = post.smoothed[0].double().numpy()
    np.testing.assert_allclose(smoothed.sum(-1), 1.0, atol=tol)  # was 0 at the boundary
    np.testing.assert_allclose(smoothed, gamma, atol=tol, rtol=0)
    np.testing.assert_allclose(post.pairwise[0].double().sum((-1, -2)).numpy(), 1.0, atol=tol)
    assert abs(float(post.log_normalizer[0]) - log_z) <= tol * abs(log_z)


def test_padded_batch_with_a_lost_path_matches_each_sequence_alone():
    log_pi, log_a, hard = two_cycle(200.0, 210.0)
    easy = np.random.default_rng(0).standard_normal((5, 2))
    padded = np.zeros((2, 8, 2))
    padded[0], padded[1, :5] = hard, easy
    post = forward_backward(torch.as_tensor(log_pi), torch.as_tensor(log_a), torch.as_tensor(padded),
                            lengths=torch.tensor([8, 5]), chunk=4)
    for b, (data, steps) in enumerate(((hard, 8), (easy, 5))):
        log_z, gamma = log_space_oracle(log_pi, log_a, data)
        np.testing.assert_allclose(post.smoothed[b, :steps].numpy(), gamma, atol=1e-10, rtol=0)
        assert abs(float(post.log_normalizer[b]) - log_z) < 1e-9 * max(1.0, abs(log_z))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_well_posed_long_sequences_keep_the_scaled_path(dtype, monkeypatch):
    calls = []
    original = inference._log_space
    monkeypatch.setattr(inference, "_log_space", lambda *a: calls.append(1) or original(*a))
    rng = np.random.default_rng(1)
    k, steps = 4, 5000
    transition = np.full((k, k), 0.01 / (k - 1))
    np.fill_diagonal(transition, 0.99)
    log_lik = 20.0 * rng.standard_normal((steps, k))
    as_t = lambda x: torch.as_tensor(x, dtype=dtype)
    post = forward_backward(as_t(np.log(np.ones(k) / k)), as_t(np.log(transition)), as_t(log_lik))
    assert calls == []
    assert torch.allclose(post.smoothed.sum(-1), torch.ones((), dtype=dtype), atol=1e-5)
