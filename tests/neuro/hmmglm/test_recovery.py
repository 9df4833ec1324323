"""Recovery at the issue's full sizes (T = 20,000 bins) on problems (a) and (b).

Problem (a): K=3, N=20, fitted with its own basis and link (best of 3 restarts, <= 100
EM iterations). Problem (b): the one-hot paper's simulation, K=5, N=20.
"""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from neuro.hmmglm import HMMGLM, make_params, paper_problem, reference_problem
from neuro.hmmglm.basis import filters_from_weights


def match_states(true_states, inferred, k):
    overlap = np.zeros((k, k))
    np.add.at(overlap, (true_states, inferred), 1)
    rows, cols = linear_sum_assignment(-overlap)
    return overlap[rows, cols].sum() / len(true_states), cols  # model state cols[i] <-> true i


def truth_model(problem, **kwargs):
    k, n = problem.bias.shape
    model = HMMGLM(k, n, basis=problem.basis, link=problem.link, **kwargs)
    return model.set_params(make_params(problem.initial, problem.transition, problem.bias, problem.weights))


@pytest.mark.slow
def test_reference_problem_recovery():
    torch.set_num_threads(1)
    problem = reference_problem(num_timesteps=20_000, seed=0)
    assert 0.15 < problem.spikes.mean() < 0.22  # ~0.18 spikes per bin, as specified
    model = HMMGLM(3, 20, basis=problem.basis, link=problem.link)
    history = model.fit(problem.spikes, num_iters=100, num_restarts=3, seed=0)
    assert history["num_iters"] <= 100
    gamma = model.posterior(problem.spikes).smoothed[0].numpy()
    accuracy, perm = match_states(problem.states, gamma.argmax(-1), 3)
    oracle = truth_model(problem).posterior(problem.spikes).smoothed[0].numpy().argmax(-1)
    assert accuracy >= 0.95, accuracy
    assert accuracy >= (oracle == problem.states).mean() - 0.02
    fitted = filters_from_weights(model.permute(perm).params.weights, model.basis.numpy())
    true = filters_from_weights(problem.weights, problem.basis)
    assert np.corrcoef(fitted.ravel(), true.ravel())[0, 1] >= 0.9


@pytest.mark.slow
def test_paper_problem_onehot_recovers_types_and_skeleton():
    torch.set_num_threads(1)
    problem = paper_problem(num_timesteps=20_000, seed=0)
    truth = truth_model(problem)
    held_out, _, _ = truth.sample(10_000, seed=123)
    model = HMMGLM(5, 20, basis=problem.basis, link=problem.link, prior="onehot")
    model.fit(problem.spikes, num_iters=100, seed=0)
    gamma = model.posterior(problem.spikes).smoothed[0].numpy()
    accuracy, perm = match_states(problem.states, gamma.argmax(-1), 5)
    fitted = model.permute(perm)
    off = ~np.eye(20, dtype=bool)
    true_types = np.sign(problem.weights[..., 0]).astype(int)
    types = fitted.prior_state.types.numpy()
    assert (types == true_types)[:, off].mean() >= 0.9
    # learned prior vs the skeleton, against the best any fit could do from 5 states:
    # the majority vote of the true per-state types
    learned = fitted.prior_state.log_type_prior.numpy().argmax(-1) - 1
    majority = np.stack([(true_types == v).sum(0) for v in (-1, 0, 1)], -1).argmax(-1) - 1
    ceiling = (majority == problem.skeleton)[off].mean()
    agreement = (learned == problem.skeleton)[off].mean()
    assert agreement >= 0.85 and agreement >= ceiling - 0.03, (agreement, ceiling)
    # identifiability guard: a connection is either 'none' (exactly 0) or above the floor,
    # and truly absent connections are mostly 'none'
    weights = fitted.params.weights[..., 0].numpy()
    assert np.all((types == 0) == (weights == 0))
    assert np.all(np.abs(weights[types != 0]) >= fitted.settings.strength_floor - 1e-12)
    false_positive = ((types != 0) & (true_types == 0))[:, off].sum() / (true_types == 0)[:, off].sum()
    assert false_positive < 0.05, false_positive
    # held-out fit within 0.05 bits/spike of the true parameters'
    assert truth.score(held_out) - fitted.score(held_out) < 0.05
    assert accuracy >= 0.85
