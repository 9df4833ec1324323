"""HMM-GLM speed: our EM against dynamax with a Poisson-GLM emission, same data, same start.

Problem (a) of ``neuro.hmmglm.simulate`` (K=3, N=20, T=20,000, softplus link). Measured:
* ours, fit to convergence from the package's default (k-means) initialization, with the
  problem's own basis and link: wall time, EM iterations, state accuracy (Hungarian),
  coupling-filter correlation, final log-likelihood; medians over ``repeats``; the same for
  the default 3-exponential basis and for raw lags (5 coefficients per pair) for reference;
* ours ``em_iters`` and the peer ``peer_iters`` EM iterations from the SAME initial parameters (ours'
  k-means start): seconds per iteration, final log-likelihood (ours, in the model's default dtype: float64 on a CPU),
  state accuracy, weight correlation, and the ratios ours / peer (< 1: we are faster); where
  ``peer_iters`` differs, ours is also run ``peer_iters`` iterations (``ours_at_peer_iters_*``)
  and the ratios and the quality comparison use that run (same iterations on both sides);
* forward-backward alone at K=3, T=20,000: microseconds per time step, ours vs the peer's
  ``hmm_smoother`` (jitted; compile excluded);
* with ``restart_batch`` = R > 0: the k-means initialization and the EM iterations of one
  batched fit of R restarts against one restart (seconds, and R-vs-1 ratios per iteration),
  then whole fits to convergence of 1 restart, R restarts and R sweep points
  (``fit_sweep``), the claim "on a GPU, a batch of 64 restarts or sweep points fits in
  about the time of one".
Wall times and process CPU times are both reported: on a shared, loaded machine the CPU
time of a one-thread run is the better estimate of its idle wall time. Ours runs one torch
thread; jax uses what it likes (its CPU time counts all of them, so the CPU-time ratio is
the per-core comparison). The peer's EM is timed once (a 100-iteration fit takes minutes),
as the difference of a ``peer_iters`` and a 1-iteration call (each recompiles), so its
per-iteration time excludes the jit compile; ours is the median over ``repeats``. The
forward-backward comparison is ours in the model's dtype (float64 on a CPU) against the
peer's float32 (their outputs agree to ~4e-7).
The peer is dynamax (if it imports) with a Poisson-GLM emission written here
(softplus link, Adam M-step, dynamax's defaults of 50 steps at lr 1e-2 and Dirichlet
concentration 1.1 on initial and transition probabilities, float32: its default dtype; with
concentration 1.0 its log joint turns NaN within a few iterations once a probability hits 0). No peer ships this model; dynamax's built-in LinearRegressionHMM is not a Poisson GLM.
"""
from __future__ import annotations

import contextlib
import io
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from experiments._bench import synchronize
from experiments.store import RunDir
from neuro.hmmglm import (
    HMMGLM,
    default_basis,
    forward_backward,
    lag_basis,
    make_params,
    reference_problem,
)
from neuro.hmmglm.basis import design_matrix, filters_from_weights
from neuro.hmmglm.data import prepare
from neuro.hmmglm.init import kmeans_initialization


@dataclass(frozen=True)
class Config:
    num_timesteps: int = field(default=20000, metadata={"min": 200, "help": "bins of problem (a)"})
    repeats: int = field(default=3, metadata={"min": 1, "max": 20, "help": "repeats (medians)"})
    em_iters: int = field(default=100, metadata={"min": 1, "max": 1000, "help": "fixed EM iterations"})
    peer_iters: int = field(default=100, metadata={"min": 0, "max": 1000,
                                                   "help": "peer EM iterations (0: skip the peer)"})
    reference_bases: bool = field(default=True, metadata={"help": "also time default and raw-lag bases"})
    threads: int = field(default=1, metadata={"min": 1, "max": 64, "help": "torch threads"})
    restart_batch: int = field(default=0, metadata={
        "min": 0, "max": 1024, "help": "also time one fit of this many restarts vs one (0: skip)"})
    restart_dtypes: tuple[str, ...] = field(default=("float64", "float32"), metadata={
        "choices": ("float64", "float32"), "help": "model dtypes of the restart-batch timing"})


