"""The HMM-GLM model: hyperparameters + fitted parameters, with fit / sample / inference.

Li, Kim, Rodgers, Choi, Wu, "One-hot Generalized Linear Model for Switching Brain State
Discovery", ICLR 2024 (arXiv 2310.15263). In state z_t = k, neuron n's count at bin t is

    y_tn ~ Poisson(f(b_kn + sum_m sum_j W_k[n, m, j] X[t, m, j]))   (or Bernoulli, logistic)

with X the causal history features of ``basis.py`` and z a Markov chain. Priors on W:
``"none"``, ``"gaussian"`` and ``"onehot"`` (see ``priors.py``). Inputs are numpy or torch
arrays of shape (T, N) or a list of them (independent trials).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import torch

from neuro.checks import check_device, check_flag, check_int, check_real
from neuro.hmmglm.basis import default_basis, validate_basis
from neuro.hmmglm.data import check_spikes, prepare
from neuro.hmmglm.fitting import EMSettings, initial_onehot_state, run_em
from neuro.hmmglm.glm import DEFAULT_LINKS, check_link, emission_log_likelihoods
from neuro.hmmglm.hyperparameters import (
    RULES,
    check_hyperparameter,
    check_type_concentration,
    sweep_points,
)
from neuro.hmmglm.inference import Posterior, forward_backward, viterbi
from neuro.hmmglm.init import kmeans_initialization
from neuro.hmmglm.newton import PackedOuterProducts
from neuro.hmmglm.params import HMMGLMParams, check_params
from neuro.hmmglm.priors import PRIORS, GaussianPriorState, OneHotPriorState
from neuro.hmmglm.seeding import numpy_generator
from neuro.hmmglm.simulate import sample_spikes, sample_states

FLOAT_DTYPES = (torch.float32, torch.float64)
DEFAULT_FIT_MEMORY_LIMIT_BYTES = 8 * 2**30
PACKED_MAX_BYTES = 1 << 30  # PackedOuterProducts' default max_bytes; a fit's least cap


def estimate_fit_bytes(num_timesteps: int, num_neurons: int, num_basis: int, num_states: int,
                       num_restarts: int, dtype: torch.dtype = torch.float64,
                       packed_max_bytes: int = PACKED_MAX_BYTES) -> int:
    """Rough peak bytes of ``HMMGLM.fit`` on T bins (all sequences), N neurons, L basis
    functions, K states and R restarts (sweep points times restarts): the design matrix
    (T, D = N L + 1) and its temporaries, the packed outer products (T, D(D+1)/2) fp32
    (capped at ``packed_max_bytes``: beyond it they are rebuilt in chunks), the counts,
    ~8 live (T, R, K, N) arrays (linear predictors, log-likelihood terms, derivatives,
    line-search trials), and two (R K N, D, D) arrays of the Newton solve (the Hessians and
    their Cholesky factors, ``newton.ridged_cholesky``: 5.4 GiB at N = 200, L = 3, K = 5;
    without them the estimate said 2.6 GiB there). Our estimate, calibrated on the CPU
    (peak resident growth of a fit, 1 thread, K = 5: T = 20,000 at N, L = 100, 1: 1.21 GiB
    measured, 1.13 estimated; 200, 1: 1.69 and 2.94; 100, 3: 1.72 and 2.44; T = 2,000 at
    150, 2: 1.58 and 1.46)."""
    itemsize = torch.empty(0, dtype=dtype).element_size()
    dim = num_neurons * num_basis + 1
    packed = min(num_timesteps * (dim * (dim + 1) // 2) * 4, packed_max_bytes)
    per_bin = (3 * dim + 2 * num_neurons + 8 * num_restarts * num_states * num_neurons) * itemsize
    newton = 2 * num_restarts * num_states * num_neurons * dim * dim * itemsize
    return int(packed + num_timesteps * per_bin + newton)


def packed_budget(num_timesteps: int, num_neurons: int, num_basis: int, num_states: int,
                  num_restarts: int, dtype: torch.dtype, memory_limit_bytes: int) -> int:
    """The cap a fit gives its packed outer products: what the rest of ``estimate_fit_bytes``
    leaves under ``memory_limit_bytes``, and at least ``PACKED_MAX_BYTES`` (our choice).

    Above the cap they are rebuilt on every Hessian, which costs (1 thread, T = 20,000,
    K = 5, one Hessian) 6.9 s instead of 5.7 s at N = 200, L = 1 (1.6 GB stored) and 9.5 s
    instead of 6.7 s at N = 100, L = 3 (3.6 GB), so a fit stores them whenever its memory
    limit allows. A fit refused under this budget is refused under the fixed 1 GiB cap too
    (the estimate with the cap is the rest plus min(full size, cap) <= the limit whenever
    the cap exceeds 1 GiB)."""
    rest = estimate_fit_bytes(num_timesteps, num_neurons, num_basis, num_states, num_restarts,
                              dtype, packed_max_bytes=0)
    return max(PACKED_MAX_BYTES, memory_limit_bytes - rest)


def _count_bins(spikes) -> tuple[int, int] | None:
    """(total T, N) from the shapes of (T, N) arrays or a list of them, without converting;
    None when a shape is not 2-D (``check_spikes`` then names the problem)."""
    seqs = list(spikes) if isinstance(spikes, (list, tuple)) else [spikes]
    total, width = 0, None
    for seq in seqs:
        shape = getattr(seq, "shape", None)
        if shape is None or len(shape) != 2:
            return None
        total, width = total + int(shape[0]), int(shape[1])
    return (total, width) if seqs else None


def default_dtype(device) -> torch.dtype:
    """The model's dtype when none is given: float64 on the CPU, float32 on a GPU (our choice).

    On a GPU, fp64 arithmetic is the bottleneck of batched fits: on an H100 the emission
    terms (``kernels.glm_terms``) are instruction-bound on fp64 exp/log/division sequences,
    2.32 ms per call in float64 vs 0.54 ms in float32 at 64 restarts of problem (a), and an
    EM iteration of 64 restarts took 13.2 ms in float64 vs 6.74 ms in float32 (one restart:
    ~4.5 ms in either, host-bound). float32 fits reach the float64 fits' optimum (CPU, torch
    path, same initialization; ``tests/neuro/hmmglm/test_fit.py`` checks the optimum):
    problem (a), seeds 0-3: state accuracy and weight correlation equal to 1e-4,
    log-likelihoods (evaluated in float64) within 0.006 nats of ~1.9e5; problem (b), priors
    none / gaussian / one-hot at 5k and 20k bins: held-out bits/spike within 5e-4. The CPU
    keeps float64 (the issue's default), which costs 1.5-1.8x float32 there.
    """
    return torch.float64 if torch.device(device).type == "cpu" else torch.float32


class HMMGLM:
    """K-state HMM with multi-neuron GLM emissions (coupling filters) and a weight prior.

    ``dtype``: torch.float32 or torch.float64; None (the default) picks float64 on the CPU
    and float32 on a GPU (``default_dtype``). ``device``: where data, parameters and all
    computation live. ``link``: None (the default) picks softplus for ``distribution="poisson"``
    and logistic (its only link) for ``"bernoulli"``; exp is the other Poisson link.
    """

    def __init__(self, num_states: int, num_neurons: int, basis=None, link: str | None = None,
                 distribution: str = "poisson", prior: str = "none", shared_bias: bool = False,
                 transition_concentration: float = 1.0, stickiness: float = 0.0,
                 prior_sigma: float = 0.5, learn_prior_mean: bool = True,
                 learn_prior_sigma: bool = False, sigma_floor: float = 0.05,
                 strength_floor: float = 0.1, type_concentration=(1.2, 3.0, 1.2),
                 newton_steps: int = 1, dtype=None, device="cpu"):
        num_states = check_int("num_states", num_states)
        num_neurons = check_int("num_neurons", num_neurons)
        if link is None:
            # check_link names a bad distribution (an unhashable one must not reach the dict)
            link = DEFAULT_LINKS.get(distribution, "softplus") if isinstance(distribution, str) else "softplus"
        check_link(distribution, link)
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        self.basis = validate_basis(default_basis() if basis is None else basis)
        if prior == "onehot" and self.basis.shape[0] != 1:
            raise ValueError(f"prior='onehot' needs a basis with one function (L=1), got L={self.basis.shape[0]}")
        given = {"transition_concentration": transition_concentration, "stickiness": stickiness,
                 "prior_sigma": prior_sigma, "sigma_floor": sigma_floor,
                 "strength_floor": strength_floor}
        for name in RULES:
            check_hyperparameter(name, given[name])
        type_concentration = check_type_concentration(type_concentration)
        shared_bias, learn_prior_mean, learn_prior_sigma = (
            check_flag(name, flag) for name, flag in (("shared_bias", shared_bias),
                                                      ("learn_prior_mean", learn_prior_mean),
                                                      ("learn_prior_sigma", learn_prior_sigma)))
        newton_steps = check_int("newton_steps", newton_steps)
        self.num_states, self.num_neurons = num_states, num_neurons
        self.settings = EMSettings(
            link=link, distribution=distribution, prior=prior, shared_bias=shared_bias,
            transition_concentration=transition_concentration, stickiness=stickiness,
            newton_steps=newton_steps, learn_prior_mean=learn_prior_mean,
            learn_prior_sigma=learn_prior_sigma, sigma_floor=sigma_floor,
            strength_floor=strength_floor, type_concentration=type_concentration)
        self.prior_sigma = prior_sigma
        self.device = check_device("device", device)
        self.dtype = default_dtype(self.device) if dtype is None else dtype
        if self.dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be torch.float32, torch.float64 or None (the device's "
                            f"default), got {dtype!r}")
        self.params: HMMGLMParams | None = None
        self.prior_state = None

    # ------------------------------------------------------------------ helpers
    @property
    def num_lags(self) -> int:
        return self.basis.shape[1]

    def _data(self, spikes):
        seqs = check_spikes(spikes, self.num_neurons, self.num_lags, self.settings.distribution,
                            self.dtype, self.device)
        return prepare(seqs, self.basis.to(self.device, self.dtype))

    def _require_params(self) -> HMMGLMParams:
        if self.params is None:
            raise ValueError("the model has no parameters: call fit() or set_params() first")
        return self.params

    def set_params(self, params: HMMGLMParams) -> HMMGLM:
        """Use ``params`` (checked: ``params.check_params``); any fitted prior state (e.g. the
        one-hot connection types) belonged to the old parameters and is dropped."""
        check_params(params, self.num_states, self.num_neurons, self.basis.shape[0])
        self.params = params.to(self.device, self.dtype)
        self.prior_state = None
        return self

    def _initial_prior_state(self, params: HMMGLMParams, sigma: torch.Tensor):
        r = params.bias.shape[0]
        flat = params.weights.reshape(r, self.num_states, self.num_neurons, -1)
        if self.settings.prior == "gaussian":  # W_bar starts at the states' mean, or is 0 for good
            mean = flat.mean(1) if self.settings.learn_prior_mean else torch.zeros_like(flat[:, 0])
            return GaussianPriorState(mean, sigma)
        return None

    # ------------------------------------------------------------------ fitting
    def fit(self, spikes, num_iters: int = 100, tolerance: float = 1e-5, num_restarts: int = 1,
            seed=0, init_params: HMMGLMParams | None = None, warmup_iters: int = 30,
            smoothing_bins: float = 20.0, progress=None,
            memory_limit_bytes: int = DEFAULT_FIT_MEMORY_LIMIT_BYTES) -> dict:
        """Generalized EM from the k-means initialization (or ``init_params``), best restart kept.

        ``init_params``: parameters to start from instead (``check_params``), optionally with
        a leading restart axis R (R restarts; ``num_restarts`` then 1 or R).
        ``tolerance``: stop when the objective gains less than this many nats per bin.
        The one-hot prior first runs up to ``warmup_iters`` iterations without a prior.
        Restarts are nested: restart r starts from the same parameters for any
        ``num_restarts`` > r (``init.restart_uniforms``), so more restarts never end lower.
        Returns a history dict: objective per iteration (best restart), all restarts,
        phase labels, number of iterations, whether it converged (EM stopped by the
        tolerance rule: every restart gained less than it in one iteration) and the wall time.
        ``memory_limit_bytes``: ValueError before anything large is allocated when
        ``estimate_fit_bytes`` exceeds it (fit fewer bins, neurons, states or restarts);
        within it, the packed outer products of the Newton Hessians are stored rather than
        rebuilt on every iteration where they fit (``packed_budget``).
        """
        ((fitted, history),) = self._fit_points(spikes, {}, num_iters, tolerance, num_restarts,
                                                seed, init_params, warmup_iters, smoothing_bins,
                                                progress, memory_limit_bytes)
        self.params, self.prior_state = fitted.params, fitted.prior_state
        return history

    def fit_sweep(self, spikes, values: dict, num_iters: int = 100, tolerance: float = 1e-5,
                  num_restarts: int = 1, seed=0, init_params: HMMGLMParams | None = None,
                  warmup_iters: int = 30, smoothing_bins: float = 20.0,
                  progress=None, memory_limit_bytes: int = DEFAULT_FIT_MEMORY_LIMIT_BYTES,
                  ) -> list[tuple[HMMGLM, dict]]:
        """Fit P sweep points of hyperparameters in ONE batched EM (P x num_restarts restarts).

        ``values`` maps names in ``hyperparameters.SWEEPABLE`` to P values each, e.g.
        ``{"stickiness": [0, 10, 100]}``, ``{"prior_sigma": [...], "stickiness": [...]}`` (Gaussian
        prior) or ``{"strength_floor": [...]}`` (one-hot prior)
        (point i takes the i-th value of every name). Every point starts from the same
        initialization, the one ``fit`` with these arguments starts from, and keeps its best
        restart. The points lie on the restart axis: on a GPU, where a batch costs far less
        than its size (``bench_hmmglm --set restart_batch=64`` measures it), this is the
        cheap way to sweep. Point i's result is ``fit`` of this model with point i's
        hyperparameters: each point stops on its own and leaves the batch, which shrinks
        to the points still running. Only the rounding of batched sums differs: ~1e-13
        relative in float64; in float32 a point near the tolerance may stop one iteration
        earlier or later than alone. Returns [(model_i, history_i)] in point order: model_i
        is a fitted copy of this model with point i's hyperparameters; history_i is
        ``fit``'s dict for that point ("seconds" is the whole batched fit's).
        ``memory_limit_bytes`` as in ``fit``, for all P x num_restarts restarts together.
        """
        return self._fit_points(spikes, values, num_iters, tolerance, num_restarts, seed,
                                init_params, warmup_iters, smoothing_bins, progress,
                                memory_limit_bytes)

    def _fit_points(self, spikes, values, num_iters, tolerance, num_restarts, seed, init_params,
                    warmup_iters, smoothing_bins, progress,
                    memory_limit_bytes=DEFAULT_FIT_MEMORY_LIMIT_BYTES) -> list[tuple[HMMGLM, dict]]:
        """EM over R = P x Q restarts (P sweep points of Q restarts each, point-major)."""
        _check_fit_arguments(num_iters=num_iters, num_restarts=num_restarts, tolerance=tolerance,
                             warmup_iters=warmup_iters, smoothing_bins=smoothing_bins,
                             progress=progress)
        memory_limit_bytes = check_int("memory_limit_bytes", memory_limit_bytes)
        points = sweep_points(values, self.settings.prior)
        sized = _count_bins(spikes)
        budget = PACKED_MAX_BYTES
        if sized is not None and sized[1] == self.num_neurons:
            bias = getattr(init_params, "bias", None)  # check_params names a bad init_params later
            per_point = bias.shape[0] if isinstance(bias, torch.Tensor) and bias.dim() == 3 else 1
            restarts = len(points) * max(per_point, int(num_restarts))
            sizes = (sized[0], self.num_neurons, self.basis.shape[0], self.num_states, restarts,
                     self.dtype)
            budget = packed_budget(*sizes, memory_limit_bytes)
            need = estimate_fit_bytes(*sizes, packed_max_bytes=budget)
            if need > memory_limit_bytes:
                raise ValueError(
                    f"fitting spikes of {sized[0]} bins x {self.num_neurons} neurons with "
                    f"{self.num_states} states, {self.basis.shape[0]} basis functions and {restarts} "
                    f"restarts (sweep points x num_restarts) needs about {need / 2**30:.2f} GiB, above "
                    f"memory_limit_bytes={memory_limit_bytes} ({memory_limit_bytes / 2**30:.2f} GiB); "
                    "fit fewer bins (e.g. a window), neurons, states or restarts, or raise "
                    "memory_limit_bytes")
        start = time.perf_counter()
        data = self._data(spikes)
        outer = PackedOuterProducts(data.design, max_bytes=budget)
        if init_params is None:
            params = kmeans_initialization(data, self.num_states, int(num_restarts),
                                           numpy_generator(seed), self.settings.link,
                                           smoothing_bins=smoothing_bins, outer=outer)
        else:
            check_params(init_params, self.num_states, self.num_neurons, self.basis.shape[0],
                         name="init_params", restart_axis=True)
            if init_params.bias.dim() == 3 and num_restarts not in (1, init_params.bias.shape[0]):
                raise ValueError(f"init_params has {init_params.bias.shape[0]} restarts (its leading "
                                 f"axis) but num_restarts={num_restarts}; give 1 or the same number")
            params = init_params.to(self.device, self.dtype)
            if params.bias.dim() == 2:
                params = HMMGLMParams(*(t.unsqueeze(0) for t in (params.log_initial,
                                      params.log_transition, params.bias, params.weights)))
        if self.settings.shared_bias:
            params = params.with_theta(params.theta().clone())
            params = HMMGLMParams(params.log_initial, params.log_transition,
                                  params.bias.mean(-2, keepdim=True).expand_as(params.bias).clone(),
                                  params.weights)
        num_points, per_point = len(points), params.bias.shape[0]
        params = params.select(torch.arange(per_point, device=self.device).repeat(num_points))

        def per_restart(name, default):  # (R,) values of a hyperparameter, point-major
            column = [point.get(name, default) for point in points]
            return torch.tensor(column, dtype=self.dtype, device=self.device).repeat_interleave(per_point)

        settings = self.settings
        # (R, 1, 1) broadcasts against (R, K, K) transitions, (R, 1, 1, 1) against (R, K, N, N) weights
        for name, shape in (("stickiness", (-1, 1, 1)), ("transition_concentration", (-1, 1, 1)),
                            ("strength_floor", (-1, 1, 1, 1))):
            if name in points[0]:
                settings = replace(settings, **{name: per_restart(name, None).view(shape)})
        phase_runs = []  # (phase, objectives (iters, P, Q), iterations of each point's own run)
        if settings.prior == "onehot" and warmup_iters > 0:
            warm = replace(settings, prior="none")
            params, _, warm_history, warm_stops, _ = run_em(
                data, params, None, warm, warmup_iters, tolerance, outer, progress, group_size=per_point)
            phase_runs.append(("warmup", torch.stack(warm_history).view(-1, num_points, per_point),
                               warm_stops))
        if settings.prior == "onehot":
            params, prior_state = initial_onehot_state(data, params, settings)
        else:
            prior_state = self._initial_prior_state(params, per_restart("prior_sigma", self.prior_sigma))
        params, prior_state, history, main_stops, main_settled = run_em(
            data, params, prior_state, settings, int(num_iters), tolerance, outer, progress,
            group_size=per_point)
        phase_runs.append((settings.prior, torch.stack(history).view(-1, num_points, per_point),
                           main_stops))
        seconds = time.perf_counter() - start
        results = []
        for i, point in enumerate(points):
            # point i's own run: its iterations of every phase, (iters, Q)
            objectives = torch.cat([run[:stops[i], i] for _, run, stops in phase_runs])
            phases = [phase for phase, _, stops in phase_runs for _ in range(stops[i])]
            main_iters = main_stops[i]
            best = int(objectives[-1].argmax())
            index = i * per_point + best
            fitted = _copy(self)
            fitted.settings = replace(self.settings, **{k: v for k, v in point.items() if k != "prior_sigma"})
            fitted.prior_sigma = point.get("prior_sigma", self.prior_sigma)
            fitted.params = params.select(index)
            fitted.prior_state = _select_prior(prior_state, index)
            results.append((fitted, {
                "objective": objectives[:, best].tolist(),
                "objective_all_restarts": objectives.cpu().numpy(),
                "phase": phases,
                "best_restart": best,
                "num_iters": main_iters - 1,
                "converged": main_settled[i],
                "seconds": seconds,
            }))
        return results

    # ------------------------------------------------------------------ inference
    def _emissions(self, data, params):
        return emission_log_likelihoods(data.design, data.counts, params.theta(),
                                        self.settings.link, self.settings.distribution)

    def posterior(self, spikes) -> Posterior:
        """Forward-backward over the (padded) batch of sequences: Posterior with B = #sequences."""
        params = self._require_params()
        data = self._data(spikes)
        padded = data.pad(self._emissions(data, params))  # (B, T_max, K)
        lengths = None if data.num_sequences == 1 else data.lengths
        return forward_backward(params.log_initial, params.log_transition, padded, lengths)

    def most_likely_states(self, spikes):
        """Viterbi path: (T,) int array, or a list of them for a list input."""
        params = self._require_params()
        data = self._data(spikes)
        padded = data.pad(self._emissions(data, params))
        lengths = None if data.num_sequences == 1 else data.lengths
        states, _ = viterbi(params.log_initial, params.log_transition, padded, lengths)
        paths = [states[b, :n].cpu().numpy() for b, n in enumerate(data.lengths.tolist())]
        return paths if isinstance(spikes, (list, tuple)) else paths[0]

    def log_likelihood(self, spikes) -> float:
        """log p(y) in nats, summed over sequences."""
        return float(self.posterior(spikes).log_normalizer.sum())

    def score(self, spikes) -> float:
        """Bits per spike over a homogeneous model of the same distribution with each
        neuron's mean rate: Poisson with rate r_n (Bernoulli with p_n for a Bernoulli model),
        (log p(y) - log p_0(y)) / (#spikes ln 2); 0 for a model no better than the mean rate.
        Data without a single spike has no bits per spike: a ValueError."""
        data = self._data(spikes)
        counts = data.counts
        if not bool((counts > 0).any()):
            raise ValueError("spikes holds no spike at all: bits per spike is undefined "
                             "(use log_likelihood for silent data)")
        rate = counts.mean(0)
        if self.settings.distribution == "bernoulli":
            baseline = (torch.xlogy(counts, rate) + torch.xlogy(1 - counts, 1 - rate)).sum()
        else:
            baseline = (torch.xlogy(counts, rate) - rate - torch.lgamma(counts + 1)).sum()
        total = counts.sum()
        return float((self.log_likelihood(spikes) - baseline) / (total * math.log(2.0)))

    # ------------------------------------------------------------------ sampling, relabelling
    def sample(self, num_timesteps: int, seed=0):
        """(spikes (T, N), states (T,), rates (T, N)) as numpy arrays. Raises
        ``simulate.RatesDiverged`` (a ValueError) when strongly excitatory coupling drives a
        rate to ``simulate.RATE_LIMIT`` per bin (the network excites itself without bound)."""
        num_timesteps = check_int("num_timesteps", num_timesteps)
        p = self._require_params().numpy()
        rng = numpy_generator(seed)
        states = sample_states(p["initial"], p["transition"], int(num_timesteps), rng)
        spikes, rates = sample_spikes(states, p["bias"], p["weights"], self.basis.cpu().numpy(),
                                      self.settings.link, self.settings.distribution, rng)
        return spikes, states, rates

    def permute(self, perm) -> HMMGLM:
        """A copy whose state i is this model's state perm[i]."""
        twin = _copy(self)
        twin.params = self._require_params().permute(perm)
        if isinstance(self.prior_state, OneHotPriorState):
            twin.prior_state = OneHotPriorState(self.prior_state.log_type_prior,
                                                self.prior_state.types[..., list(perm), :, :])
        return twin


def _check_fit_arguments(num_iters, num_restarts, tolerance, warmup_iters, smoothing_bins,
                         progress=None):
    """A TypeError / ValueError that names the first bad argument of fit / fit_sweep."""
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be None or a callable wrapping an iterable (e.g. "
                        f"tqdm.tqdm), got {progress!r}")
    check_int("num_iters", num_iters, 0)
    check_int("num_restarts", num_restarts, 1)
    check_int("warmup_iters", warmup_iters, 0)
    check_real("tolerance", tolerance, 0.0)
    check_real("smoothing_bins", smoothing_bins, 0.0, low_open=True)


def _copy(model: HMMGLM) -> HMMGLM:
    twin = HMMGLM.__new__(HMMGLM)
    twin.__dict__.update(model.__dict__)
    return twin


def _select_prior(state, index):
    if state is None:
        return None
    if isinstance(state, GaussianPriorState):
        return GaussianPriorState(state.mean[index], state.sigma[index])
    return OneHotPriorState(state.log_type_prior[index], state.types[index])
