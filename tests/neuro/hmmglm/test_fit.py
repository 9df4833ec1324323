"""EM fitting: a K=1 model is a plain GLM (statsmodels oracle), the objective never
decreases, relabelling and seeding behave, and degenerate data give no NaN."""

import numpy as np
import pytest
import torch

from neuro.hmmglm import HMMGLM, make_params
from neuro.hmmglm.basis import design_matrix, exponential_basis


def small_problem(seed=0, k=2, n=4, steps=1500, link="softplus"):
    rng = np.random.default_rng(seed)
    basis = exponential_basis(3, (1.5,))
    weights = 0.5 * rng.standard_normal((k, n, n, 1)) * (rng.random((k, n, n, 1)) < 0.5)
    weights[:, np.arange(n), np.arange(n)] = -1.0  # self-inhibition keeps the network stable
    bias = np.full((k, n), -1.2) + 0.3 * rng.standard_normal((k, n))
    transition = np.full((k, k), 0.05 / max(k - 1, 1)) + np.eye(k) * (0.95 - 0.05 / max(k - 1, 1))
    truth = HMMGLM(k, n, basis=basis, link=link).set_params(
        make_params(np.ones(k) / k, transition, bias, weights))
    spikes, states, _ = truth.sample(steps, seed=seed)
    return truth, spikes, states, basis


def test_single_state_equals_statsmodels_poisson_glm():
    import statsmodels.api as sm

    rng = np.random.default_rng(5)
    n, steps = 3, 3000
    basis = exponential_basis(3, (1.0, 2.5))
    weights = 0.15 * rng.standard_normal((1, n, n, 2))
    weights[0, np.arange(n), np.arange(n)] = -0.5  # self-inhibition keeps the exp link stable
    truth = HMMGLM(1, n, basis=basis, link="exp").set_params(
        make_params([1.0], [[1.0]], np.full((1, n), -1.0), weights))
    spikes, _, _ = truth.sample(steps, seed=1)
    model = HMMGLM(1, n, basis=basis, link="exp")
    model.fit(spikes, num_iters=60, tolerance=0.0)
    design = design_matrix(torch.as_tensor(spikes), torch.as_tensor(basis)).numpy()
    theta = model.params.theta()[0].numpy()
    for neuron in range(n):
        ref = sm.GLM(spikes[:, neuron], design, family=sm.families.Poisson()).fit(tol=1e-12)
        # both solve the same concave MLE; IRLS and Newton stop at |grad| ~ 1e-8 -> 1e-4 is loose
        np.testing.assert_allclose(theta[neuron], ref.params, atol=1e-4, rtol=0)


def test_single_state_gaussian_prior_with_fixed_mean_is_a_ridge_glm():
    # learn_prior_mean=False: W_bar = 0, so K=1 maximizes sum_t log Poisson(y | exp(x theta))
    # - |W|^2 / (2 sigma^2) (bias unpenalized); oracle: scipy's L-BFGS on that concave objective.
    from scipy.optimize import minimize

    rng = np.random.default_rng(6)
    n, steps, sigma = 3, 2000, 0.1
    basis = exponential_basis(3, (1.0,))
    weights = 0.3 * rng.standard_normal((1, n, n, 1))
    weights[0, np.arange(n), np.arange(n)] = -0.5
    truth = HMMGLM(1, n, basis=basis, link="exp").set_params(
        make_params([1.0], [[1.0]], np.full((1, n), -1.0), weights))
    spikes, _, _ = truth.sample(steps, seed=2)
    model = HMMGLM(1, n, basis=basis, link="exp", prior="gaussian", prior_sigma=sigma,
                   learn_prior_mean=False)
    model.fit(spikes, num_iters=60, tolerance=0.0)
    design = design_matrix(torch.as_tensor(spikes), torch.as_tensor(basis)).numpy()
    theta = model.params.theta()[0].numpy()
    penalized = np.r_[0.0, np.ones(design.shape[1] - 1)] / sigma**2
    for neuron in range(n):
        y = spikes[:, neuron]

        def negative(t, y=y):
            rate = np.exp(design @ t)
            return (-(y @ (design @ t) - rate.sum()) + 0.5 * penalized @ t**2,
                    -(design.T @ (y - rate)) + penalized * t)
        ref = minimize(negative, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B",
                       options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10_000}).x
        # both solve the same strictly concave problem to |grad| ~ 1e-8: 1e-4 is loose
        np.testing.assert_allclose(theta[neuron], ref, atol=1e-4, rtol=0)
    assert np.abs(theta[:, 1:]).max() < np.abs(weights).max()  # shrunk toward 0