def _accuracy_and_corr(problem, gamma, weights, basis):
    k = gamma.shape[-1]
    overlap = np.zeros((k, k))
    np.add.at(overlap, (problem.states, gamma.argmax(-1)), 1)
    rows, cols = linear_sum_assignment(-overlap)
    accuracy = overlap[rows, cols].sum() / len(problem.states)
    fitted = filters_from_weights(np.asarray(weights)[cols], basis)
    true = filters_from_weights(problem.weights, problem.basis)
    return float(accuracy), float(np.corrcoef(fitted.ravel(), true.ravel())[0, 1])


def _fit_to_convergence(problem, basis, repeats, out, label):
    runs = []
    for _ in out.progress(range(repeats), desc=f"ours to convergence ({label})"):
        model = HMMGLM(3, problem.spikes.shape[1], basis=basis, link=problem.link, device=out.device)
        cpu_start = time.process_time()
        history = model.fit(problem.spikes, num_iters=100)
        cpu = time.process_time() - cpu_start
        gamma = model.posterior(problem.spikes).smoothed[0].cpu().numpy()
        accuracy, corr = _accuracy_and_corr(problem, gamma, model.params.weights.cpu().numpy(), basis)
        runs.append({"seconds": history["seconds"], "cpu_seconds": cpu, "iterations": history["num_iters"],
                     "state_accuracy": accuracy, "weight_correlation": corr,
                     "log_likelihood": model.log_likelihood(problem.spikes)})
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def _ours_fixed(problem, init, iters, repeats, out):
    runs = []
    for _ in out.progress(range(repeats), desc="ours fixed iterations"):
        model = HMMGLM(3, problem.spikes.shape[1], basis=problem.basis, link=problem.link, device=out.device)
        cpu_start = time.process_time()
        history = model.fit(problem.spikes, num_iters=iters, tolerance=0.0, init_params=init)
        cpu = time.process_time() - cpu_start
        gamma = model.posterior(problem.spikes).smoothed[0].cpu().numpy()
        accuracy, corr = _accuracy_and_corr(problem, gamma, model.params.weights.cpu().numpy(), problem.basis)
        runs.append({"seconds_per_iteration": history["seconds"] / max(history["num_iters"], 1),
                     "cpu_seconds_per_iteration": cpu / max(history["num_iters"], 1),
                     "log_likelihood": model.log_likelihood(problem.spikes),
                     "state_accuracy": accuracy, "weight_correlation": corr,
                     "iterations": history["num_iters"]})
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def _restart_batch(problem, restarts, iters, out, dtype=torch.float64):
    """One fit of ``restarts`` restarts batched vs one restart: the k-means initialization and
    up to ``iters`` EM iterations timed apart, both warm (kernels compiled by a first call,
    which is not timed: on an H100 it took ~1-3 s). The claim under test: on a GPU, a batch of 64
    restarts costs about the time of one. EM stops early (tolerance 0) once no restart gains,
    which happens at different iterations for 1 and R restarts, so the EM ratio is per
    iteration (seconds / iterations run, the final E-step included)."""
    data = prepare([torch.as_tensor(problem.spikes, device=out.device, dtype=dtype)],
                   torch.as_tensor(problem.basis, device=out.device, dtype=dtype))  # init in dtype
    metrics = {}
    for count, label in ((1, "one"), (restarts, "all")):
        init_seconds = []
        for _ in range(2):  # the first call compiles kernels for this batch size (Triton JIT)
            init_start = time.perf_counter()
            init = kmeans_initialization(data, 3, count, np.random.default_rng(0), problem.link)
            synchronize(out.device)
            init_seconds.append(time.perf_counter() - init_start)
        init_seconds = init_seconds[-1]
        model = HMMGLM(3, problem.spikes.shape[1], basis=problem.basis, link=problem.link,
                       device=out.device, dtype=dtype)
        model.fit(problem.spikes, num_iters=1, tolerance=0.0, init_params=init)  # warm-up
        runs = []
        for _ in range(2):
            history = model.fit(problem.spikes, num_iters=iters, tolerance=0.0, init_params=init)
            runs.append((history["seconds"] / max(history["num_iters"], 1), history["num_iters"],
                         history["seconds"]))
        per_iteration, num_iters, seconds = min(runs)
        metrics[f"restart_batch_{label}_em_seconds_per_iteration"] = per_iteration
        metrics[f"restart_batch_{label}_em_iterations"] = num_iters
        metrics[f"restart_batch_{label}_init_seconds"] = init_seconds
        out.log(f"{count} restart(s), {str(dtype).replace('torch.', '')}: k-means init "
                f"{init_seconds:.3f} s, {num_iters} EM iterations {seconds:.3f} s = {per_iteration * 1e3:.1f} ms each "
                f"(best objective {history['objective'][-1]:.2f})")
    metrics["restart_batch_em_time_ratio"] = (metrics["restart_batch_all_em_seconds_per_iteration"]
                                              / metrics["restart_batch_one_em_seconds_per_iteration"])
    metrics["restart_batch_init_time_ratio"] = (metrics["restart_batch_all_init_seconds"]
                                                / metrics["restart_batch_one_init_seconds"])
    metrics.update(_literal_fits(problem, restarts, out, dtype))
    return metrics


