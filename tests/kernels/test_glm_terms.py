"""GLM terms for EM: the torch reference against scipy and autograd, the Triton kernel
(interpreter on CPU, real kernel on a GPU) against the reference."""
import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit, gammaln

from kernels.glm_terms import glm_terms, naive_glm_terms
from tests.kernels.conftest import DEVICE, relative_rms_error


def _inputs(num_timesteps, num_problems, num_neurons, link, dtype, seed, with_delta=False):
    gen = torch.Generator().manual_seed(seed)
    eta = torch.randn(num_timesteps, num_problems, num_neurons, generator=gen,
                      dtype=torch.float64) - 1.0
    eta[0, 0, 0], eta[-1, -1, -1] = -40.0, 25.0  # the tails of softplus / sigmoid
    eta[1] = -30.0 + 25.0 * torch.rand(eta.shape[1:], generator=gen, dtype=torch.float64)
    # (at eta ~ -25, log(1 + e^eta) without log1p loses all but ~5 digits)
    rate = 0.6 if link != "logistic" else 0.3
    counts = torch.poisson(torch.full((num_timesteps, num_neurons), rate, dtype=torch.float64),
                           generator=gen)
    if link == "logistic":
        counts = counts.clamp(max=1.0)
    counts[:, 0] = 0.0  # a silent neuron
    resp = torch.rand(num_timesteps, num_problems, generator=gen, dtype=torch.float64)
    delta = torch.randn(eta.shape, generator=gen, dtype=torch.float64) if with_delta else None
    return [None if x is None else x.to(dtype).to(DEVICE) for x in (eta, counts, resp, delta)]


@pytest.mark.parametrize("link", ["exp", "softplus", "logistic"])
def test_reference_matches_scipy_log_likelihood_and_autograd_derivatives(link):
    eta, counts, resp, _ = (x.cpu() if x is not None else x for x in
                            _inputs(40, 3, 5, link, torch.float64, seed=1))
    eta[-1, -1, -1] = 2.0  # keep the exp link's rates moderate for the scipy comparison
    terms = naive_glm_terms(eta, counts, resp, link, per_bin=True, derivatives=True)
    x, y = eta.numpy(), counts.numpy()[:, None, :]
    if link == "logistic":
        loglik = stats.bernoulli.logpmf(y, expit(x))
    else:
        rate = np.exp(x) if link == "exp" else np.logaddexp(0.0, x)
        loglik = stats.poisson.logpmf(y, rate) + gammaln(y + 1.0)
    r = resp.numpy()[:, :, None]
    np.testing.assert_allclose(terms.value.numpy(), (r * loglik).sum(0), rtol=1e-10)
    np.testing.assert_allclose(terms.per_bin.numpy(), loglik.sum(-1), rtol=1e-10)
    leaf = eta.clone().requires_grad_()
    value = naive_glm_terms(leaf, counts, resp, link).value.sum()
    (grad,) = torch.autograd.grad(value, leaf, create_graph=True)
    torch.testing.assert_close(terms.weighted_gradient, grad.detach(), rtol=1e-10, atol=1e-12)
    # the Hessian is diagonal in eta: d/d eta of the weighted gradient's sum, elementwise
    (second,) = torch.autograd.grad(grad.sum(), leaf)
    torch.testing.assert_close(terms.weighted_curvature, -second, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("link", ["exp", "softplus", "logistic"])
@pytest.mark.parametrize("shape, with_delta", [((37, 6, 5), False), ((70, 3, 20), True),
                                               ((5, 1, 70), True)])
def test_triton_matches_reference_float64(link, shape, with_delta, monkeypatch):
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "triton")
    eta, counts, resp, delta = _inputs(*shape, link, torch.float64, seed=shape[0],
                                       with_delta=with_delta)
    got = glm_terms(eta, counts, resp, link, delta, step=0.25, per_bin=True, derivatives=True,
                    curvature_dtype=torch.float32)
    want = naive_glm_terms(eta, counts, resp, link, delta, step=0.25, per_bin=True,
                           derivatives=True, curvature_dtype=torch.float32)
    # float64: the same formulas up to log1p/exp rounding and summation order over <= 70
    # terms: 1e-12 relative; float32 curvature: one rounding, 1e-6
    for name, tol in (("value", 1e-12), ("per_bin", 1e-12), ("weighted_gradient", 1e-12),
                      ("weighted_curvature", 1e-6)):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.isfinite(a).all(), name
        assert relative_rms_error(a, b) <= tol, (name, relative_rms_error(a, b))


