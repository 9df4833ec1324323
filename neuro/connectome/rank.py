"""Factor-match score and rank selection for non-negative CP fits.

Factor-match score (FMS), for two CP models with unit-norm columns and weights, components
matched one to one by the Hungarian algorithm to maximise the total score:

    FMS = (1/R) sum_r prod_n |a_nr . b_n,pi(r)|                            (default)
    FMS = (1/R) sum_r (1 - |w_r - v_pi(r)| / max(w_r, v_pi(r))) prod_n |a_nr . b_n,pi(r)|
                                                            (weight_penalty=True)

The default is the cosine-only score of tensortools (Williams et al. 2018); the weighted one is
Acar, Dunlavy & Kolda 2011 (arXiv 1005.2197, eq. 5.1), which also asks the weights to agree.
An absent component (weight 0 after the column norms are absorbed, as NTF leaves a component
it does not need) matches another absent one with score 1 and a present one with score 0:
two fits that both leave a component unused agree on it (our choice; the cosine of two zero
vectors is undefined, and scoring it 0 made over-ranked fits look unstable).

Rank selection (our rule, in the spirit of
Williams et al. 2018, tensortools): fit `num_replicates` random starts per rank; the error of a
rank is the best replicate's, its stability the mean pairwise FMS of the replicates. The chosen
rank is the smallest stable rank (stability >= min_stability) whose successor in `ranks` (the
next rank tried, which may add more than one component) lowers the error by less than
`min_relative_improvement` times the error, or by less than `min_absolute_improvement` (the
errors are relative, ||X - X_hat|| / ||X||, so this is a fraction of ||X||); if there is none,
the largest rank tried. The absolute floor is for (nearly) noise-free data: there the error at
the true rank is convergence residue (1e-7 to 5e-5 of ||X|| in 27 noise-free fits of 3- and
4-mode tensors at ntf's defaults), and a successor that shaves 1e-7 off 3e-6 is a 12%
relative improvement that the relative rule alone would take.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from neuro.connectome._checks import (
    Seed,
    as_real_array,
    check_choice,
    check_flag,
    check_positive_int,
    check_real,
    check_sequence,
    check_values,
    numpy_generator,
    numpy_to_torch,
)
from neuro.connectome.cp_ops import normalize_and_sort
from neuro.connectome.ntf import METHODS, NTFResult, ntf

__all__ = ["RankSelection", "factor_match_score", "select_rank"]


def _as_cp(name: str, model) -> tuple[np.ndarray, list[np.ndarray]]:
    """Checked CP model `name` (NTFResult or (weights, factors)) with unit-norm columns."""
    if isinstance(model, NTFResult):
        weights, factors = model.weights, model.factors
    elif isinstance(model, (tuple, list)) and len(model) == 2:
        weights, factors = model
    else:
        raise TypeError(f"{name} must be an NTFResult or a (weights, factors) pair, got "
                        f"{type(model).__name__}")
    weights = as_real_array(f"{name} weights", weights, ndim=1)
    check_sequence(f"{name} factors", factors, "a list of (I_n, R) factor matrices")
    if len(factors) < 1:
        raise ValueError(f"{name} factors must hold at least one factor matrix")
    factors = [as_real_array(f"{name} factors[{n}]", f, ndim=2) for n, f in enumerate(factors)]
    for n, factor in enumerate(factors):
        if factor.shape[1] != weights.size:
            raise ValueError(f"{name} factors[{n}] must have {weights.size} columns (one per "
                             f"weight), got shape {factor.shape}")
    # The weights are only compared (never squared): any finite values, as large as the fit of
    # a large tensor gives them; the factors' column norms are squared, so check their sizes.
    if not np.isfinite(weights).all():
        raise ValueError(f"{name} weights has NaN or inf entries")
    for n, factor in enumerate(factors):
        check_values(f"{name} factors[{n}]", factor)
    weights, factors = normalize_and_sort(numpy_to_torch(weights),
                                          [numpy_to_torch(f) for f in factors])
    if not bool(torch.isfinite(weights).all()):
        raise ValueError(f"{name} weights times the factors' column norms overflow float64; "
                         "rescale the model")
    return weights.numpy(), [f.numpy() for f in factors]


def factor_match_score(model_a, model_b, *, weight_penalty: bool = False) -> float:
    """FMS in [0, 1] between two CP models given as NTFResult or (weights, factors).
    Both must have the same number of modes and mode sizes; ranks may differ (unmatched
    components count as 0, normalised by the larger rank)."""
    from scipy.optimize import linear_sum_assignment

    weight_penalty = check_flag("weight_penalty", weight_penalty)
    weights_a, factors_a = _as_cp("model_a", model_a)
    weights_b, factors_b = _as_cp("model_b", model_b)
    if len(factors_a) != len(factors_b) or any(
        fa.shape[0] != fb.shape[0] for fa, fb in zip(factors_a, factors_b)
    ):
        raise ValueError(
            "models must have the same mode sizes, got "
            f"{[f.shape[0] for f in factors_a]} and {[f.shape[0] for f in factors_b]}"
        )
    score = np.ones((weights_a.size, weights_b.size))
    for fa, fb in zip(factors_a, factors_b):
        score *= np.abs(fa.T @ fb)
    if weight_penalty:
        largest = np.maximum(weights_a[:, None], weights_b[None, :])
        safe = np.where(largest > 0, largest, 1.0)
        score *= np.where(largest > 0, 1.0 - np.abs(weights_a[:, None] - weights_b[None, :]) / safe,
                          1.0)
    absent_a, absent_b = weights_a == 0, weights_b == 0
    score[absent_a, :] = 0.0  # an absent component has no direction (its columns may not be 0)
    score[:, absent_b] = 0.0
    score[np.ix_(absent_a, absent_b)] = 1.0  # both absent: they agree
    rows, cols = linear_sum_assignment(score, maximize=True)
    return float(score[rows, cols].sum() / max(weights_a.size, weights_b.size))


class RankSelection(NamedTuple):
    """ranks (K,); errors (K,) best final relative error per rank; stability (K,) mean
    pairwise FMS of the replicates (1.0 with one replicate); all_errors (K, replicates);
    best_fits: the lowest-error fit per rank; chosen_rank."""

    ranks: np.ndarray
    errors: np.ndarray
    stability: np.ndarray
    all_errors: np.ndarray
    best_fits: tuple[NTFResult, ...]
    chosen_rank: int


def select_rank(
    tensor,
    ranks: Sequence[int],
    *,
    num_replicates: int = 3,
    method: str = "hals",
    mask=None,
    min_stability: float = 0.8,
    min_relative_improvement: float = 0.01,
    min_absolute_improvement: float = 1e-4,
    seed: Seed = 0,
    **ntf_options,
) -> RankSelection:
    """Fit every rank `num_replicates` times from independent random starts (seeds spawned
    from `seed`) and choose a rank by the rule in the module docstring. Extra keyword
    arguments go to `ntf` (n_iter_max, tol, dtype, device, ...)."""
    check_sequence("ranks", ranks, "a list of ints >= 1")
    ranks = [check_positive_int(f"ranks[{i}]", rank) for i, rank in enumerate(ranks)]
    if not ranks:
        raise ValueError("ranks must hold at least one rank")
    if sorted(set(ranks)) != ranks:
        raise ValueError(f"ranks must be strictly increasing, got {ranks}")
    num_replicates = check_positive_int("num_replicates", num_replicates)
    check_choice("method", method, METHODS)
    check_real("min_stability", min_stability, 0, 1)
    check_real("min_relative_improvement", min_relative_improvement, 0)
    check_real("min_absolute_improvement", min_absolute_improvement, 0)
    rng = numpy_generator(seed)
    seeds = rng.integers(0, 2**62, size=(len(ranks), num_replicates))
    all_errors = np.zeros((len(ranks), num_replicates))
    stability = np.ones(len(ranks))
    best_fits = []
    for index, rank in enumerate(ranks):
        fits = [ntf(tensor, rank, method=method, mask=mask, seed=int(s), **ntf_options)
                for s in seeds[index]]
        all_errors[index] = [float(fit.error_history[-1]) for fit in fits]
        best_fits.append(fits[int(np.argmin(all_errors[index]))])
        if num_replicates > 1:
            pair_scores = [factor_match_score(fits[i], fits[j])
                           for i in range(num_replicates) for j in range(i + 1, num_replicates)]
            stability[index] = float(np.mean(pair_scores))
    errors = all_errors.min(axis=1)
    chosen = ranks[-1]
    for index, rank in enumerate(ranks[:-1]):
        if stability[index] < min_stability:
            continue
        improvement = errors[index] - errors[index + 1]
        if improvement < max(min_relative_improvement * errors[index], min_absolute_improvement):
            chosen = rank
            break
    return RankSelection(np.asarray(ranks), errors, stability, all_errors, tuple(best_fits),
                         int(chosen))
