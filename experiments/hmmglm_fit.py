"""One HMM-GLM fit on a simulated problem, scored against the truth; batch-capable.

Problem (b) ("paper", K=5) or (a) ("reference", K=3) of ``neuro.hmmglm.simulate`` is drawn
from the run's seed, ``num_timesteps`` bins to fit and ``test_length`` held-out bins
sampled from the true model. The model (the problem's basis and link, ``prior``,
``prior_sigma``, ``stickiness``, ``transition_concentration``, ``strength_floor``) is fitted from the default
k-means start and scored: held-out bits/spike (and the gap to the true parameters'),
state accuracy after Hungarian matching (on the training bins), coupling-weight correlation, connection-type
accuracy off the diagonal, training log-likelihood, EM iterations and convergence.

This is the HMM-GLM's sweep over hyperparameters: ``run_batch`` fits all points of one
seed in ONE batched EM (``HMMGLM.fit_sweep``: the sweep points lie on the restart axis,
each stops on its own and leaves the batch); ``bench_hmmglm --set restart_batch=64`` times
such a batch against one fit::

    neuro sweep hmmglm_fit --grid prior_sigma=0.05,0.1,0.2,0.5,1,2 --grid stickiness=0,20,200 \\
        --batch 18 --device cuda

A point's metrics equal those of ``run`` for the same config and seed (to the rounding of
batched sums; tested).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from experiments.store import RunDir
from neuro.hmmglm.hyperparameters import SWEEPABLE, sweepable


@dataclass(frozen=True)
class Config:
    problem: str = field(default="paper", metadata={
        "choices": ("paper", "reference"), "help": "simulated problem (b) paper or (a) reference"})
    num_timesteps: int = field(default=5000, metadata={"min": 50, "help": "training bins"})
    test_length: int = field(default=5000, metadata={"min": 50, "help": "held-out bins"})
    prior: str = field(default="gaussian", metadata={
        "choices": ("none", "gaussian", "onehot"), "help": "prior on the coupling weights"})
    prior_sigma: float = field(default=0.5, metadata={"min": 1e-6, "help": "Gaussian prior std"})
    stickiness: float = field(default=0.0, metadata={"min": 0.0, "help": "extra Dirichlet "
                                                     "pseudo-counts on staying in a state"})
    transition_concentration: float = field(default=1.0, metadata={
        "min": 1.0, "help": "Dirichlet concentration of the transition rows"})
    strength_floor: float = field(default=0.1, metadata={
        "min": 0.0, "help": "one-hot prior: least |weight| of a connection"})
    num_restarts: int = field(default=1, metadata={"min": 1, "max": 256, "help": "restarts"})
    num_iters: int = field(default=100, metadata={"min": 1, "max": 1000, "help": "max EM iterations"})
    tolerance: float = field(default=1e-5, metadata={"min": 0.0, "help": "EM stop, nats per bin"})
    threads: int = field(default=1, metadata={"min": 1, "max": 64, "help": "torch threads"})


def batch_key(config: Config) -> tuple:
    """Points that differ only in the swept hyperparameters share one batched fit."""
    return tuple(value for name, value in dataclasses.asdict(config).items() if name not in SWEEPABLE)


def _problem(config: Config, seed: int):
    from neuro.hmmglm import HMMGLM, make_params, paper_problem, reference_problem

    data_seed, test_seed, fit_seed = (int(s.generate_state(1)[0]) for s in
                                      np.random.SeedSequence(seed).spawn(3))
    draw = paper_problem if config.problem == "paper" else reference_problem
    problem = draw(config.num_timesteps, seed=data_seed)
    k, n = problem.weights.shape[0], problem.weights.shape[1]
    truth = HMMGLM(k, n, basis=problem.basis, link=problem.link)
    truth.set_params(make_params(problem.initial, problem.transition, problem.bias, problem.weights))
    held_out, _, _ = truth.sample(config.test_length, seed=test_seed)
    return problem, truth, held_out, fit_seed


def _metrics(problem, truth, held_out, model, history) -> dict[str, float]:
    from scipy.optimize import linear_sum_assignment

    k = model.num_states
    inferred = model.posterior(problem.spikes).smoothed[0].argmax(-1).cpu().numpy()
    overlap = np.zeros((k, k))
    np.add.at(overlap, (problem.states, inferred), 1)
    rows, cols = linear_sum_assignment(-overlap)
    matched = model.permute(cols)
    weights = matched.params.weights[..., 0].cpu().numpy()
    true_weights = problem.weights[..., 0]
    if matched.settings.prior == "onehot":
        types = matched.prior_state.types.cpu().numpy()
    else:
        types = np.where(np.abs(weights) < matched.settings.strength_floor, 0, np.sign(weights))
    off = ~np.eye(model.num_neurons, dtype=bool)
    held_out_bps = model.score(held_out)
    return {
        "heldout_bits_per_spike": held_out_bps,
        "gap_to_truth_bits_per_spike": truth.score(held_out) - held_out_bps,
        "state_accuracy": float(overlap[rows, cols].sum() / len(problem.states)),
        "weight_correlation": float(np.corrcoef(weights.ravel(), true_weights.ravel())[0, 1]),
        "type_accuracy_off_diagonal": float((types == np.sign(true_weights))[:, off].mean()),
        "train_log_likelihood": model.log_likelihood(problem.spikes),
        "em_iterations": history["num_iters"],
        "converged": float(history["converged"]),
    }


def run_batch(configs: list[Config], outs: list[RunDir]) -> list[dict[str, float]]:
    """Fit every point; points of one seed go through one ``fit_sweep`` (one batched EM)."""
    import torch

    from neuro.hmmglm import HMMGLM

    if len({batch_key(c) for c in configs}) != 1:
        raise ValueError("run_batch got configs that differ beyond the swept hyperparameters "
                         f"{SWEEPABLE}; group points by batch_key first")
    first = configs[0]
    torch.set_num_threads(first.threads)
    results: list[dict | None] = [None] * len(configs)
    by_seed: dict[int, list[int]] = {}
    for index, out in enumerate(outs):
        by_seed.setdefault(out.seed, []).append(index)
    for seed, members in by_seed.items():
        problem, truth, held_out, fit_seed = _problem(first, seed)
        model = HMMGLM(truth.num_states, truth.num_neurons, basis=problem.basis,
                       link=problem.link, prior=first.prior, device=outs[members[0]].device)
        values = {name: [getattr(configs[i], name) for i in members] for name in sweepable(first.prior)}
        fits = model.fit_sweep(problem.spikes, values, num_iters=first.num_iters,
                               tolerance=first.tolerance, num_restarts=first.num_restarts,
                               seed=fit_seed)
        for index, (fitted, history) in zip(members, fits):
            out = outs[index]
            metrics = _metrics(problem, truth, held_out, fitted, history)
            out.save_arrays("fit", weights=fitted.params.weights.cpu().numpy(),
                            true_weights=problem.weights,
                            objective=np.asarray(history["objective"]))
            out.log(", ".join(f"{key}={value:.4g}" for key, value in metrics.items()))
            results[index] = metrics
    return results


def run(config: Config, out: RunDir) -> dict[str, float]:
    return run_batch([config], [out])[0]