def _softplus_oracle(x: float, y: float) -> tuple[float, float, float]:
    """(l, l', -l'') of the softplus Poisson link at x, in 60-digit arithmetic."""
    import mpmath

    with mpmath.workdps(60):
        e = mpmath.exp(x)
        f = mpmath.log1p(e)
        s = e / (1 + e)
        ratio = s / f
        return (float(y * mpmath.log(f) - f), float(y * ratio - s),
                float(s * (1 - s) + y * ratio * (ratio + s - 1)))


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 2e-12), (torch.float32, 2e-5)])
def test_softplus_terms_far_below_zero_match_high_precision(dtype, tol, monkeypatch):
    # Spikes where the predicted rate is tiny: f underflows (float32 below x = -88) and
    # s / f + s - 1 cancels; the series branch must stay finite and accurate. Tolerance:
    # where series and direct formulas meet, e^4 and eps / e (series_below): ~1e-12 in
    # float64, ~7e-6 in float32, on the curvature; l and l' are good to a few ulps.
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "triton")
    xs = [-120.0, -95.0, -60.0, -30.0, -12.0, -7.5, -6.5, -4.5, -3.5, -1.0, 0.5, 4.0, 15.0, 25.0]
    eta = torch.tensor(xs, dtype=torch.float64).view(-1, 1, 1)
    counts = torch.full((len(xs), 1), 2.0, dtype=torch.float64)
    resp = torch.ones(len(xs), 1, dtype=torch.float64)
    oracle = torch.tensor([_softplus_oracle(x, 2.0) for x in xs], dtype=torch.float64)
    args = [t.to(dtype).to(DEVICE) for t in (eta, counts, resp)]
    for op in (glm_terms, naive_glm_terms):
        terms = op(*args, "softplus", per_bin=True, derivatives=True)
        got = torch.stack([terms.per_bin.view(-1), terms.weighted_gradient.view(-1),
                           terms.weighted_curvature.view(-1)], 1).cpu().double()
        assert torch.isfinite(got).all(), op.__name__
        scale = oracle.abs().clamp_min(1e-30)
        assert float(((got - oracle).abs() / scale).max()) <= tol, (op.__name__, got - oracle)


def test_nan_predictors_stay_nan_and_steps_must_be_powers_of_two(monkeypatch):
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "triton")
    eta, counts, resp, delta = _inputs(9, 2, 3, "softplus", torch.float64, seed=6, with_delta=True)
    eta[4, 1, 2] = float("nan")
    for op in (glm_terms, naive_glm_terms):
        for link in ("exp", "softplus", "logistic"):
            value = op(eta, counts, resp, link).value
            assert torch.isnan(value[1, 2]) and torch.isfinite(value[0]).all(), (op, link)
        with pytest.raises(ValueError, match="step must be 0 or a power of two"):
            op(eta, counts, resp, "softplus", delta, step=0.3)
        op(eta, counts, resp, "softplus", delta, step=2.0**-15)  # a line-search step size


def test_without_resp_the_weights_are_one(monkeypatch):
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "triton")
    eta, counts, resp, _ = _inputs(33, 5, 9, "softplus", torch.float64, seed=4)
    ones = torch.ones_like(resp)
    for op in (glm_terms, naive_glm_terms):
        got = op(eta, counts, None, "softplus", per_bin=True)
        want = naive_glm_terms(eta, counts, ones, "softplus", per_bin=True)
        assert relative_rms_error(got.value, want.value) <= 1e-12
        assert relative_rms_error(got.per_bin, want.per_bin) <= 1e-12


def test_triton_value_only_float32(monkeypatch):
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "triton")
    eta, counts, resp, _ = _inputs(50, 4, 7, "softplus", torch.float32, seed=3)
    got = glm_terms(eta, counts, resp, "softplus")
    want = naive_glm_terms(eta, counts, resp, "softplus")
    assert got.per_bin is None and got.weighted_gradient is None
    # float32 sums of 50 terms ~1: a few ulps of the total
    assert relative_rms_error(got.value, want.value) <= 1e-6


@pytest.mark.parametrize("bad, message", [
    ({"link": "probit"}, "link must be one of"),
    ({"eta": torch.zeros(4, 2)}, "eta must have shape"),
    ({"counts": torch.zeros(4, 5, dtype=torch.float64)}, "counts must have shape"),
    ({"resp": torch.zeros(4, 2)}, "resp must have eta's dtype"),
    ({"delta": torch.zeros(4, 2, 2, dtype=torch.float64)}, "delta must have shape"),
])
def test_bad_inputs_name_the_argument(bad, message):
    args = {"eta": torch.zeros(4, 2, 3, dtype=torch.float64),
            "counts": torch.zeros(4, 3, dtype=torch.float64),
            "resp": torch.zeros(4, 2, dtype=torch.float64), "link": "softplus", "delta": None}
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        naive_glm_terms(**args)


@pytest.mark.parametrize("prior, shared_bias, link", [
    ("none", False, "softplus"), ("gaussian", False, "softplus"), ("onehot", False, "softplus"),
    ("none", True, "softplus"), ("none", False, "exp")])
