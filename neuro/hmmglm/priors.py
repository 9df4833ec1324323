"""Priors on the coupling weights: Gaussian (shared mean across states) and one-hot.

Gaussian (Li et al., arXiv 2310.15263, "Gaussian HMM-GLM"):
    W_k[n, m, j] ~ N(W_bar[n, m, j], sigma^2) independently for every state k,
with W_bar and (optionally) sigma learned by closed-form maximization in each M-step
(sigma is floored at ``sigma_floor`` so that the joint density stays bounded; our choice).
With ``learn_prior_mean=False``, W_bar = 0: a ridge penalty sum (W / sigma)^2 / 2 toward zero.

One-hot (same paper, "one-hot HMM-GLM"; our MAP formulation, nothing copied):
    type_k[n, m] in {inhibitory, none, excitatory} ~ Categorical(softmax(logits[n, m])),
    W_k[n, m] = type_k[n, m] * s_k[n, m],   s >= strength_floor for inh/exc, W = 0 for none,
    softmax(logits[n, m]) ~ Dirichlet(concentration)  (shared across states: the skeleton).
Default concentration (1.2, 3.0, 1.2) mildly favours 'none' (our choice; the paper's generator
draws type priors from Dirichlet(0.2, 1.6, 0.2), which has no MAP in the interior).
Types start from a z-test (|w| / se > 3) on the unconstrained fit, so the learned prior
starts sparse instead of being trapped by noise-level weights (our choice).
The identifiability guard is the strength floor: a weight below ``strength_floor`` cannot
be 'excitatory' or 'inhibitory', so the only way to express a weight near zero is 'none',
which also saves the (learned) prior cost of a rare type. Requires one basis function
(L = 1), where a connection's sign is its type. Fitted by coordinate ascent on
log p(y, W, types, pi): type reassignment (accepted per (state, neuron) only when the exact
objective rises), bound-constrained Newton on the strengths, closed-form pi.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PRIORS = ("none", "gaussian", "onehot")


@dataclass(frozen=True)
class GaussianPriorState:
    mean: torch.Tensor  # (R, N, N*L)
    sigma: torch.Tensor  # (R,)

    def newton_terms(self, num_states: int):
        """(precision, mean) of shape (R, K, N, D) for newton_step (bias unpenalized)."""
        r, n, p = self.mean.shape
        precision = (1.0 / self.sigma**2).view(r, 1, 1, 1).expand(r, num_states, n, p)
        zero = self.mean.new_zeros(r, num_states, n, 1)
        precision = torch.cat([zero, precision], dim=-1)
        mean = torch.cat([zero, self.mean.unsqueeze(1).expand(r, num_states, n, p)], dim=-1)
        return precision, mean

    def log_prior(self, weights_flat: torch.Tensor) -> torch.Tensor:
        """sum over k, entries of log N(W_k | W_bar, sigma^2): (R,). weights_flat (R, K, N, N*L)."""
        sq = ((weights_flat - self.mean.unsqueeze(1)) ** 2).sum((1, 2, 3))
        count = weights_flat[0].numel()
        return -0.5 * sq / self.sigma**2 - count * (torch.log(self.sigma) + 0.5 * math.log(2 * math.pi))

    def update(self, weights_flat: torch.Tensor, learn_mean: bool, learn_sigma: bool, floor: float):
        mean = weights_flat.mean(1) if learn_mean else self.mean
        sigma = self.sigma
        if learn_sigma:
            var = ((weights_flat - mean.unsqueeze(1)) ** 2).mean((1, 2, 3))
            sigma = var.sqrt().clamp_min(floor)
        return GaussianPriorState(mean, sigma)


@dataclass(frozen=True)
class OneHotPriorState:
    log_type_prior: torch.Tensor  # (R, N, N, 3): log pi over (inh, none, exc)
    types: torch.Tensor  # (R, K, N, N) int64 in {-1, 0, 1}

    def log_prior(self, concentration: torch.Tensor) -> torch.Tensor:
        """sum_k sum_{n,m} log pi[n, m, type] + sum log Dirichlet(pi | concentration) (R,)."""
        idx = (self.types + 1).unsqueeze(-1)  # (R, K, N, N, 1)
        lp = self.log_type_prior.unsqueeze(1).expand(*self.types.shape, 3)
        value = torch.gather(lp, -1, idx).squeeze(-1).sum((1, 2, 3))
        alpha = concentration.to(self.log_type_prior)
        dirichlet_norm = torch.lgamma(alpha.sum()) - torch.lgamma(alpha).sum()
        # alpha_c = 1 puts no mass term on class c, whose MAP probability may then be 0: 0, not 0 * -inf
        prior_terms = torch.where(alpha != 1.0, (alpha - 1.0) * self.log_type_prior, 0.0).sum((1, 2, 3))
        num_pairs = self.types.shape[-1] * self.types.shape[-2]
        return value + prior_terms + num_pairs * dirichlet_norm

    def per_problem_log_prior(self) -> torch.Tensor:
        """sum_m log pi[n, m, type_k[n, m]] for each (r, k, n): (R, K, N)."""
        idx = (self.types + 1).unsqueeze(-1)
        lp = self.log_type_prior.unsqueeze(1).expand(*self.types.shape, 3)
        return torch.gather(lp, -1, idx).squeeze(-1).sum(-1)


def type_bounds(types: torch.Tensor, floor: float | torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Box bounds (R, K, N, 1 + N) on theta implied by the types (bias unbounded); ``floor``
    a float or an (R, 1, 1, 1) tensor (one per restart, ``HMMGLM.fit_sweep``)."""
    inf = torch.full(types.shape, math.inf, dtype=dtype, device=types.device)
    zero = torch.zeros_like(inf)
    lower = torch.where(types > 0, floor, torch.where(types < 0, -inf, zero))
    upper = torch.where(types < 0, -floor, torch.where(types > 0, inf, zero))
    free_bias = torch.full(types.shape[:-1] + (1,), math.inf, dtype=dtype, device=types.device)
    return torch.cat([-free_bias, lower], -1), torch.cat([free_bias, upper], -1)


def update_type_prior(types: torch.Tensor, concentration: torch.Tensor) -> torch.Tensor:
    """MAP pi[n, m] given the types of every state: (count_c + alpha_c - 1) / total."""
    counts = torch.stack([(types == v).sum(1) for v in (-1, 0, 1)], dim=-1).to(concentration.dtype)
    numer = (counts + concentration - 1.0).clamp_min(0.0)
    probs = numer / numer.sum(-1, keepdim=True).clamp_min(1e-300)
    return torch.log(probs)


def candidate_types(weights, grad, curvature, log_type_prior, floor):
    """Best type per (r, k, n, m) from a 1-D quadratic model of the objective around w.

    Each type's best value is the 1-D Newton optimum clipped to its feasible set
    (none: 0; exc: >= floor; inh: <= -floor); score = quadratic gain + log pi[type].
    Returns (types, values), both (R, K, N, N).
    """
    curvature = curvature.clamp_min(1e-12)
    optimum = weights + grad / curvature
    values = torch.stack(
        [optimum.clamp_max(-floor), torch.zeros_like(optimum), optimum.clamp_min(floor)], dim=-1)
    step = values - weights.unsqueeze(-1)
    gain = grad.unsqueeze(-1) * step - 0.5 * curvature.unsqueeze(-1) * step**2
    score = gain + log_type_prior.unsqueeze(1)
    best = score.argmax(-1)
    chosen = torch.gather(values, -1, best.unsqueeze(-1)).squeeze(-1)
    return best - 1, chosen