def _literal_fits(problem, restarts, out, dtype, repeats=3):
    """The claim as a user meets it: whole fits to convergence (default tolerance, at most
    100 iterations, from the k-means start, data preparation included) of one restart, of
    ``restarts`` restarts, and of a sweep of ``restarts`` stickiness points (``fit_sweep``,
    one restart each); warm (a first call compiles), median of ``repeats``. A batch runs
    until its slowest restart (or point) converges, so its EM iterations are reported too:
    the time ratio is at least about their ratio even where a batched iteration costs
    what one restart's does."""
    spikes = problem.spikes
    sweep = {"stickiness": np.linspace(0.0, 100.0, restarts).tolist()}
    calls = {"one": lambda model: model.fit(spikes),
             "all": lambda model: model.fit(spikes, num_restarts=restarts),
             "sweep": lambda model: model.fit_sweep(spikes, sweep)}
    seconds, iterations = {}, {}
    for label, call in calls.items():
        model = HMMGLM(3, spikes.shape[1], basis=problem.basis, link=problem.link,
                       device=out.device, dtype=dtype)
        result = call(model)
        histories = result if isinstance(result, list) else [(model, result)]
        iterations[label] = max(history["num_iters"] for _, history in histories)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call(model)
            synchronize(out.device)
            times.append(time.perf_counter() - start)
        seconds[label] = statistics.median(times)
    out.log(f"fits to convergence, {str(dtype).replace('torch.', '')}: 1 restart {seconds['one']:.3f} s "
            f"({iterations['one']} EM iterations), {restarts} restarts {seconds['all']:.3f} s "
            f"({iterations['all']}), {restarts} sweep points {seconds['sweep']:.3f} s "
            f"(the slowest point: {iterations['sweep']})")
    return {"restart_batch_one_fit_seconds": seconds["one"],
            "restart_batch_all_fit_seconds": seconds["all"],
            "sweep_batch_all_fit_seconds": seconds["sweep"],
            "restart_batch_one_fit_iterations": iterations["one"],
            "restart_batch_all_fit_iterations": iterations["all"],
            "sweep_batch_all_fit_iterations": iterations["sweep"],
            "restart_batch_fit_time_ratio": seconds["all"] / seconds["one"],
            "sweep_batch_fit_time_ratio": seconds["sweep"] / seconds["one"]}


