"""Capacity theory of the Hebbian memory: closed forms and Monte-Carlo agreement."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from bridges.pavlovian import (
    depth_bit_error,
    predicted_bit_error,
    predicted_cosine,
    predicted_forgetting,
    redundant_heads_bit_error,
    simulate_recall,
    worst_case_capacity,
)


def test_closed_forms():
    assert predicted_bit_error(1, 64) == 0.0
    assert predicted_bit_error(65, 64) == pytest.approx(norm.cdf(-1.0), abs=1e-15)
    assert predicted_cosine(1, 64) == 1.0
    assert predicted_cosine(65, 64) == pytest.approx(2 ** -0.5, abs=1e-15)
    n = np.array([2, 10, 100, 1000])
    assert np.all(np.diff(predicted_bit_error(n, 64)) > 0)
    assert np.all(np.diff(predicted_cosine(n, 64)) < 0)
    # The law depends on d_k / (n - 1) alone.
    assert predicted_bit_error(33, 32) == pytest.approx(predicted_bit_error(257, 256), abs=1e-15)


def test_forgetting_without_decay_is_the_capacity_law():
    bit_error, cosine = predicted_forgetting(50, 64, 1.0)
    assert np.allclose(bit_error, predicted_bit_error(50, 64), atol=1e-15)
    assert np.allclose(cosine, predicted_cosine(50, 64), atol=1e-15)
    decayed, _ = predicted_forgetting(50, 64, 0.95)
    assert np.all(np.diff(decayed) > 0)            # older items are recalled worse
    assert decayed[0] < predicted_bit_error(50, 64)  # the newest beats the no-decay memory


def test_labelled_extensions():
    p = predicted_bit_error(100, 64)
    assert redundant_heads_bit_error(100, 64, 1) == pytest.approx(p)
    assert redundant_heads_bit_error(100, 64, 4) == pytest.approx(predicted_bit_error(100, 256))
    assert depth_bit_error(p, 1) == pytest.approx(p)
    # Two binary symmetric channels: flipped once, not twice.
    assert depth_bit_error(p, 2) == pytest.approx(2 * p * (1 - p))
    capacities = [worst_case_capacity(d) for d in (64, 256, 1024, 4096)]
    assert capacities == sorted(capacities)
    assert capacities[-1] < 0.1 * 4096            # far below the O(d_k) average case


@pytest.mark.parametrize("key_dim,ratio", [(32, 0.5), (64, 1.0), (128, 2.0)])
def test_simulation_matches_theory(key_dim, ratio):
    stats = simulate_recall(int(ratio * key_dim), key_dim, value_dim=64, num_trials=40, seed=3)
    # 40 trials x n x 64 bits; binomial standard error <= 0.002 at these sizes, so 0.008
    # (the theory is a Gaussian approximation of the crosstalk) is about 4 standard errors.
    assert abs(stats.bit_error.mean() - predicted_bit_error(int(ratio * key_dim), key_dim)) < 0.008
    assert abs(stats.cosine.mean() - predicted_cosine(int(ratio * key_dim), key_dim)) < 0.01


def test_forgetting_simulation_follows_theory():
    stats = simulate_recall(64, 64, value_dim=64, num_trials=200, decay=0.97, seed=5)
    theory, _ = predicted_forgetting(64, 64, 0.97)
    measured = stats.bit_error.mean(0)[::-1]       # by age, 0 = newest
    # 200 trials x 64 bits per age: standard error <= 0.0025 per age; mean over ages tighter.
    assert np.abs(measured - theory).mean() < 0.005


def test_delta_rule_recalls_the_newest_item_beyond_capacity():
    stats = simulate_recall(256, 32, value_dim=32, num_trials=10, rule="delta", seed=1)
    assert stats.bit_error[:, -1].max() == 0.0     # beta = 1, unit keys: newest exact
    hebbian = simulate_recall(256, 32, value_dim=32, num_trials=10, rule="hebbian", seed=1)
    assert hebbian.bit_error[:, -1].mean() > 0.2   # crosstalk at n/d_k = 8


def test_seed_reproducible_and_validated():
    a = simulate_recall(20, 16, num_trials=3, seed=np.random.default_rng(4))
    b = simulate_recall(20, 16, num_trials=3, seed=np.random.default_rng(4))
    assert np.array_equal(a.bit_error, b.bit_error)
    with pytest.raises(ValueError, match="rule must be one of"):
        simulate_recall(20, 16, rule="oja")
    with pytest.raises(ValueError, match="num_pairs must be finite and >= 1"):
        predicted_bit_error(0, 16)
    with pytest.raises(TypeError, match="seed must be"):
        simulate_recall(20, 16, seed="zero")


def test_one_seed_stores_the_same_pairs_in_every_dtype():
    # keys were drawn in the requested dtype: torch's float32 and float64 streams differ, so a
    # dtype comparison compared different memories (cosines up to ~0.15 apart)
    low, high = (simulate_recall(24, 16, num_trials=4, seed=7, dtype=dtype)
                 for dtype in (torch.float32, torch.float64))
    # float32's recall rounds at ~1e-7 relative: a sign flip is possible only for a
    # component within that of zero, none at these sizes
    assert np.allclose(low.cosine, high.cosine, atol=1e-5)
    assert np.array_equal(low.bit_error, high.bit_error)
