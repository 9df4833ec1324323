"""Generalized EM for HMM-GLMs, batched over restarts (leading axis R).

Objective (maximized, never decreases beyond float rounding; reported per iteration):
    L(params) = log p(y | params) + log p(W | prior) + sum_i (alpha_ij - 1) log A_ij
E-step: forward-backward on every (restart, sequence). M-step: closed-form initial and
transition probabilities (Dirichlet pseudo-counts ``transition_concentration - 1`` plus
``stickiness`` on the diagonal), then ``newton_steps`` batched Newton steps for the GLMs
(each an ascent step on the expected complete-data objective), then the prior's
hyperparameters in closed form. Stops when every restart gains less than
``tolerance`` nats per bin in one iteration; in a sweep (``HMMGLM.fit_sweep``) each group
of restarts that belongs to one hyperparameter point stops on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from kernels.dispatch import use_triton
from kernels.glm_terms import glm_terms
from neuro.hmmglm.data import PreparedData
from neuro.hmmglm.glm import batched_terms, emission_log_likelihoods, linear_predictor
from neuro.hmmglm.inference import forward_backward
from neuro.hmmglm.newton import PackedOuterProducts, newton_step, objective, shared_bias_step
from neuro.hmmglm.params import HMMGLMParams
from neuro.hmmglm.priors import (
    OneHotPriorState,
    candidate_types,
    type_bounds,
    update_type_prior,
)


@dataclass(frozen=True)
class EMSettings:
    """EM hyperparameters; ``transition_concentration`` and ``stickiness`` are floats, or
    (R, 1, 1) tensors of one value per restart (``HMMGLM.fit_sweep``); ``strength_floor`` a
    float or an (R, 1, 1, 1) tensor."""
    link: str = "softplus"
    distribution: str = "poisson"
    prior: str = "none"
    shared_bias: bool = False
    transition_concentration: float | torch.Tensor = 1.0
    stickiness: float | torch.Tensor = 0.0
    newton_steps: int = 1
    ridge: float = 1e-6
    learn_prior_mean: bool = True
    learn_prior_sigma: bool = False
    sigma_floor: float = 0.05
    strength_floor: float = 0.1
    type_concentration: tuple = (1.2, 3.0, 1.2)
    type_init_z: float = 3.0


@dataclass(frozen=True)
class EStep:
    log_normalizer: torch.Tensor  # (R,)
    resp: torch.Tensor  # (T_total, R, K)
    expected_transitions: torch.Tensor  # (R, K, K)
    initial_posterior: torch.Tensor  # (R, B, K)
    smoothed: torch.Tensor  # (R, B, T_max, K)
    eta: torch.Tensor  # (T_total, R, K, N) linear predictors at the E-step's parameters
    terms: torch.Tensor | None  # (T_total, R, K, N) their log-likelihoods (no constant); None on CUDA


def e_step(data: PreparedData, params: HMMGLMParams, settings: EMSettings, cache=None) -> EStep:
    """Posteriors of every (restart, sequence); ``cache`` = (eta, terms or None) at params.

    On CUDA the emissions come from the one-pass ``kernels.glm_terms`` (its per-bin sums
    over neurons; the cache's terms, when given, ARE those sums (T, R, K), computed by the
    Newton step's line search) and the returned ``terms`` is None; elsewhere from the
    torch ``batched_terms`` (cache terms (T, R, K, N)).
    """
    theta = params.theta()
    r, k = theta.shape[0], theta.shape[1]
    eta, terms = (linear_predictor(data.design, theta), None) if cache is None else cache
    num_bins = eta.shape[0]
    if use_triton(eta, data.counts):
        reuse = terms is not None and terms.dim() == 3  # the line search's (T, R, K) sums
        loglik = terms if reuse else glm_terms(
            eta.reshape(num_bins, r * k, -1), data.counts, None, settings.link,
            per_bin=True).per_bin.reshape(num_bins, r, k)
        terms = None
        if settings.distribution == "poisson":
            loglik = loglik + data.log_count_factorial.reshape(-1, 1, 1)
    else:
        if terms is None:
            terms = batched_terms(eta, data.counts, settings.link, derivatives=False,
                                  spikes=data.spikes)
        loglik = emission_log_likelihoods(data.design, data.counts, theta, settings.link,
                                          settings.distribution, terms=terms,
                                          constant=data.log_count_factorial)  # (T, R, K)
    padded = data.pad(loglik)  # (R, B, T_max, K)
    b, t_max = padded.shape[1], padded.shape[2]
    lengths = None if b == 1 else data.lengths.repeat(r)
    log_pi = params.log_initial.unsqueeze(1).expand(r, b, k).reshape(r * b, k)
    log_a = params.log_transition.unsqueeze(1).expand(r, b, k, k).reshape(r * b, k, k)
    post = forward_backward(log_pi, log_a, padded.reshape(r * b, t_max, k), lengths)
    smoothed = post.smoothed.reshape(r, b, t_max, k)
    return EStep(
        log_normalizer=post.log_normalizer.reshape(r, b).sum(1),
        resp=data.unpad(smoothed),
        expected_transitions=post.expected_transitions.reshape(r, b, k, k).sum(1),
        initial_posterior=smoothed[:, :, 0],
        smoothed=smoothed,
        eta=eta,
        terms=terms,
    )


def _pseudo_counts(settings: EMSettings, k: int, like: torch.Tensor) -> torch.Tensor:
    """Dirichlet pseudo-counts of the transition rows: (K, K), or (R, K, K) in a sweep, where
    ``transition_concentration`` and ``stickiness`` may be (R, 1, 1) tensors (one per restart)."""
    eye = torch.eye(k, dtype=like.dtype, device=like.device)
    return (settings.transition_concentration - 1.0) + settings.stickiness * eye


def log_prior(params, prior_state, settings: EMSettings) -> torch.Tensor:
    """Log prior of the transition rows and the weights, per restart (R,)."""
    k = params.num_states
    pseudo = _pseudo_counts(settings, k, params.bias)
    value = torch.where(pseudo != 0, pseudo * params.log_transition, 0.0).sum((-1, -2))
    if settings.prior == "gaussian":
        flat = params.weights.reshape(*params.weights.shape[:3], -1)
        value = value + prior_state.log_prior(flat)
    elif settings.prior == "onehot":
        alpha = torch.tensor(settings.type_concentration, dtype=params.bias.dtype, device=params.bias.device)
        value = value + prior_state.log_prior(alpha)
    return value


def markov_m_step(estep: EStep, params: HMMGLMParams, settings: EMSettings):
    k = params.num_states
    first = estep.initial_posterior.mean(1)
    log_initial = torch.log(first / first.sum(-1, keepdim=True))
    counts = estep.expected_transitions + _pseudo_counts(settings, k, first)
    counts = counts.clamp_min(0.0)
    rows = counts.sum(-1, keepdim=True)
    log_transition = torch.where(rows > 1e-12, torch.log(counts / rows.clamp_min(1e-300)),
                                 params.log_transition)
    return log_initial, log_transition


def _gradient_and_curvature(data, resp, theta, link):
    """Per-coordinate gradient and curvature (Hessian diagonal) of every problem's F."""
    eta = linear_predictor(data.design, theta)
    _, grad_eta, curv_eta = batched_terms(eta, data.counts, link, need_loglik=False, spikes=data.spikes)
    weight = resp.unsqueeze(-1)
    t = data.design.shape[0]
    grad = (data.design.T @ (weight * grad_eta).reshape(t, -1)).T.reshape(theta.shape)
    curv = ((data.design**2).T @ (weight * curv_eta).reshape(t, -1)).T.reshape(theta.shape)
    return eta, grad, curv


def initial_onehot_state(data, params: HMMGLMParams, settings: EMSettings):
    """Types from a z-test on unconstrained weights, pi from their counts, weights made feasible.

    A weight is a connection when |w| / se > type_init_z, se = curvature^-1/2 (our choice:
    the learned prior then starts sparse instead of being trapped by noise-level weights).
    """
    estep = e_step(data, params, settings)
    theta = params.theta()
    _, _, curv = _gradient_and_curvature(data, estep.resp, theta, settings.link)
    w = theta[..., 1:]
    z = w * curv[..., 1:].clamp_min(0).sqrt()
    types = torch.where(z > settings.type_init_z, 1, torch.where(z < -settings.type_init_z, -1, 0))
    floor = settings.strength_floor
    value = torch.where(types > 0, w.clamp_min(floor), torch.where(types < 0, w.clamp_max(-floor), 0.0))
    alpha = torch.tensor(settings.type_concentration, dtype=theta.dtype, device=theta.device)
    state = OneHotPriorState(update_type_prior(types, alpha), types)
    return params.with_theta(torch.cat([theta[..., :1], value], -1)), state


def _onehot_type_update(data, resp, theta, prior_state, settings):
    """Reassign types; accept per (r, k, n) only where the exact objective rises."""
    link, floor = settings.link, settings.strength_floor
    eta, grad, curv = _gradient_and_curvature(data, resp, theta, link)
    types, values = candidate_types(theta[..., 1:], grad[..., 1:], curv[..., 1:],
                                    prior_state.log_type_prior, floor)
    trial_theta = torch.cat([theta[..., :1], values], dim=-1)
    trial_state = OneHotPriorState(prior_state.log_type_prior, types)
    f_old = objective(eta, data.counts, resp, theta, link, None, None) + prior_state.per_problem_log_prior()
    trial_eta = linear_predictor(data.design, trial_theta)
    f_new = objective(trial_eta, data.counts, resp, trial_theta, link, None, None)
    f_new = f_new + trial_state.per_problem_log_prior()
    ok = f_new > f_old
    theta = torch.where(ok.unsqueeze(-1), trial_theta, theta)
    types = torch.where(ok.unsqueeze(-1), types, prior_state.types)
    return theta, OneHotPriorState(prior_state.log_type_prior, types)


def glm_m_step(data, outer, estep: EStep, params, prior_state, settings: EMSettings):
    """Newton steps on the GLMs, then the prior's hyperparameters.

    Returns (params, prior_state, cache): cache = (eta, terms) at the new params, or None.
    """
    resp = estep.resp
    theta = params.theta()
    cache = (estep.eta, estep.terms)
    precision = mean = lower = upper = None
    if settings.prior == "gaussian":
        precision, mean = prior_state.newton_terms(params.num_states)
    if settings.prior == "onehot":
        theta, prior_state = _onehot_type_update(data, resp, theta, prior_state, settings)
        cache = (None, None)
        lower, upper = type_bounds(prior_state.types, settings.strength_floor, theta.dtype)
    if settings.shared_bias:
        fixed_bias = theta[..., :1]
        lower = theta.new_full(theta.shape, -math.inf) if lower is None else lower.clone()
        upper = theta.new_full(theta.shape, math.inf) if upper is None else upper.clone()
        lower[..., :1] = fixed_bias
        upper[..., :1] = fixed_bias
    for _ in range(settings.newton_steps):
        theta, _, eta, terms = newton_step(
            data.design, outer, data.counts, resp, theta, settings.link, precision, mean, lower,
            upper, ridge=settings.ridge, eta=cache[0], loglik=cache[1], spikes=data.spikes)
        cache = (eta, terms)
        if settings.shared_bias:
            theta = shared_bias_step(data.design, data.counts, resp, theta, settings.link,
                                     spikes=data.spikes)
            lower[..., :1] = theta[..., :1]
            upper[..., :1] = theta[..., :1]
            cache = (None, None)
    params = params.with_theta(theta)
    if settings.prior == "gaussian":
        flat = params.weights.reshape(*params.weights.shape[:3], -1)
        prior_state = prior_state.update(flat, settings.learn_prior_mean, settings.learn_prior_sigma,
                                         settings.sigma_floor)
    elif settings.prior == "onehot":
        alpha = torch.tensor(settings.type_concentration, dtype=theta.dtype, device=theta.device)
        prior_state = OneHotPriorState(update_type_prior(prior_state.types, alpha), prior_state.types)
    return params, prior_state, (None if cache[0] is None else cache)


def _take(state, index: torch.Tensor):
    """Restarts ``index`` of params or a prior state (fields (R, ...)); None stays None."""
    if state is None:
        return None
    return type(state)(*(getattr(state, f.name)[index] for f in fields(state)))


def _put(state, index: torch.Tensor, part):
    """``state`` with its restarts ``index`` replaced by ``part``'s; None stays None."""
    if state is None:
        return None
    return type(state)(*(getattr(state, f.name).index_copy(0, index, getattr(part, f.name))
                         for f in fields(state)))


def _take_estep(estep: EStep, index: torch.Tensor) -> EStep:
    """Restarts ``index`` of an E-step (restart axis 1 for the per-bin arrays, else 0)."""
    per_bin = ("resp", "eta", "terms")
    return EStep(*(None if getattr(estep, f.name) is None else
                   getattr(estep, f.name)[:, index] if f.name in per_bin else getattr(estep, f.name)[index]
                   for f in fields(estep)))


def _take_settings(settings: EMSettings, index: torch.Tensor) -> EMSettings:
    swept = {name: getattr(settings, name)[index]
             for name in ("stickiness", "transition_concentration", "strength_floor")
             if isinstance(getattr(settings, name), torch.Tensor)}
    return replace(settings, **swept) if swept else settings


def run_em(data: PreparedData, params: HMMGLMParams, prior_state, settings: EMSettings,
           num_iters: int, tolerance: float, outer: PackedOuterProducts | None = None,
           progress=None, group_size: int | None = None):
    """EM from ``params`` (restart axis R) in groups of ``group_size`` consecutive restarts
    (default: one group of all R). A group stops when every one of its restarts gains less
    than ``tolerance`` nats per bin in one iteration, exactly as if it had been fitted alone:
    its parameters are final and it leaves the batch (EM goes on for the other groups).
    Returns (params, prior_state, objectives list of (R,) (a stopped group's entries repeat
    its last value), stops: one int per group, how many of the objectives belong to that
    group's own run, settled: one bool per group, whether it stopped by the tolerance rule
    (False: it ran out of iterations)).
    """
    outer = outer or PackedOuterProducts(data.design)
    num_bins = data.design.shape[0]
    num_restarts = params.bias.shape[0]
    group_size = num_restarts if group_size is None else group_size
    if group_size < 1 or num_restarts % group_size:
        raise ValueError(f"group_size must divide the {num_restarts} restarts, got {group_size}")
    device = params.bias.device
    final_params, final_prior = params, prior_state  # every restart's latest parameters
    batch = list(range(num_restarts // group_size))  # the groups still in the batch
    stops = [None] * len(batch)
    history, previous, cache, row = [], None, None, None

    def restarts(positions):  # batch positions of groups -> batch positions of their restarts
        return torch.tensor([g * group_size + j for g in positions for j in range(group_size)],
                            device=device)

    running = restarts(batch)  # original index of every restart in the batch
    iterator = range(num_iters + 1) if progress is None else progress(range(num_iters + 1))
    for iteration in iterator:
        estep = e_step(data, params, settings, cache)
        value = estep.log_normalizer + log_prior(params, prior_state, settings)
        row = value if row is None else row.index_copy(0, running, value)
        history.append(row)
        leaving = []
        if previous is not None:  # one host sync: which groups gained too little to go on
            settled = ((value - previous) < tolerance * num_bins).view(len(batch), -1).all(1)
            leaving = [position for position, done in enumerate(settled.tolist()) if done]
        for position in leaving:
            stops[batch[position]] = len(history)
        if leaving:  # their parameters are final: as they are now, before any M-step
            out = restarts(leaving)
            final_params = _put(final_params, running[out], _take(params, out))
            final_prior = _put(final_prior, running[out], _take(prior_state, out))
        if len(leaving) == len(batch) or iteration == num_iters:
            break
        previous = value
        if leaving:  # shrink the batch to the groups still running, before their M-step
            stay = restarts([p for p in range(len(batch)) if p not in leaving])
            batch = [g for p, g in enumerate(batch) if p not in leaving]
            params, prior_state = _take(params, stay), _take(prior_state, stay)
            settings, running, previous = _take_settings(settings, stay), running[stay], previous[stay]
            estep = _take_estep(estep, stay)
        log_initial, log_transition = markov_m_step(estep, params, settings)
        params = HMMGLMParams(log_initial, log_transition, params.bias, params.weights)
        params, prior_state, cache = glm_m_step(data, outer, estep, params, prior_state, settings)
    if len(leaving) < len(batch):  # the groups that ran out of iterations
        final_params = _put(final_params, running, params)
        final_prior = _put(final_prior, running, prior_state)
    settled = [stop is not None for stop in stops]
    stops = [len(history) if stop is None else stop for stop in stops]
    return final_params, final_prior, history, stops, settled
