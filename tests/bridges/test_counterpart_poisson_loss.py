"""The next-bin Poisson loss and bits per spike (bridges.poisson_loss) against scipy.stats.poisson."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import poisson

from bridges.poisson_loss import (
    bits_per_spike,
    homogeneous_log_likelihood,
    next_bin_loss,
    poisson_nll,
)

# float64: lgamma and exp agree with scipy's logpmf to a few ulp; 1e-10 relative leaves room
# for the summations over hundreds of entries.
RTOL = 1e-10


def _data(seed=0, batch=3, length=40, neurons=5):
    rng = np.random.default_rng(seed)
    log_rate = rng.normal(-1.0, 0.8, size=(batch, length, neurons))
    counts = rng.poisson(np.exp(rng.normal(-1.0, 0.8, size=(batch, length, neurons))))
    return torch.as_tensor(log_rate), torch.as_tensor(counts, dtype=torch.float64)


def test_elementwise_nll_equals_minus_scipy_logpmf():
    log_rate, counts = _data()
    expected = -poisson.logpmf(counts.numpy(), np.exp(log_rate.numpy()))
    assert np.allclose(poisson_nll(log_rate, counts).numpy(), expected, rtol=RTOL, atol=1e-12)


def test_next_bin_loss_scores_output_t_against_counts_t_plus_1():
    log_rate, counts = _data(1)
    batch, length, neurons = counts.shape
    total = 0.0
    for b in range(batch):
        for t in range(length - 1):
            total -= poisson.logpmf(counts[b, t + 1].numpy(), np.exp(log_rate[b, t].numpy())).sum()
    expected = total / (batch * (length - 1) * neurons)
    assert float(next_bin_loss(log_rate, counts)) == pytest.approx(expected, rel=RTOL)


def test_mask_selects_the_scored_predictions():
    log_rate, counts = _data(2)
    mask = torch.zeros(3, 39, dtype=torch.bool)
    mask[1, 5:20] = True
    expected = -poisson.logpmf(counts[1, 6:21].numpy(), np.exp(log_rate[1, 5:20].numpy())).sum() / (15 * 5)
    assert float(next_bin_loss(log_rate, counts, mask)) == pytest.approx(expected, rel=RTOL)
    # nothing scored: a zero loss with a zero gradient (not 0/0 = NaN)
    log_rate.requires_grad_(True)
    empty = next_bin_loss(log_rate, counts, torch.zeros_like(mask))
    empty.backward()
    assert float(empty.detach()) == 0.0 and torch.equal(log_rate.grad, torch.zeros_like(log_rate))


def test_an_unscored_overflowing_or_nan_output_changes_neither_loss_nor_gradient():
    # was: the masked loss was `loss * mask`, so exp(1000) = inf at a padded position gave
    # inf * 0 = NaN for the loss and for the gradient of that position
    log_rate, counts = _data(4)
    mask = torch.ones(3, 39, dtype=torch.bool)
    mask[0, 30:] = False                                                # padding of sequence 0
    padded = log_rate.clone()
    padded[0, 30] = 1000.0
    padded[0, 31] = float("nan")
    clean, poisoned = log_rate.clone().requires_grad_(True), padded.requires_grad_(True)
    expected, got = next_bin_loss(clean, counts, mask), next_bin_loss(poisoned, counts, mask)
    expected.backward()
    got.backward()
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=RTOL)
    assert torch.isfinite(poisoned.grad).all()
    assert torch.equal(poisoned.grad[0, 30:], torch.zeros(10, 5, dtype=torch.float64))
    assert torch.allclose(poisoned.grad, clean.grad, rtol=RTOL, atol=0)


def test_bits_per_spike_against_scipy_and_zero_for_the_mean_rate_model():
    _, counts = _data(3)
    counts = counts[0]                                                  # [T, N]
    rate = counts.mean(0).clamp_min(1e-12).numpy()
    baseline = poisson.logpmf(counts.numpy(), rate[None]).sum()
    assert float(homogeneous_log_likelihood(counts)) == pytest.approx(baseline, rel=RTOL)
    assert bits_per_spike(baseline, counts) == pytest.approx(0.0, abs=1e-9)
    better = baseline + 10.0
    assert bits_per_spike(better, counts) == pytest.approx(10.0 / (float(counts.sum()) * math.log(2)), rel=RTOL)


def test_bad_arguments():
    log_rate, counts = _data()
    with pytest.raises(ValueError, match="same shape"):
        poisson_nll(log_rate[:, :-1], counts)
    with pytest.raises(ValueError, match="non-negative"):
        poisson_nll(log_rate, -counts - 1)
    with pytest.raises(ValueError, match="mask"):
        next_bin_loss(log_rate, counts, torch.ones(3, 40, dtype=torch.bool))
    with pytest.raises(TypeError, match="torch tensors"):
        poisson_nll(log_rate.numpy(), counts)