def test_hmmglm_em_on_the_fused_path_equals_the_torch_path(prior, shared_bias, link, monkeypatch):
    # EM with the glm_terms kernel (here through the interpreter; on CUDA by default)
    # against the torch path of the CPU, float64, same initialization: the same EM up to
    # float rounding (~1e-15 per sum), which iterations do not amplify beyond 1e-9.
    # Gaussian: unbounded Newton steps with a prior; one-hot: the bounded line search.
    # The forward-backward keeps its torch scan here (the Triton scan is slow under the
    # interpreter; it is checked against torch in test_hmm_scan.py).
    import neuro.hmmglm.inference
    from neuro.hmmglm import HMMGLM
    from tests.neuro.hmmglm.test_fit import small_problem

    monkeypatch.setattr(neuro.hmmglm.inference, "use_triton", lambda *tensors: False)
    _truth, spikes, _, basis = small_problem(seed=3, steps=300, link=link)
    histories, thetas = {}, {}
    for mode in ("naive", "triton"):
        monkeypatch.setenv("NEUROBRIDGE_KERNELS", mode)
        model = HMMGLM(2, 4, basis=basis[:1] if prior == "onehot" else basis, prior=prior,
                       shared_bias=shared_bias, link=link, device=DEVICE)
        history = model.fit(spikes, num_iters=4, tolerance=0.0, num_restarts=2, seed=5,
                            warmup_iters=2)
        histories[mode] = np.asarray(history["objective_all_restarts"])
        thetas[mode] = model.params.theta().cpu()
    assert histories["naive"].shape == histories["triton"].shape
    np.testing.assert_allclose(histories["triton"], histories["naive"], rtol=1e-9)
    torch.testing.assert_close(thetas["triton"], thetas["naive"], rtol=1e-6, atol=1e-8)


def test_fused_em_reuses_the_line_search_per_bin_sums(monkeypatch):
    # On the fused path the Newton step's first trial also returns the per-bin sums at the
    # full step; when every problem accepts it the next E-step takes them instead of its own
    # glm_terms pass (one pass of three per EM iteration saved). Count the E-step's passes
    # (the only calls without posterior weights) and check the EM against the torch path.
    import neuro.hmmglm.fitting
    import neuro.hmmglm.inference
    from neuro.hmmglm import HMMGLM
    from tests.neuro.hmmglm.test_fit import small_problem

    monkeypatch.setattr(neuro.hmmglm.inference, "use_triton", lambda *tensors: False)
    _truth, spikes, _, basis = small_problem(seed=3, steps=300, link="softplus")
    calls = []

    def counting(eta, counts, resp, *args, **kwargs):
        calls.append(resp is None)
        return glm_terms(eta, counts, resp, *args, **kwargs)

    monkeypatch.setattr(neuro.hmmglm.fitting, "glm_terms", counting)
    objectives = {}
    for mode in ("naive", "triton"):
        monkeypatch.setenv("NEUROBRIDGE_KERNELS", mode)
        model = HMMGLM(2, 4, basis=basis, link="softplus", device=DEVICE)
        history = model.fit(spikes, num_iters=6, tolerance=0.0, num_restarts=2, seed=5)
        objectives[mode] = np.asarray(history["objective_all_restarts"])
    e_step_passes = sum(calls)
    assert 1 <= e_step_passes < history["num_iters"] + 1, (e_step_passes, history["num_iters"])
    np.testing.assert_allclose(objectives["triton"], objectives["naive"], rtol=1e-9)


def test_fit_sweep_on_the_fused_path_equals_the_torch_path(monkeypatch):
    # fit_sweep as a GPU runs it (glm_terms kernel, line-search per-bin sums reused by the
    # E-step) with points that stop at different iterations, so the batch shrinks mid-run:
    # the same points as the torch path, float64, up to float rounding as above.
    import neuro.hmmglm.inference
    from neuro.hmmglm import HMMGLM
    from tests.neuro.hmmglm.test_fit import small_problem

    monkeypatch.setattr(neuro.hmmglm.inference, "use_triton", lambda *tensors: False)
    _truth, spikes, _, basis = small_problem(seed=7, steps=300)
    values = {"prior_sigma": [0.5, 2.0], "stickiness": [5.0, 50.0]}
    runs = {}
    for mode in ("naive", "triton"):
        monkeypatch.setenv("NEUROBRIDGE_KERNELS", mode)
        model = HMMGLM(2, 4, basis=basis, prior="gaussian", device=DEVICE)
        runs[mode] = model.fit_sweep(spikes, values, num_iters=30, tolerance=1e-5, num_restarts=2)
    stops = [history["num_iters"] for _, history in runs["naive"]]
    assert len(set(stops)) > 1, stops  # the batch did shrink
    for (fused, fused_history), (torch_model, torch_history) in zip(runs["triton"], runs["naive"]):
        assert fused_history["num_iters"] == torch_history["num_iters"]
        np.testing.assert_allclose(fused_history["objective_all_restarts"],
                                   torch_history["objective_all_restarts"], rtol=1e-9)
        torch.testing.assert_close(fused.params.theta().cpu(), torch_model.params.theta().cpu(),
                                   rtol=1e-6, atol=1e-8)
