"""Capacity of a Hebbian (linear-attention) memory: theory and Monte-Carlo simulation.

Qiao, "Understanding Transformers through the Lens of Pavlovian Conditioning"
(arXiv:2508.08289). Store n pairs (k_i, v_i) with unit keys drawn uniformly on the sphere
in R^{d_k} and Rademacher values (+-1 entries), ``W = sum_i v_i k_i^T``, and recall with
the cue: ``W k_i = v_i + sum_{j != i} (k_j . k_i) v_j``. Each crosstalk term has mean 0
and variance 1/d_k, so each recalled component is ``v_ic + N(0, (n-1)/d_k)`` and

    bit error   P(sign(W k_i)_c != v_ic) = Phi(-sqrt(d_k / (n - 1)))
    mean cosine cos(W k_i, v_i)           ~ (1 + (n - 1)/d_k)^(-1/2)   (large d_v)

both functions of n/d_k alone for large d_k: the *average-case* capacity is O(d_k) (the
statement of the paper's later version). Its first version states a *worst-case* capacity
O(sqrt(d_k)): every item recalled without error is only guaranteed when the summed
crosstalk bound (n - 1) * max_{i != j} |k_i . k_j| stays below 1, and random keys have
coherence ~ sqrt(4 ln n / d_k); :func:`worst_case_capacity` evaluates that bound (our
reading of the argument). Both are documented because the two abstracts disagree.

Under a constant synaptic decay a (``W <- a W + v k^T``) an item of age s (0 = newest)
has signal a^s and crosstalk variance ``sum_{j != s} a^(2j) / d_k``: the forgetting curve
:func:`predicted_forgetting`. Top-1 identification (is v_i the stored value closest to the
recall?) does not follow the law above; the simulation reports it as the control.

Labelled as ours (not in the paper): :func:`redundant_heads_bit_error` (h heads with
independent keys averaged: crosstalk variance / h) and :func:`depth_bit_error` (L layers
each re-thresholding, a chain of binary symmetric channels).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from bridges._validation import (
    check_choice,
    check_device,
    check_dtype,
    check_int,
    check_number,
    torch_seed,
)
from bridges.delta_rule import delta_rule
from bridges.gated_delta_rule import gated_delta_rule
from bridges.hebbian import outer_product_memory, recall

RULES = ("hebbian", "delta")


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr  # lazy: keeps `import bridges` light
    return ndtr(x)


def _as_array(name: str, value) -> np.ndarray:
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}") from None


def _check_counts(num_pairs, key_dim) -> tuple[np.ndarray, np.ndarray]:
    n = _as_array("num_pairs", num_pairs)
    d = _as_array("key_dim", key_dim)
    if not np.all(np.isfinite(n)) or np.any(n < 1):
        raise ValueError(f"num_pairs must be finite and >= 1, got {num_pairs}")
    if not np.all(np.isfinite(d)) or np.any(d < 1):
        raise ValueError(f"key_dim must be finite and >= 1, got {key_dim}")
    return n, d


def predicted_bit_error(num_pairs, key_dim):
    """``Phi(-sqrt(d_k / (n - 1)))`` (0 for n = 1); broadcasts over arrays."""
    n, d = _check_counts(num_pairs, key_dim)
    with np.errstate(divide="ignore"):
        snr = np.where(n > 1, d / np.maximum(n - 1, 1e-300), np.inf)
    return _normal_cdf(-np.sqrt(snr))


def predicted_cosine(num_pairs, key_dim):
    """Mean cosine between recall and stored value, ``(1 + (n - 1)/d_k)^(-1/2)``."""
    n, d = _check_counts(num_pairs, key_dim)
    return (1.0 + (n - 1.0) / d) ** -0.5


def predicted_forgetting(num_pairs: int, key_dim: int, decay: float) -> tuple[np.ndarray, np.ndarray]:
    """Bit error and cosine by age s = 0..n-1 (0 = newest) under constant decay ``a``.

    signal a^s, noise variance ``(sum_j a^(2j) - a^(2s)) / d_k``:
    bit error ``Phi(-a^s / sigma_s)``, cosine ``(1 + sigma_s^2 / a^(2s))^(-1/2)``.
    """
    check_int("num_pairs", num_pairs)
    key_dim = check_number("key_dim", key_dim, low=1.0)
    decay = check_number("decay", decay, low=0.0, high=1.0, low_open=True)
    ages = np.arange(num_pairs, dtype=float)
    power = decay ** (2 * ages)
    noise_variance = (power.sum() - power) / key_dim
    signal = decay ** ages
    with np.errstate(divide="ignore", over="ignore"):  # a^(2s) underflowing: the limits 0.5, 0
        bit_error = _normal_cdf(-signal / np.sqrt(noise_variance))
        cosine = (1.0 + noise_variance / power) ** -0.5
    return bit_error, cosine


def worst_case_capacity(key_dim: int) -> int:
    """Largest n with ``(n - 1) * sqrt(4 ln n / d_k) < 1``: the coherence guarantee, ~sqrt(d_k)."""
    check_int("key_dim", key_dim)
    n = 1
    while (n) * math.sqrt(4 * math.log(n + 1) / key_dim) < 1.0:
        n += 1
    return n


def redundant_heads_bit_error(num_pairs, key_dim, num_heads):
    """Ours: h heads with independent keys, recalls averaged: ``Phi(-sqrt(h d_k / (n-1)))``."""
    check_int("num_heads", num_heads)
    _, d = _check_counts(num_pairs, key_dim)
    return predicted_bit_error(num_pairs, d * num_heads)


def depth_bit_error(bit_error, num_layers: int):
    """Ours: L re-thresholding layers as binary symmetric channels: ``(1 - (1 - 2p)^L) / 2``."""
    check_int("num_layers", num_layers, 0)
    p = _as_array("bit_error", bit_error)
    if not np.all((p >= 0.0) & (p <= 0.5)):
        raise ValueError(f"bit_error must be in [0, 0.5], got {bit_error}")
    return 0.5 * (1.0 - (1.0 - 2.0 * p) ** num_layers)


class RecallStats(NamedTuple):
    """Per trial and item (item n-1 is the newest): arrays of shape [num_trials, num_pairs]."""

    bit_error: np.ndarray    # fraction of value components with the wrong sign
    cosine: np.ndarray       # cos(recall, stored value)
    top1: np.ndarray         # 1.0 when the stored value nearest the recall is the right one


def _generator(seed, device) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator(device=device).manual_seed(torch_seed(seed))


def simulate_recall(num_pairs: int, key_dim: int, value_dim: int = 64, num_trials: int = 20, *,
                    rule: str = "hebbian", decay: float = 1.0, write_strength: float = 1.0,
                    seed=0, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> RecallStats:
    """Store ``num_pairs`` random pairs in ``num_trials`` independent memories, recall each.

    rule ``hebbian``: ``W = sum_i a^(n-1-i) v_i k_i^T``; rule ``delta``: the (gated) delta
    rule with strength ``write_strength`` written in order. Keys unit-norm Gaussian
    directions, values Rademacher, drawn in float64 and cast to ``dtype`` (a seed stores the
    same pairs in every dtype). Counts are ints >= 1, ``decay`` in (0, 1], ``dtype``
    floating.
    """
    check_choice("rule", rule, RULES)
    num_pairs, key_dim, value_dim, num_trials = (check_int(name, value) for name, value in (
        ("num_pairs", num_pairs), ("key_dim", key_dim), ("value_dim", value_dim),
        ("num_trials", num_trials)))
    decay = check_number("decay", decay, low=0.0, high=1.0, low_open=True)
    write_strength = check_number("write_strength", write_strength)
    check_dtype("dtype", dtype)
    check_device("device", device)
    generator = _generator(seed, device)
    # drawn and normalised in float64, then cast: one seed gives the same keys in every dtype
    keys = torch.randn(num_trials, num_pairs, key_dim, generator=generator, device=device,
                       dtype=torch.float64)
    keys = (keys / keys.norm(dim=-1, keepdim=True)).to(dtype)
    values = torch.randint(0, 2, (num_trials, num_pairs, value_dim), generator=generator,
                           device=device).to(dtype) * 2 - 1
    if rule == "hebbian":
        weights = outer_product_memory(keys, values, decay) * write_strength
    else:
        q, k, v = keys[:, :, None], keys[:, :, None], values[:, :, None]   # H = 1
        beta = torch.full(q.shape[:3], write_strength, dtype=dtype, device=device)
        if decay == 1.0:
            _, state = delta_rule(q, k, v, beta, 1.0, output_final_state=True)
        else:
            g = torch.full(q.shape[:3], math.log(decay), dtype=dtype, device=device)
            _, state = gated_delta_rule(q, k, v, g, beta, 1.0, output_final_state=True)
        weights = state[:, 0].transpose(-1, -2).to(dtype)              # W = S^T, [trials, V, K]
    recalled = recall(weights[:, None], keys)                          # [trials, n, V]
    bit_error = (torch.sign(recalled) != values).to(dtype).mean(-1)
    cosine = torch.nn.functional.cosine_similarity(recalled, values, dim=-1)
    top1 = torch.empty(num_trials, num_pairs, dtype=dtype, device=device)
    items = torch.arange(num_pairs, device=device)
    for trial in range(num_trials):                                     # n x n per trial
        nearest = (recalled[trial] @ values[trial].T).argmax(-1)
        top1[trial] = (nearest == items).to(dtype)
    as_numpy = lambda x: x.detach().cpu().double().numpy()
    return RecallStats(as_numpy(bit_error), as_numpy(cosine), as_numpy(top1))