@pytest.mark.parametrize("prior,shared_bias,extra", [
    ("none", False, {}), ("gaussian", False, {}), ("onehot", False, {}), ("none", True, {}),
    # concentration 1: a type unused by every state gets MAP probability 0 (log -inf), whose
    # Dirichlet term (alpha - 1) log pi must be 0, not 0 * -inf = NaN
    ("onehot", False, {"type_concentration": (1.0, 1.0, 1.0)})])
def test_em_objective_never_decreases(prior, shared_bias, extra):
    _truth, spikes, _, basis = small_problem(seed=1)
    model = HMMGLM(2, 4, basis=basis, prior=prior, shared_bias=shared_bias, stickiness=2.0, **extra)
    history = model.fit(spikes, num_iters=25, tolerance=0.0, num_restarts=2, seed=3)
    values = np.asarray(history["objective_all_restarts"])
    phases = np.asarray(history["phase"])
    for phase in set(phases):
        block = values[phases == phase]
        steps = np.diff(block, axis=0)
        # float64 sums over ~6000 terms of size ~1: rounding ~1e-12 relative
        assert np.all(steps >= -1e-9 * np.abs(block[1:])), (phase, steps.min())
    assert np.isfinite(values).all()
    if extra:  # the case above did occur
        assert bool(torch.isinf(model.prior_state.log_type_prior).any())
    if shared_bias:
        bias = model.params.bias
        assert float((bias - bias[:1]).abs().max()) < 1e-12


