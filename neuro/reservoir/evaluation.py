"""Scores for the what/when study: timing, amplitudes, per-trial performance, recovery
after a switch, principal angles between readout subspaces.

All inputs are binned numpy arrays from ``training.run_session``; column 0 of the
readout axis is "when", columns 1..M are "what". The definitions are ours (Yamada &
Chao, arXiv 2510.14382, name the quantities but not their formulas).
"""
from __future__ import annotations

import numpy as np

from neuro.reservoir._checks import check_count, check_real
from neuro.seeding import numpy_generator

__all__ = [
    "fitted_heights",
    "height_performance",
    "peak_times_ms",
    "principal_angles_deg",
    "random_subspace_angles_deg",
    "recovery_trials",
    "trial_performance",
    "trials_until_within",
]


def peak_times_ms(when_output: np.ndarray, bin_ms: float, search_from_ms: float = 0.0) -> np.ndarray:
    """Time (ms, bin centre) of the maximum of the "when" output over the bins from the one
    that holds ``search_from_ms`` on (that bin's centre may lie up to bin_ms / 2 before it).

    when_output [..., bins] -> [...]."""
    bin_ms = check_real("bin_ms", bin_ms, 0.0, low_open=True)
    search_from_ms = check_real("search_from_ms", search_from_ms)
    when_output = np.asarray(when_output, float)
    if when_output.ndim < 1:
        raise ValueError(f"when_output must be [..., bins], got shape {list(when_output.shape)}")
    first = int(np.floor(search_from_ms / bin_ms))
    if not 0 <= first < when_output.shape[-1]:
        raise ValueError(f"search_from_ms={search_from_ms} lies outside the trial")
    index = first + np.argmax(when_output[..., first:], axis=-1)
    return (index + 0.5) * bin_ms