def _fb_time(log_pi, log_a, log_lik, repeats):
    """Median (wall, CPU) microseconds per time step of one forward-backward pass on the
    inputs' device (synchronized there)."""
    times, cpus = [], []
    for _ in range(repeats + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        forward_backward(log_pi, log_a, log_lik)
        synchronize(log_lik.device)
        times.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
    steps = log_lik.shape[-2]
    return statistics.median(times[1:]) / steps * 1e6, statistics.median(cpus[1:]) / steps * 1e6


def run(config: Config, out: RunDir) -> dict[str, float]:
    torch.set_num_threads(config.threads)
    problem = reference_problem(config.num_timesteps, seed=out.seed)
    n = problem.spikes.shape[1]
    truth = HMMGLM(3, n, basis=problem.basis, link=problem.link, device=out.device)
    truth.set_params(make_params(problem.initial, problem.transition, problem.bias, problem.weights))
    oracle = truth.posterior(problem.spikes).smoothed[0].cpu().numpy().argmax(-1)
    metrics = {"oracle_state_accuracy": float((oracle == problem.states).mean()),
               "true_log_likelihood": truth.log_likelihood(problem.spikes),
               "mean_rate_spikes_per_bin": float(problem.spikes.mean())}
    rows = []
    bases = [("problem basis (1 exp, matched)", problem.basis)]
    if config.reference_bases:
        bases += [("default basis (3 exp)", default_basis()), ("raw lags (5)", lag_basis(5))]
    for index, (label, basis) in enumerate(bases):
        summary = _fit_to_convergence(problem, basis, config.repeats if index == 0 else 1, out, label)
        rows.append({"implementation": "neurobridge", "run": f"to convergence, {label}", **summary})
        prefix = "ours_converged" if index == 0 else f"ours_converged_{['', 'default_basis', 'raw_lags'][index]}"
        for key, value in summary.items():
            metrics[f"{prefix}_{key}"] = value
        out.log(f"to convergence, {label}: " + ", ".join(f"{k}={v:.4g}" for k, v in summary.items()))

    # the common start: our k-means initialization
    data = prepare([torch.as_tensor(problem.spikes, device=out.device)],
                   torch.as_tensor(problem.basis, device=out.device))
    init = kmeans_initialization(data, 3, 1, np.random.default_rng(0), problem.link).select(0)
    ours = _ours_fixed(problem, init, config.em_iters, config.repeats, out)
    rows.append({"implementation": "neurobridge", "run": f"{config.em_iters} EM iterations", **ours})
    for key, value in ours.items():
        metrics[f"ours_{key}"] = value

    # on the run's device in the model's dtype (float64 on a CPU, the GPU default float32)
    log_lik = torch.as_tensor(np.random.default_rng(1).normal(0, 3, (1, config.num_timesteps, 3)))
    on_device = {"device": out.device, "dtype": truth.dtype}
    log_pi = torch.log(torch.full((3,), 1 / 3, **on_device))
    log_a = torch.log(torch.as_tensor(problem.transition).to(**on_device))
    (metrics["ours_forward_backward_us_per_step"],
     metrics["ours_forward_backward_cpu_us_per_step"]) = _fb_time(
        log_pi, log_a, log_lik.to(**on_device), max(config.repeats, 5))

    if config.restart_batch:
        metrics["restart_batch_size"] = config.restart_batch
        for name in config.restart_dtypes:  # float64 keys unprefixed, others prefixed
            batch = _restart_batch(problem, config.restart_batch, config.em_iters, out,
                                   getattr(torch, name))
            prefix = "" if name == "float64" else f"{name}_"
            metrics.update({f"{prefix}{key}": value for key, value in batch.items()})
    peer = _peer(problem, init, config, log_lik[0].numpy(), out) if config.peer_iters else None
    if peer is None:
        metrics["peer_available"] = False
    else:
        metrics["peer_available"] = True
        # ours at the peer's iteration count, same start: per-iteration times (a fit's fixed
        # cost spreads over its iterations) and quality compared at the same stopping point
        matched = ours if config.peer_iters == config.em_iters else _ours_fixed(
            problem, init, config.peer_iters, config.repeats, out)
        if matched is not ours:
            rows.append({"implementation": "neurobridge", "run": f"{config.peer_iters} EM iterations",
                         **matched})
        for key, value in matched.items():
            metrics[f"ours_at_peer_iters_{key}"] = value
        rows.append({"implementation": peer.pop("name"), "run": f"{config.peer_iters} EM iterations",
                     **{k: v for k, v in peer.items() if not k.startswith("forward_backward")}})
        for key, value in peer.items():
            metrics[f"peer_{key}"] = value
        metrics["em_iteration_time_ratio"] = matched["seconds_per_iteration"] / peer["seconds_per_iteration"]
        metrics["em_iteration_cpu_time_ratio"] = (matched["cpu_seconds_per_iteration"]
                                                  / peer["cpu_seconds_per_iteration"])
        metrics["forward_backward_time_ratio"] = (metrics["ours_forward_backward_us_per_step"]
                                                  / peer["forward_backward_us_per_step"])
        metrics["converged_fit_vs_peer_em_time_ratio"] = (
            metrics["ours_converged_seconds"] / (peer["seconds_per_iteration"] * config.peer_iters))
    out.save_table("hmmglm_benchmark", rows, caption=(
        f"Problem (a): K=3, N={n}, T={config.num_timesteps}, softplus link; ours ({str(truth.dtype)[6:]}: "
        "the model's default on this device) and the "
        "peer from the same k-means start; medians over repeats."))
    _figure(out, metrics, rows)
    return metrics


def _figure(out, metrics, rows):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    labels = [r["implementation"] + "\n" + r["run"] for r in rows if "seconds_per_iteration" in r]
    values = [r["seconds_per_iteration"] for r in rows if "seconds_per_iteration" in r]
    ax.barh(range(len(values)), values)
    ax.set_yticks(range(len(values)), labels, fontsize=6)
    ax.set_xscale("log"), ax.set_xlabel("seconds per EM iteration")
    out.save_figure(fig, "em_iteration_time", caption="Seconds per EM iteration (log scale).")


def _peer(problem, init, config, fb_log_lik, out):
    """dynamax with a user-written Poisson-GLM emission; None when dynamax does not import."""
    try:
        import dynamax
        import jax
        import jax.numpy as jnp
        from dynamax.hidden_markov_model import hmm_smoother
    except ImportError as error:
        out.log(f"peer unavailable: {error}")
        return None
    model_class = _dynamax_poisson_glm_hmm()
    spikes = problem.spikes
    features = design_matrix(torch.as_tensor(spikes), torch.as_tensor(problem.basis))[:, 1:].numpy()
    k, n = 3, spikes.shape[1]
    model = model_class(k, n, features.shape[1])
    start = init.numpy()
    params, props = model.initialize(
        initial_probs=jnp.asarray(start["initial"], jnp.float32),
        transition_matrix=jnp.asarray(start["transition"], jnp.float32),
        weights=jnp.asarray(start["weights"].reshape(k, n, -1), jnp.float32),
        biases=jnp.asarray(start["bias"], jnp.float32))
    emissions = jnp.asarray(spikes, jnp.float32)
    inputs = jnp.asarray(features, jnp.float32)
    sink = io.StringIO()
    # fit_em jit-compiles a new closure on every call (~0.7 s at T = 20k, again in the
    # timed call): a 1-iteration call measures that fixed cost plus one iteration, and the
    # per-iteration cost is the difference of the two calls over peer_iters - 1 iterations
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        one_start, one_cpu_start = time.perf_counter(), time.process_time()
        warm, _ = model.fit_em(params, props, emissions, inputs, num_iters=1, verbose=True)
        jax.block_until_ready(warm)
        one_seconds, one_cpu = time.perf_counter() - one_start, time.process_time() - one_cpu_start
        fit_start, cpu_start = time.perf_counter(), time.process_time()
        fitted, log_probs = model.fit_em(params, props, emissions, inputs,
                                         num_iters=config.peer_iters, verbose=True, print_every=1)
        jax.block_until_ready(fitted)
        seconds = time.perf_counter() - fit_start
        cpu = time.process_time() - cpu_start
    per_iteration, cpu_per_iteration = seconds / config.peer_iters, cpu / config.peer_iters  # upper bounds
    if config.peer_iters > 1 and seconds > one_seconds and cpu > one_cpu:
        per_iteration = (seconds - one_seconds) / (config.peer_iters - 1)
        cpu_per_iteration = (cpu - one_cpu) / (config.peer_iters - 1)
    else:  # too few iterations to separate the fixed cost from timing noise
        out.log(f"peer: {config.peer_iters} iteration(s) cannot be separated from the per-call "
                "compile; seconds per iteration is an upper bound")
    # score the peer's parameters with our exact float64 likelihood
    log_probs = np.asarray(log_probs, dtype=np.float64)
    finite = np.isfinite(log_probs)
    first_nan = int(np.argmin(finite)) if not finite.all() else -1
    weights = np.asarray(fitted.emissions.weights, dtype=np.float64).reshape(k, n, n, -1)
    leaves = [np.asarray(x) for x in (fitted.initial.probs, fitted.transitions.transition_matrix,
                                     fitted.emissions.biases, fitted.emissions.weights)]
    if all(np.isfinite(x).all() for x in leaves):
        scored = HMMGLM(k, n, basis=problem.basis, link=problem.link).set_params(make_params(
            np.asarray(fitted.initial.probs, np.float64) / np.asarray(fitted.initial.probs).sum(),
            _rows(np.asarray(fitted.transitions.transition_matrix, np.float64)),
            np.asarray(fitted.emissions.biases, np.float64), weights))
        gamma = scored.posterior(spikes).smoothed[0].numpy()
        accuracy, corr = _accuracy_and_corr(problem, gamma, weights, problem.basis)
        log_likelihood = scored.log_likelihood(spikes)
    else:
        out.log(f"peer parameters are not finite after {config.peer_iters} iterations "
                f"(first non-finite log joint at iteration {first_nan})")
        accuracy = corr = log_likelihood = float("nan")

    smoother = jax.jit(hmm_smoother)
    pi = jnp.full((3,), 1 / 3, jnp.float32)
    trans = jnp.asarray(problem.transition, jnp.float32)
    lik = jnp.asarray(fb_log_lik, jnp.float32)
    jax.block_until_ready(smoother(pi, trans, lik))
    times, cpus = [], []
    for _ in range(max(config.repeats, 5)):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(smoother(pi, trans, lik))
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {
        "name": f"dynamax {dynamax.__version__} (jax {jax.__version__}, float32, Adam M-step)",
        "seconds_per_iteration": per_iteration,
        "cpu_seconds_per_iteration": cpu_per_iteration,
        "fixed_seconds_per_call": max(one_seconds - per_iteration, 0.0),  # jit compile and set-up
        "log_likelihood": log_likelihood,
        "log_joint_reported": float(log_probs[-1]),
        "finite": bool(np.isfinite(log_likelihood)),
        "first_nonfinite_iteration": first_nan,
        "state_accuracy": accuracy, "weight_correlation": corr,
        "forward_backward_us_per_step": statistics.median(times) / lik.shape[0] * 1e6,
        "forward_backward_cpu_us_per_step": statistics.median(cpus) / lik.shape[0] * 1e6,
    }


def _rows(matrix):
    matrix = np.clip(matrix, 0.0, None)
    return matrix / matrix.sum(-1, keepdims=True)


def _dynamax_poisson_glm_hmm():
    """A dynamax HMM whose state-k emission is prod_n Poisson(softplus(W_k[n] u_t + b_k[n]))."""
    from typing import NamedTuple

    import jax
    import jax.numpy as jnp
    import optax
    import tensorflow_probability.substrates.jax.distributions as tfd
    from dynamax.hidden_markov_model.models.abstractions import HMM, HMMEmissions
    from dynamax.hidden_markov_model.models.initial import StandardHMMInitialState
    from dynamax.hidden_markov_model.models.transitions import StandardHMMTransitions
    from dynamax.parameters import ParameterProperties

    class EmissionParams(NamedTuple):
        weights: jax.Array  # (K, N, M)
        biases: jax.Array  # (K, N)

    class ModelParams(NamedTuple):
        initial: object
        transitions: object
        emissions: object

    class PoissonGLMEmissions(HMMEmissions):
        def __init__(self, num_states, num_neurons, input_dim):
            super().__init__(m_step_optimizer=optax.adam(1e-2), m_step_num_iters=50)
            self.num_states, self.num_neurons, self.input_dim = num_states, num_neurons, input_dim

        @property
        def emission_shape(self):
            return (self.num_neurons,)

        @property
        def inputs_shape(self):
            return (self.input_dim,)

        def initialize(self, key=None, method="prior", weights=None, biases=None):
            return (EmissionParams(weights, biases),
                    EmissionParams(ParameterProperties(), ParameterProperties()))

        def log_prior(self, params):
            return 0.0

        def distribution(self, params, state, inputs):
            eta = params.weights[state] @ inputs + params.biases[state]
            # log softplus(eta), stable where softplus underflows in float32 (eta < -87)
            log_rate = jnp.where(eta < -20.0, eta, jnp.log(jax.nn.softplus(jnp.maximum(eta, -20.0))))
            return tfd.Independent(tfd.Poisson(log_rate=log_rate), reinterpreted_batch_ndims=1)

    class PoissonGLMHMM(HMM):
        def __init__(self, num_states, num_neurons, input_dim):
            super().__init__(num_states,
                             StandardHMMInitialState(num_states, initial_probs_concentration=1.1),
                             StandardHMMTransitions(num_states, concentration=1.1),
                             PoissonGLMEmissions(num_states, num_neurons, input_dim))

        @property
        def inputs_shape(self):
            return self.emission_component.inputs_shape

        def initialize(self, initial_probs, transition_matrix, weights, biases):
            key = jax.random.PRNGKey(0)
            init, init_props = self.initial_component.initialize(key, initial_probs=initial_probs)
            trans, trans_props = self.transition_component.initialize(key, transition_matrix=transition_matrix)
            emis, emis_props = self.emission_component.initialize(weights=weights, biases=biases)
            return ModelParams(init, trans, emis), ModelParams(init_props, trans_props, emis_props)

    return PoissonGLMHMM
