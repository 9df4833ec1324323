"""Sampling from an HMM-GLM and the two simulated problems of the test suite.

Sampling draws the Markov chain first (it does not depend on the spikes), then the
counts bin by bin, because each bin's rate depends on the previous ``num_lags`` bins.

* Problem (a), "reference": K=3 states, N=20 neurons, T=20,000 bins, ~0.18 spikes/bin,
  softplus link, one exponential coupling filter (tau = 2 bins, unit area) over 5 lags; the states
  share most of the bias, a common coupling skeleton (15% of pairs, |w| ~ U(0.5, 1.5), random
  sign) and self-inhibition (-1), and each adds its own 15% of pairs (our construction of the
  problem the peers were timed on; its oracle state accuracy is ~97-98%, see ANCHORS.md).
* Problem (b), "paper": K=5, N=20, one exponential filter over 5 lags; per pair, a type
  prior p ~ Dirichlet(0.2, 1.6, 0.2) over (inhibitory, none, excitatory) shared by all
  states, whose argmax is the state-constant anatomical skeleton; each state draws its
  own types from p and strengths log(1 + 3u), u ~ U(0, 1) (Li et al., arXiv 2310.15263).
  Self-coupling is always inhibitory (refractoriness; keeps the softplus network stable).
  The strengths do not shrink with N, so the excitation grows with the population: up to
  N = 60 seeds 0-3 stay bounded over 20,000 bins, at N = 70 three of four run away.

Problem (a)'s network is supercritical in the softplus's linear range (the spectral radius
of its excitatory gains is 2-4 for every seed): it lives in a metastable low-rate state from
which a large fluctuation can escape into runaway rates (3 of seeds 0-59 within 20,000
bins). ``sample_spikes`` raises ``RatesDiverged`` then, and the problem generators discard
such a draw and draw the problem again from the same generator (at most
``MAX_PROBLEM_DRAWS`` draws), so every seed gives a problem, the same one for the same
(num_timesteps, seed); a seed whose first draw stays bounded gives that first draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuro.checks import check_int
from neuro.hmmglm.basis import exponential_basis
from neuro.hmmglm.glm import check_link
from neuro.hmmglm.seeding import numpy_generator

TYPE_VALUES = np.array([-1, 0, 1])  # inhibitory, none, excitatory
MAX_PROBLEM_DRAWS = 10
RATE_LIMIT = 1e7  # spikes per bin: a rate beyond it has run away


class RatesDiverged(ValueError):
    """The sampled rates exceeded ``RATE_LIMIT`` at some bin (the network ran away)."""


@dataclass(frozen=True)
class SimulatedProblem:
    """Spikes (T, N), true states (T,), rates (T, N), true parameters and the basis."""

    spikes: np.ndarray
    states: np.ndarray
    rates: np.ndarray
    initial: np.ndarray
    transition: np.ndarray
    bias: np.ndarray
    weights: np.ndarray  # (K, N, N, L)
    basis: np.ndarray  # (L, num_lags)
    link: str
    skeleton: np.ndarray | None = None  # (N, N) in {-1, 0, 1}: argmax of type_prior, problem (b)
    type_prior: np.ndarray | None = None  # (N, N, 3) for problem (b)


def _rate(eta: np.ndarray, link: str) -> np.ndarray:
    if link == "exp":
        return np.exp(np.minimum(eta, 80.0))
    if link == "softplus":
        return np.logaddexp(0.0, eta)
    return 1.0 / (1.0 + np.exp(-eta))


def _unit_area_filter() -> np.ndarray:
    """exp(-(lag - 1) / 2) over lags 1..5, scaled to sum 1 (so a weight is a total gain)."""
    filt = exponential_basis(5, (2.0,))
    return filt / filt.sum()


def sample_states(initial, transition, num_timesteps: int, rng: np.random.Generator) -> np.ndarray:
    cumulative = np.cumsum(transition, axis=1)
    draws = rng.random(num_timesteps)
    states = np.empty(num_timesteps, dtype=np.int64)
    states[0] = min(int(np.searchsorted(np.cumsum(initial), draws[0], side="right")), len(initial) - 1)
    last = transition.shape[0] - 1
    for t in range(1, num_timesteps):
        row = cumulative[states[t - 1]]
        states[t] = min(int(np.searchsorted(row, draws[t], side="right")), last)
    return states


def sample_spikes(states, bias, weights, basis, link: str, distribution: str, rng) -> tuple:
    """Counts (T, N) and rates (T, N) given a state path; weights (K, N, N, L)."""
    check_link(distribution, link)
    num_timesteps = states.shape[0]
    num_neurons = bias.shape[1]
    num_lags = basis.shape[1]
    # coupling filters per lag: (K, num_lags, N_post, N_pre)
    filters = np.einsum("knmj,jl->klnm", weights, basis)
    spikes = np.zeros((num_timesteps, num_neurons))
    rates = np.zeros((num_timesteps, num_neurons))
    for t in range(num_timesteps):
        k = states[t]
        eta = bias[k].copy()
        for lag in range(1, min(num_lags, t) + 1):
            eta += filters[k, lag - 1] @ spikes[t - lag]
        rate = _rate(eta, link)
        if not np.all(rate < RATE_LIMIT):
            raise RatesDiverged(f"rates diverged at bin {t} (max {rate.max():.3g} per bin): the coupling "
                                "weights excite the network without bound; use weaker excitation")
        rates[t] = rate
        if distribution == "poisson":
            spikes[t] = rng.poisson(rate)
        else:
            spikes[t] = rng.random(num_neurons) < rate
    return spikes, rates


def _first_bounded_draw(draw, seed, advice: str) -> SimulatedProblem:
    """The first of ``MAX_PROBLEM_DRAWS`` successive ``draw()`` calls (one generator) whose
    rates stay bounded (see the module docstring); else RatesDiverged ending with ``advice``."""
    for _ in range(MAX_PROBLEM_DRAWS):
        try:
            return draw()
        except RatesDiverged:
            continue
    raise RatesDiverged(f"all {MAX_PROBLEM_DRAWS} draws of this problem (seed={seed!r}) ran away "
                        f"(rates above {RATE_LIMIT:g} per bin); {advice}")


def _sticky_chain(num_states: int, stay: float) -> tuple[np.ndarray, np.ndarray]:
    """Uniform initial distribution; stay with probability ``stay``, else switch uniformly."""
    transition = np.full((num_states, num_states), (1 - stay) / (num_states - 1))
    np.fill_diagonal(transition, stay)
    return np.full(num_states, 1.0 / num_states), transition


def _check_problem(num_timesteps, link, num_states=3, num_neurons=1):
    """A TypeError / ValueError naming the first bad argument of a problem generator."""
    check_int("num_timesteps", num_timesteps)
    check_int("num_states", num_states, 2)
    check_int("num_neurons", num_neurons)
    if link not in ("softplus", "exp"):
        raise ValueError(f"link must be 'softplus' or 'exp' for the simulated problems, got {link!r}")


def _inverse_link(rate: float, link: str) -> float:
    """The drive whose link output is ``rate`` (softplus or exp)."""
    return float(np.log(np.expm1(rate)) if link == "softplus" else np.log(rate))


def reference_problem(num_timesteps: int = 20_000, seed=0, link: str = "softplus") -> SimulatedProblem:
    """Problem (a): K=3, N=20, states differing mainly in coupling (see module docstring)."""
    _check_problem(num_timesteps, link)
    rng = numpy_generator(seed)
    return _first_bounded_draw(lambda: _draw_reference(num_timesteps, rng, link), seed,
                               "use fewer bins or another seed")


def _draw_reference(num_timesteps: int, rng: np.random.Generator, link: str) -> SimulatedProblem:
    num_states, num_neurons = 3, 20
    basis = _unit_area_filter()
    bias = _inverse_link(0.19, link) + 0.1 * rng.standard_normal(num_neurons)
    bias = np.tile(bias, (num_states, 1)) + 0.05 * rng.standard_normal((num_states, num_neurons))
    def random_coupling(density):
        mask = rng.random((num_neurons, num_neurons)) < density
        sign = np.where(rng.random((num_neurons, num_neurons)) < 0.5, -1.0, 1.0)
        return mask * sign * rng.uniform(0.5, 1.5, (num_neurons, num_neurons))

    shared = random_coupling(0.15)
    weights = np.zeros((num_states, num_neurons, num_neurons, 1))
    for k in range(num_states):
        own = random_coupling(0.15)
        weights[k, :, :, 0] = np.where(shared != 0, shared, own)
        np.fill_diagonal(weights[k, :, :, 0], -1.0)  # refractoriness, shared
    initial, transition = _sticky_chain(num_states, stay=0.99)
    states = sample_states(initial, transition, num_timesteps, rng)
    spikes, rates = sample_spikes(states, bias, weights, basis, link, "poisson", rng)
    return SimulatedProblem(spikes, states, rates, initial, transition, bias, weights, basis, link)


def paper_problem(num_timesteps: int = 20_000, seed=0, link: str = "softplus",
                  num_states: int = 5, num_neurons: int = 20) -> SimulatedProblem:
    """Problem (b): the one-hot paper's simulation (see module docstring)."""
    _check_problem(num_timesteps, link, num_states, num_neurons)
    rng = numpy_generator(seed)
    return _first_bounded_draw(
        lambda: _draw_paper(num_timesteps, rng, link, num_states, num_neurons), seed,
        f"the paper's coupling strengths do not shrink with num_neurons, so large populations run "
        f"away (most seeds at num_neurons >= 70 with 20,000 bins); use num_neurons <= 60 "
        f"(got {num_neurons}), fewer bins or another seed")