def fitted_heights(output: np.ndarray, shape: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Least-squares height h of ``shape`` in ``output``: h = <z, s>_w / <s, s>_w over bins.

    output [..., bins, R], shape [..., bins, R] (unit-height target shapes), weight
    [..., bins, R] (e.g. the gate; default 1) -> [..., R]. Rows whose shape is zero give NaN."""
    w = np.ones_like(shape) if weight is None else weight
    numerator = (output * shape * w).sum(-2)
    denominator = (shape * shape * w).sum(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def trial_performance(output: np.ndarray, ideal: np.ndarray, columns,
                      mask: np.ndarray | None = None) -> np.ndarray:
    """Per-trial score 1 - ||z - y*||^2 / ||y*||^2 over the bins where ``mask`` is true
    (default: the whole trial), for the given readout columns, against the ideal
    (expected-value) target y*. 1 is perfect, 0 is the score of a silent readout; it can
    be negative. output [trials, B, bins, R], ideal and mask [trials, bins, R] -> [trials, B]."""
    output, ideal = np.asarray(output, float), np.asarray(ideal, float)
    if output.ndim != 4 or ideal.shape != (output.shape[0], *output.shape[2:]):
        raise ValueError(f"output must be [trials, B, bins, R] and ideal [trials, bins, R] of the same "
                         f"trials, bins and R; got {list(output.shape)} and {list(ideal.shape)}")
    if mask is not None and np.shape(mask) != ideal.shape:
        raise ValueError(f"mask must have ideal's shape {list(ideal.shape)}, got {list(np.shape(mask))}")
    columns = list(columns)
    readouts = output.shape[-1]
    if not columns or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not -readouts <= c < readouts
                          for c in columns):
        raise ValueError(f"columns must be readout indices in [-{readouts}, {readouts}) (R = {readouts}), "
                         f"at least one, got {columns}")
    z = output[..., columns]
    y = ideal[:, None][..., columns]
    w = 1.0 if mask is None else np.asarray(mask)[:, None][..., columns].astype(float)
    residual = (w * (z - y) ** 2).sum(axis=(-1, -2))
    power = (w * y**2).sum(axis=(-1, -2))
    _check_power(power[:, 0], "ideal (over the mask and columns)")
    return 1.0 - residual / power


def _check_power(power: np.ndarray, name: str) -> None:
    """ValueError naming the trials (first axis of ``power``) where a score's denominator
    ||y||^2 is zero or not finite (the score is undefined there)."""
    power = np.reshape(power, (1,) if np.ndim(power) == 0 else np.shape(power))
    bad = ~((power > 0) & np.isfinite(power))
    silent = np.flatnonzero(bad.any(axis=tuple(range(1, power.ndim))))
    if silent.size:
        raise ValueError(f"{name} is zero or not finite in trials {silent[:10].tolist()}"
                         f"{' ...' if silent.size > 10 else ''}: the score 1 - ||z - y||^2 / ||y||^2 "
                         "is undefined there; leave those trials out")


def height_performance(heights: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-trial amplitude score 1 - sum_k (h_k - p_k)^2 / sum_k p_k^2 from fitted heights
    h [trials, ..., K] and true probabilities p [trials, ..., K] -> [trials, ...] (1 is
    perfect, 0 a silent readout). Robust to output wiggles away from the target shape."""
    heights, truth = np.asarray(heights, float), np.asarray(truth, float)
    if heights.shape != truth.shape:
        raise ValueError(f"heights {list(heights.shape)} and truth {list(truth.shape)} must have one shape")
    power = (truth**2).sum(-1)
    _check_power(power, "truth")
    return 1.0 - ((heights - truth) ** 2).sum(-1) / power


def trials_until_within(deviation: np.ndarray, switch: int, tolerance: float, window: int = 5) -> float:
    """Smallest k >= 0 such that the median of |deviation| over trials switch + k ..
    switch + k + window - 1 is <= tolerance (e.g. the when peak's distance from the new
    onset, in ms); ``inf`` if never."""
    switch = check_count("switch", switch)
    tolerance = check_real("tolerance", tolerance, 0.0)
    window = check_count("window", window, minimum=1)
    after = np.abs(np.asarray(deviation, float)[switch:])
    for k in range(after.shape[0] - window + 1):
        if np.median(after[k:k + window]) <= tolerance:
            return float(k)
    return float("inf")


def recovery_trials(performance: np.ndarray, switch: int, *, reference_trials: int = 10,
                    window: int = 5, fraction: float = 0.9) -> tuple[float, float]:
    """Trials after ``switch`` until performance is back: the smallest k >= 0 such that the
    mean of ``performance`` [trials] over trials switch + k .. switch + k + window - 1
    reaches ``fraction`` x the mean over the ``reference_trials`` trials before the
    switch (0: no visible loss). For a negative reference the threshold is
    reference - (1 - fraction) |reference| (always a small step below the reference).
    Returns (k, reference); k is ``inf`` if never.
    """
    switch = check_count("switch", switch)
    reference_trials = check_count("reference_trials", reference_trials, minimum=1)
    window = check_count("window", window, minimum=1)
    fraction = check_real("fraction", fraction, 0.0, 1.0, low_open=True)
    performance = np.asarray(performance, float)
    if performance.ndim != 1:
        raise ValueError(f"performance must be [trials] (one score per trial), got shape {list(performance.shape)}")
    if switch > len(performance):
        raise ValueError(f"switch={switch} is past the end of performance ({len(performance)} trials)")
    if switch < reference_trials:
        raise ValueError(f"switch={switch} leaves fewer than reference_trials={reference_trials} before it")
    reference = float(np.mean(performance[switch - reference_trials:switch]))
    after = performance[switch:]
    if after.shape[0] < window:
        return float("inf"), reference
    running = np.convolve(after, np.ones(window) / window, mode="valid")
    hits = np.flatnonzero(running >= reference - (1.0 - fraction) * abs(reference))
    return (float(hits[0]) if hits.size else float("inf")), reference


def _orthonormal_basis(vectors: np.ndarray) -> np.ndarray:
    """Columns spanning the rows of ``vectors`` [k, D] (rank-revealing SVD)."""
    u, s, _ = np.linalg.svd(vectors.T, full_matrices=False)
    keep = s > s.max() * 1e-10 if s.size and s.max() > 0 else np.zeros_like(s, dtype=bool)
    return u[:, keep]


def principal_angles_deg(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, ascending) between span(rows of first [k1, D]) and
    span(rows of second [k2, D]): arccos of the singular values of Q1^T Q2."""
    first, second = np.asarray(first, float), np.asarray(second, float)
    for name, value in (("first", first), ("second", second)):
        if value.ndim != 2 or not np.isfinite(value).all():
            raise ValueError(f"{name} must be a finite [k, D] array, got shape {list(value.shape)}"
                             + ("" if value.ndim != 2 else " with non-finite entries"))
    if first.shape[1] != second.shape[1]:
        raise ValueError(f"first has D={first.shape[1]} features, second has D={second.shape[1]}; they must match")
    q1, q2 = _orthonormal_basis(first), _orthonormal_basis(second)
    if q1.shape[1] == 0 or q2.shape[1] == 0:
        raise ValueError("both subspaces need at least one non-zero vector")
    cosines = np.clip(np.linalg.svd(q1.T @ q2, compute_uv=False), 0.0, 1.0)
    return np.sort(np.degrees(np.arccos(cosines)))


def random_subspace_angles_deg(dim_first: int, dim_second: int, num_features: int,
                               samples: int = 200, seed=0) -> np.ndarray:
    """Chance level: smallest principal angle between random Gaussian subspaces of these
    dimensions in R^num_features, ``samples`` draws -> [samples]."""
    for name, value in (("dim_first", dim_first), ("dim_second", dim_second),
                        ("num_features", num_features), ("samples", samples)):
        check_count(name, value, minimum=1)
    rng = numpy_generator(seed)
    return np.array([
        principal_angles_deg(rng.standard_normal((dim_first, num_features)),
                             rng.standard_normal((dim_second, num_features)))[0]
        for _ in range(samples)
    ])