def test_float32_fit_reaches_the_float64_optimum_without_exhausting_line_searches(monkeypatch):
    from neuro.hmmglm import newton

    _truth, spikes, _, basis = small_problem(seed=2, steps=4000)
    trials = {"count": 0}
    original = newton.objective

    def counting_objective(*args, **kwargs):
        trials["count"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(newton, "objective", counting_objective)
    results = {}
    for dtype in (torch.float64, torch.float32):
        trials["count"] = 0
        model = HMMGLM(2, 4, basis=basis, dtype=dtype)
        history = model.fit(spikes, num_iters=60, tolerance=0.0, seed=4)
        results[dtype] = (history["objective"][-1], history["num_iters"], trials["count"])
    best64, best32 = results[torch.float64][0], results[torch.float32][0]
    # float32 sums of ~16,000 terms: the optimum is resolved to ~16 eps32 |F| (the line
    # search's rounding tolerance), ~2e-6 relative
    assert abs(best32 - best64) <= 16 * torch.finfo(torch.float32).eps * abs(best64)
    _, iterations, line_search_trials = results[torch.float32]
    # without the rounding stop, every iteration at the optimum tried all 16 step sizes
    # (the count is of the torch path's objective: it must have run at all)
    assert 0 < line_search_trials <= 3 * max(iterations, 1), results


def test_default_dtype_is_float64_on_cpu_and_float32_on_gpus():
    from neuro.hmmglm.model import default_dtype

    assert HMMGLM(2, 3).dtype == torch.float64
    assert HMMGLM(2, 3, dtype=torch.float32).dtype == torch.float32
    # resolved from the device alone (no allocation: this runs without a GPU too)
    assert default_dtype(torch.device("cuda", 1)) == torch.float32
    assert default_dtype("cuda") == torch.float32 and default_dtype("cpu") == torch.float64


def test_bernoulli_em_monotone():
    rng = np.random.default_rng(2)
    spikes = (rng.random((1200, 3)) < np.where(np.arange(1200)[:, None] % 400 < 200, 0.1, 0.4)).astype(float)
    model = HMMGLM(2, 3, basis=exponential_basis(2, (1.0,)), distribution="bernoulli", link="logistic")
    values = np.asarray(model.fit(spikes, num_iters=20, tolerance=0.0)["objective"])
    assert np.all(np.diff(values) >= -1e-9 * np.abs(values[1:]))


def test_permutation_invariance_of_likelihood_and_posterior():
    truth, spikes, _, _ = small_problem(seed=2, k=3)
    perm = [2, 0, 1]
    permuted = truth.permute(perm)
    assert abs(truth.log_likelihood(spikes) - permuted.log_likelihood(spikes)) < 1e-9
    gamma = truth.posterior(spikes).smoothed[0]
    np.testing.assert_allclose(permuted.posterior(spikes).smoothed[0].numpy(),
                               gamma[:, perm].numpy(), atol=1e-12)
    path = truth.most_likely_states(spikes)
    np.testing.assert_array_equal(np.asarray(perm)[permuted.most_likely_states(spikes)], path)


def test_seeded_fit_and_sample_are_deterministic():
    truth, spikes, _, basis = small_problem(seed=3)
    a = truth.sample(300, seed=11)
    b = truth.sample(300, seed=np.random.default_rng(11))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    fits = []
    for _ in range(2):
        model = HMMGLM(2, 4, basis=basis)
        model.fit(spikes, num_iters=5, num_restarts=2, seed=7)
        fits.append(model.params.theta())
    assert torch.equal(fits[0], fits[1])


@pytest.mark.parametrize("prior", ["none", "onehot"])
def test_more_restarts_contain_the_fewer_and_never_end_lower(prior):
    # restart r starts where it would in any fit with more than r restarts, and a point's
    # restarts stop together, so restart 0 runs at least as long with R = 3 as alone (on this
    # problem, draws that depended on the batch shape started restart 0 elsewhere)
    _truth, spikes, _, basis = small_problem(seed=4, k=3)
    runs = {}
    for restarts in (1, 3):
        model = HMMGLM(3, 4, basis=basis, prior=prior)
        runs[restarts] = np.asarray(model.fit(spikes, num_iters=40, num_restarts=restarts, seed=5,
                                              warmup_iters=5)["objective_all_restarts"])
    one, three = runs[1][:, 0], runs[3][:, 0]
    # float64 sums of ~4500 terms, batched in other shapes: ~1e-12 relative
    np.testing.assert_allclose(three[:len(one)], one, rtol=1e-10)
    assert len(three) >= len(one)
    assert runs[3][-1].max() >= one[-1] - 1e-10 * abs(one[-1])


def test_multiple_sequences_pool_like_one_long_trial_split():
    truth, spikes, _, basis = small_problem(seed=4)
    pieces = [spikes[:700], spikes[700:1100], spikes[1100:]]
    total = sum(truth.log_likelihood(p) for p in pieces)
    assert abs(truth.log_likelihood(pieces) - total) < 1e-8
    paths = truth.most_likely_states(pieces)
    assert [len(p) for p in paths] == [700, 400, 400]
    model = HMMGLM(2, 4, basis=basis)
    history = model.fit(pieces, num_iters=10)
    assert np.isfinite(history["objective"]).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # float32: the GPU default
def test_degenerate_data_gives_no_nan(dtype):
    _truth, spikes, _, basis = small_problem(seed=5, k=3)
    spikes = spikes.copy()
    spikes[:, 0] = 0.0  # a silent neuron
    spikes[300:900] = 0.0  # a long silence of every neuron
    model = HMMGLM(4, 4, basis=basis, dtype=dtype)  # more states than the data support
    history = model.fit(spikes, num_iters=15)
    assert np.isfinite(history["objective"]).all()
    for tensor in (model.params.log_transition.exp(), model.params.bias, model.params.weights):
        assert bool(torch.isfinite(tensor).all())
    gamma = model.posterior(spikes).smoothed
    assert bool(torch.isfinite(gamma).all())
    # a state with (almost) no posterior mass keeps finite parameters
    empty = HMMGLM(3, 4, basis=basis, dtype=dtype)
    init = make_params(np.array([1.0, 0.0, 0.0]), np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5]]),
                       np.full((3, 4), -1.0), np.zeros((3, 4, 4, 1)))
    hist = empty.fit(spikes, num_iters=5, init_params=init)
    assert np.isfinite(hist["objective"]).all()
    assert bool(torch.isfinite(empty.params.weights).all())
    assert abs(float(empty.posterior(spikes).smoothed[0, :, 1:].sum())) < 1e-12
    assert np.isfinite(empty.score(spikes))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_matches_cpu():
    truth, spikes, _, basis = small_problem(seed=6)
    results = []
    for device in ("cpu", "cuda"):
        model = HMMGLM(2, 4, basis=basis, device=device, dtype=torch.float64)
        history = model.fit(spikes, num_iters=10, tolerance=0.0, init_params=truth.params)
        results.append(np.asarray(history["objective"]))
    # float64 on both; reductions run in a different order: ~1e-12 relative
    np.testing.assert_allclose(results[1], results[0], rtol=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_sweep_matches_cpu():
    # the batched sweep on CUDA (fused kernels; points stop apart, the batch shrinks) against
    # the same sweep on the CPU, both float64: reductions in another order, ~1e-12 relative
    _truth, spikes, _, basis = small_problem(seed=7, steps=1200)
    values = {"prior_sigma": [0.1, 0.5, 2.0], "stickiness": [0.0, 5.0, 50.0]}
    runs = {}
    for device in ("cpu", "cuda"):
        model = HMMGLM(2, 4, basis=basis, prior="gaussian", device=device, dtype=torch.float64)
        runs[device] = model.fit_sweep(spikes, values, num_iters=60, tolerance=1e-6, num_restarts=2)
    assert len({history["num_iters"] for _, history in runs["cpu"]}) > 1
    for (_, on_gpu), (_, on_cpu) in zip(runs["cuda"], runs["cpu"]):
        assert on_gpu["num_iters"] == on_cpu["num_iters"]
        np.testing.assert_allclose(on_gpu["objective_all_restarts"], on_cpu["objective_all_restarts"],
                                   rtol=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_default_float32_fit_reaches_the_cpu_float64_optimum():
    truth, spikes, _, basis = small_problem(seed=2, steps=4000)
    finals = {}
    for device in ("cpu", "cuda"):
        model = HMMGLM(2, 4, basis=basis, device=device)  # float64 on the CPU, float32 on CUDA
        history = model.fit(spikes, num_iters=60, tolerance=0.0, init_params=truth.params)
        finals[model.dtype] = history["objective"][-1]
    # as in the CPU float32 test above: resolved to the line search's 16 eps32 |F|
    assert abs(finals[torch.float32] - finals[torch.float64]) <= (
        16 * torch.finfo(torch.float32).eps * abs(finals[torch.float64]))


@pytest.mark.parametrize("prior, values", [
    ("gaussian", {"prior_sigma": [0.1, 0.5, 2.0], "stickiness": [0.0, 5.0, 50.0]}),
    ("onehot", {"stickiness": [0.0, 30.0], "transition_concentration": [1.0, 4.0]}),
    ("onehot", {"strength_floor": [0.1, 0.5, 1.2]}),  # 0.1 binds no weight here, 1.2 most
])
def test_fit_sweep_points_equal_separate_fits(prior, values):
    # Oracle: P separate fits, each with its point's hyperparameters, from the same seed.
    # The sweep runs them as one batch of P x Q restarts: the same EM up to the rounding of
    # batched sums (float64, ~1e-15 per sum; tens of iterations do not amplify it past 1e-9).
    # With a tolerance each point stops on its own iteration, as it would alone.
    _truth, spikes, _, basis = small_problem(seed=7, steps=1200)
    basis = basis[:1] if prior == "onehot" else basis
    lengths = set()
    for stop in ({"num_iters": 5, "tolerance": 0.0}, {"num_iters": 60, "tolerance": 1e-6}):
        args = dict(num_restarts=2, seed=3, warmup_iters=4, **stop)
        swept = HMMGLM(2, 4, basis=basis, prior=prior).fit_sweep(spikes, values, **args)
        assert len(swept) == len(next(iter(values.values())))
        finals = []
        for i, (model, history) in enumerate(swept):
            point = {name: seq[i] for name, seq in values.items()}
            alone = HMMGLM(2, 4, basis=basis, prior=prior, **point)
            expected = alone.fit(spikes, **args)
            for key in ("phase", "num_iters", "converged", "best_restart"):
                assert history[key] == expected[key], (key, i, stop)
            np.testing.assert_allclose(history["objective_all_restarts"],
                                       expected["objective_all_restarts"], rtol=1e-9)
            torch.testing.assert_close(model.params.theta(), alone.params.theta(), rtol=1e-6,
                                       atol=1e-8)
            for name, value in vars(model.prior_state).items():  # final with the parameters
                torch.testing.assert_close(value, getattr(alone.prior_state, name), rtol=1e-6,
                                           atol=1e-8)
            if prior == "gaussian":  # and consistent with them: the M-step's closed-form mean
                weights = model.params.weights.reshape(2, 4, -1)
                torch.testing.assert_close(model.prior_state.mean, weights.mean(0))
            else:  # every weight has its type's sign (none: exactly 0) and clears its floor
                weights, types = model.params.weights[..., 0], model.prior_state.types
                assert torch.equal(weights.sign().long(), types)
                assert bool((weights[types != 0].abs() >= model.settings.strength_floor - 1e-12).all())
            assert model.settings == alone.settings and model.prior_sigma == alone.prior_sigma
            finals.append(history["objective"][-1])
            lengths.add(len(history["phase"]))
        assert len(set(np.round(finals, 3))) == len(finals)  # the points really differ
    assert len(lengths) > 2  # points stopped at different iterations: some waited, frozen


@pytest.mark.parametrize("values, error, message", [
    ([0.1, 0.2], TypeError, "values must be a dict"),
    ({"ridge": [1.0]}, ValueError, "values can sweep"),
    ({"prior_sigma": [1.0]}, ValueError, "only prior='gaussian' has"),
    ({"strength_floor": [0.1]}, ValueError, "values sweeps strength_floor, which only prior='onehot' has"),
    ({"stickiness": [1.0, 2.0], "transition_concentration": [2.0]}, ValueError, "same number"),
    ({"stickiness": []}, ValueError, "same number"),
    ({"stickiness": [1.0, -1.0]}, ValueError, r"values\['stickiness'\]\[1\] must be finite and >= 0"),
    ({"stickiness": [float("nan")]}, ValueError, r"values\['stickiness'\]\[0\] must be finite"),
    ({"transition_concentration": [2.0, float("inf")]}, ValueError, "must be finite and >= 1"),
    ({"stickiness": 5.0}, TypeError, r"values\['stickiness'\] must be a 1-D sequence"),
    ({"stickiness": np.zeros((2, 2))}, TypeError, "1-D sequence"),
    ({"stickiness": ["x"]}, TypeError, r"values\['stickiness'\]\[0\] must be a real number"),
])
def test_fit_sweep_bad_values(values, error, message):
    _truth, spikes, _, basis = small_problem(seed=7, steps=200)
    with pytest.raises(error, match=message):
        HMMGLM(2, 4, basis=basis).fit_sweep(spikes, values, num_iters=1)


def test_converged_means_stopped_by_the_tolerance_even_on_the_last_allowed_iteration():
    _, y, _, basis = small_problem(seed=2)
    free = HMMGLM(2, 4, basis=basis).fit(y, num_iters=100, tolerance=1e-4, seed=0)
    iters = free["num_iters"]
    assert free["converged"] and 1 < iters < 100
    gains = np.diff(free["objective"])
    assert gains[-1] < 1e-4 * len(y) <= gains[-2]  # the stop is the tolerance rule's
    exact = HMMGLM(2, 4, basis=basis).fit(y, num_iters=iters, tolerance=1e-4, seed=0)
    short = HMMGLM(2, 4, basis=basis).fit(y, num_iters=iters - 1, tolerance=1e-4, seed=0)
    assert exact["objective"] == free["objective"] and exact["converged"]
    assert short["num_iters"] == iters - 1 and not short["converged"]


@pytest.mark.parametrize("distribution, link", [("poisson", "exp"), ("poisson", "softplus"),
                                                ("bernoulli", "logistic")])
def test_score_of_the_homogeneous_mean_rate_model_is_zero(distribution, link):
    # score is bits/spike over the homogeneous model of the model's own distribution: a K=1
    # model without coupling at each neuron's mean rate is that model, so it scores 0 (to
    # float64 rounding), and the same model at other rates scores below 0.
    rng = np.random.default_rng(0)
    rates = np.array([0.3, 0.05, 0.6])
    if distribution == "bernoulli":
        y = (rng.random((3000, 3)) < rates).astype(float)
    else:
        y = rng.poisson(rates, (3000, 3)).astype(float)
    mean = y.mean(0)
    inverse_link = {"exp": np.log, "softplus": lambda r: np.log(np.expm1(r)),
                    "logistic": lambda p: np.log(p / (1 - p))}[link]
    basis = exponential_basis(2, (1.0,))

    def model(rate):
        return HMMGLM(1, 3, basis=basis, link=link, distribution=distribution).set_params(
            make_params([1.0], [[1.0]], inverse_link(rate)[None], np.zeros((1, 3, 3, 1))))
    assert abs(model(mean).score(y)) < 1e-12
    assert model(np.clip(mean * 1.3, 0, 0.9)).score(y) < 0


def test_score_of_data_without_a_spike_is_refused_not_a_number_per_no_spike():
    # used to divide by max(#spikes, 1) and return a small negative "bits per spike"
    basis = exponential_basis(2, (1.0,))
    model = HMMGLM(1, 3, basis=basis).set_params(
        make_params([1.0], [[1.0]], np.full((1, 3), -1.0), np.zeros((1, 3, 3, 1))))
    silent = np.zeros((50, 3))
    assert np.isfinite(model.log_likelihood(silent))
    with pytest.raises(ValueError, match="no spike"):
        model.score(silent)
    with pytest.raises(ValueError, match="no spike"):
        model.score([silent, silent[:10]])
    spiking = silent.copy()
    spiking[7, 1] = 1.0
    assert np.isfinite(model.score(spiking))