def _draw_paper(num_timesteps: int, rng: np.random.Generator, link: str, num_states: int,
                num_neurons: int) -> SimulatedProblem:
    basis = _unit_area_filter()
    type_prior = rng.dirichlet([0.2, 1.6, 0.2], size=(num_neurons, num_neurons))
    diagonal = np.arange(num_neurons)
    type_prior[diagonal, diagonal] = (1.0, 0.0, 0.0)  # self-coupling: refractory (our choice)
    skeleton = TYPE_VALUES[type_prior.argmax(-1)]
    cumulative = np.cumsum(type_prior, axis=-1)
    draw = rng.random((num_states, num_neurons, num_neurons, 1))
    types = TYPE_VALUES[np.minimum((draw > cumulative).sum(-1), 2)]  # (K, N, N)
    strength = np.log1p(3.0 * rng.random((num_states, num_neurons, num_neurons)))
    weights = (types * strength)[..., None]
    bias = _inverse_link(0.15, link) + 0.1 * rng.standard_normal((num_states, num_neurons))
    initial, transition = _sticky_chain(num_states, stay=0.99)
    states = sample_states(initial, transition, num_timesteps, rng)
    spikes, rates = sample_spikes(states, bias, weights, basis, link, "poisson", rng)
    return SimulatedProblem(spikes, states, rates, initial, transition, bias, weights, basis, link,
                            skeleton=skeleton, type_prior=type_prior)
