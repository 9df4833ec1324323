"""GLM emission terms against scipy.stats and autograd; history features against a loop.

Tolerances: float64; log-pmf values of size ~10 agree to ~1e-14 relative, we allow 1e-10.
"""

import numpy as np
import pytest
import scipy.stats
import torch

from neuro.hmmglm.basis import (
    design_matrix,
    exponential_basis,
    filters_from_weights,
    history_features,
    lag_basis,
    raised_cosine_basis,
)
from neuro.hmmglm.glm import (
    elementwise,
    emission_log_likelihoods,
    inverse_mean_function,
    log_likelihood_terms,
    mean_function,
)


@pytest.mark.parametrize("link", ["exp", "softplus"])
def test_poisson_log_likelihood_matches_scipy(link):
    rng = np.random.default_rng(0)
    eta = rng.normal(-1.0, 2.0, 500)
    counts = rng.poisson(1.5, 500).astype(float)
    rate = np.exp(eta) if link == "exp" else np.logaddexp(0.0, eta)
    ours = log_likelihood_terms(torch.as_tensor(eta), torch.as_tensor(counts), link, "poisson")
    np.testing.assert_allclose(ours.numpy(), scipy.stats.poisson.logpmf(counts, rate), rtol=1e-10, atol=1e-10)


def test_bernoulli_log_likelihood_matches_scipy():
    rng = np.random.default_rng(1)
    eta = rng.normal(0.0, 3.0, 500)
    counts = rng.integers(0, 2, 500).astype(float)
    prob = 1.0 / (1.0 + np.exp(-eta))
    ours = log_likelihood_terms(torch.as_tensor(eta), torch.as_tensor(counts), "logistic", "bernoulli")
    np.testing.assert_allclose(ours.numpy(), scipy.stats.bernoulli.logpmf(counts, prob), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("link", ["exp", "softplus", "logistic"])
def test_derivatives_match_autograd(link):
    rng = np.random.default_rng(2)
    eta = torch.tensor(rng.normal(-0.5, 2.0, 300), requires_grad=True)
    counts = torch.tensor(rng.poisson(1.0, 300).astype(float))
    if link == "logistic":
        counts = counts.clamp_max(1.0)
    loglik, grad, curv = elementwise(eta, counts, link)
    (auto_grad,) = torch.autograd.grad(loglik.sum(), eta, create_graph=True)
    (auto_second,) = torch.autograd.grad(auto_grad.sum(), eta)
    np.testing.assert_allclose(grad.detach().numpy(), auto_grad.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(curv.detach().numpy(), -auto_second.numpy(), rtol=1e-8, atol=1e-12)
    assert bool((curv >= 0).all())  # concave in eta: Newton's method is well posed


@pytest.mark.parametrize("link", ["exp", "softplus", "logistic"])
def test_inverse_mean_function_round_trip(link):
    rate = torch.tensor([0.01, 0.2, 0.7, 0.95], dtype=torch.float64)
    np.testing.assert_allclose(mean_function(inverse_mean_function(rate, link), link).numpy(),
                               rate.numpy(), rtol=1e-10)


def test_softplus_terms_finite_far_below_zero():
    eta = torch.tensor([-50.0, -300.0, -650.0], dtype=torch.float64)
    counts = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    loglik, grad, curv = elementwise(eta, counts, "softplus")
    # log softplus(eta) = eta + O(e^eta) there
    np.testing.assert_allclose(loglik.numpy(), (counts * eta - torch.exp(eta)).numpy(), rtol=1e-12)
    assert bool(torch.isfinite(grad).all() and torch.isfinite(curv).all())


def test_history_features_match_explicit_loop_and_are_causal():
    rng = np.random.default_rng(3)
    basis = np.vstack([exponential_basis(4, (1.0, 3.0)), raised_cosine_basis(1, 4)])
    spikes = rng.poisson(0.7, (30, 3)).astype(float)
    features = history_features(torch.as_tensor(spikes), torch.as_tensor(basis)).numpy()
    expected = np.zeros((30, 3, basis.shape[0]))
    for t in range(30):
        for n in range(3):
            for j in range(basis.shape[0]):
                for lag in range(1, 5):
                    if t - lag >= 0:
                        expected[t, n, j] += basis[j, lag - 1] * spikes[t - lag, n]
    np.testing.assert_allclose(features, expected, rtol=1e-13, atol=1e-13)
    # one spike at t0 changes features only at t0+1 .. t0+num_lags
    single = np.zeros((20, 2))
    single[7, 1] = 1.0
    feat = history_features(torch.as_tensor(single), torch.as_tensor(lag_basis(4))).numpy()
    touched = sorted(set(np.nonzero(feat)[0].tolist()))
    assert touched == [8, 9, 10, 11]
    assert np.all(feat[:, 0] == 0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_design_matrix_of_integer_counts_keeps_the_basis_real(dtype):
    # the basis was cast to the spikes' dtype: int64 counts truncated exp(-1/tau) weights to 0
    spikes = np.random.default_rng(5).poisson(0.5, (40, 3)).clip(0, 1)
    basis = exponential_basis(4, (1.0, 2.0))
    expected = design_matrix(torch.as_tensor(spikes, dtype=torch.float64), torch.as_tensor(basis))
    got = design_matrix(torch.as_tensor(spikes).to(dtype), torch.as_tensor(basis))
    assert got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_design_matrix_takes_numpy_spikes_and_basis():
    # default_basis() and the basis generators return numpy arrays (was AttributeError: .to)
    spikes = np.random.default_rng(6).poisson(0.5, (30, 2)).astype(float)
    basis = exponential_basis(5, (1.0, 2.0, 4.0))
    expected = design_matrix(torch.as_tensor(spikes), torch.as_tensor(basis))
    np.testing.assert_array_equal(design_matrix(spikes, basis).numpy(), expected.numpy())
    np.testing.assert_array_equal(history_features(torch.as_tensor(spikes), basis).numpy(),
                                  expected[:, 1:].reshape(30, 2, 3).numpy())
    with pytest.raises(ValueError, match=r"spikes must be \(T, N\) and basis \(L, num_lags\), got shapes \(30,\)"):
        design_matrix(spikes[:, 0], basis)


def test_design_matrix_and_emissions_shapes_and_values():
    rng = np.random.default_rng(4)
    spikes = torch.as_tensor(rng.poisson(0.5, (50, 3)).astype(float))
    basis = torch.as_tensor(exponential_basis(3, (1.0, 2.0)))
    design = design_matrix(spikes, basis)
    assert design.shape == (50, 1 + 3 * 2)
    assert bool((design[:, 0] == 1).all())
    theta = torch.as_tensor(rng.normal(0, 0.3, (2, 3, 7)))  # (K, N, D)
    ll = emission_log_likelihoods(design, spikes, theta, "exp", "poisson")
    eta = np.einsum("td,knd->tkn", design.numpy(), theta.numpy())
    expected = scipy.stats.poisson.logpmf(spikes.numpy()[:, None, :], np.exp(eta)).sum(-1)
    np.testing.assert_allclose(ll.numpy(), expected, rtol=1e-10)


def test_filters_from_weights():
    basis = exponential_basis(5, (1.0, 2.0))
    w = np.array([[0.5, -1.0]])
    np.testing.assert_allclose(filters_from_weights(w, basis), w @ basis)


@pytest.mark.parametrize("link", ["exp", "softplus"])
def test_sparse_batched_terms_equal_dense_elementwise(link):
    from neuro.hmmglm.glm import batched_terms

    rng = np.random.default_rng(6)
    eta = torch.as_tensor(rng.normal(-1.5, 2.0, (200, 2, 3, 5)))
    counts = torch.as_tensor(rng.poisson(0.3, (200, 5)).astype(float))
    dense = elementwise(eta, counts[:, None, None, :], link)
    sparse = batched_terms(eta, counts, link)
    for a, b in zip(dense, sparse):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(batched_terms(eta, counts, link, derivatives=False).numpy(),
                               dense[0].numpy(), rtol=1e-12, atol=1e-14)


def test_sparse_batched_terms_with_given_spikes_strided_eta_and_silence():
    from neuro.hmmglm.glm import batched_terms

    rng = np.random.default_rng(7)
    # a transposed (non-contiguous) eta; neuron 2 never fires; known spike positions passed in
    eta = torch.as_tensor(rng.normal(-1.0, 2.0, (3, 150, 4))).transpose(0, 1)
    counts = torch.as_tensor(rng.poisson(0.4, (150, 4)).astype(float))
    counts[:, 2] = 0.0
    dense = elementwise(eta, counts[:, None, :], "softplus")
    spikes = counts.nonzero(as_tuple=True)
    loglik, grad, curvature = batched_terms(eta, counts, "softplus", spikes=spikes)
    none, grad_only, curvature_only = batched_terms(eta, counts, "softplus", need_loglik=False, spikes=spikes)
    assert none is None
    # same float64 operations per element, in another order at most: rounding only
    for got, want in ((loglik, dense[0]), (grad, dense[1]), (curvature, dense[2]),
                      (grad_only, dense[1]), (curvature_only, dense[2])):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-14)
    silent = batched_terms(eta, torch.zeros_like(counts), "softplus", derivatives=False)
    np.testing.assert_allclose(silent.numpy(), -torch.nn.functional.softplus(eta).numpy(), rtol=1e-15)


def test_weighted_time_sum_equals_einsum():
    from neuro.hmmglm.newton import weighted_time_sum

    rng = np.random.default_rng(8)
    resp = torch.as_tensor(rng.random((300, 2, 3)))
    terms = torch.as_tensor(rng.normal(size=(300, 2, 3, 5)))
    strided = torch.as_tensor(rng.normal(size=(300, 5, 2, 3))).permute(0, 2, 3, 1)
    for values in (terms, strided):
        # the same float64 products summed over t: equal up to summation order
        np.testing.assert_allclose(weighted_time_sum(resp, values).numpy(),
                                   torch.einsum("trk,trkn->rkn", resp, values).numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("call, error, message", [
    (lambda: raised_cosine_basis(2.5, 5), TypeError, "num_basis must be an int"),  # was 3 bumps
    (lambda: raised_cosine_basis(3, 7.5), TypeError, "num_lags must be an int"),
    (lambda: raised_cosine_basis(2, 1), ValueError, "num_basis must be <= num_lags"),  # was 2 equal rows
    (lambda: lag_basis(0), ValueError, "num_lags must be >= 1"),  # was an empty (0, 0) basis
    (lambda: lag_basis(2.7), TypeError, "num_lags must be an int"),  # was numpy's own error
    (lambda: exponential_basis(5, "ab"), ValueError,  # was numpy's "could not convert string"
     "time_constants_bins must be positive and finite, got 'ab'"),
])
def test_basis_sizes_must_be_positive_ints(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_raised_cosine_bumps_sum_to_two_between_the_inner_centres_and_less_at_the_ends():
    basis = raised_cosine_basis(6, 20)
    total = basis.sum(0)
    u = np.log(np.arange(1, 21) + 1.0)
    centres = np.linspace(u[0], u[-1], 6)
    inner = (u >= centres[1]) & (u <= centres[-2])
    np.testing.assert_allclose(total[inner], 2.0, atol=1e-12)
    assert total[0] == pytest.approx(1.5) and total[-1] == pytest.approx(1.5)
    assert (total[~inner] < 2.0).all()


def test_raised_cosine_bumps_are_linearly_independent_whenever_allowed():
    # every allowed size gives a full-rank basis, so the design never has collinear columns
    for num_basis in range(1, 7):
        for num_lags in range(num_basis, 12):
            assert np.linalg.matrix_rank(raised_cosine_basis(num_basis, num_lags)) == num_basis
