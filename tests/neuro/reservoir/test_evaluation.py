"""Scores of the what/when study against closed forms and scipy."""
import numpy as np
import pytest
from scipy.linalg import subspace_angles

from neuro.reservoir import evaluation as ev


def test_peak_time_and_fitted_height_recover_a_scaled_shifted_bump():
    bin_ms = 5.0
    time_ms = (np.arange(200) + 0.5) * bin_ms
    shape = np.exp(-0.5 * ((time_ms - 402.5) / 25.0) ** 2)
    output = 0.37 * shape
    assert ev.peak_times_ms(output, bin_ms) == 402.5
    # a larger bump before the search start is ignored
    early = output + 2.0 * np.exp(-0.5 * ((time_ms - 102.5) / 10.0) ** 2)
    assert ev.peak_times_ms(early, bin_ms, search_from_ms=200.0) == 402.5
    heights = ev.fitted_heights(np.stack([output, 0 * shape], -1), np.stack([shape, 0 * shape], -1))
    assert np.isclose(heights[0], 0.37, rtol=1e-12) and np.isnan(heights[1])
    with pytest.raises(ValueError, match="search_from_ms"):
        ev.peak_times_ms(output, bin_ms, search_from_ms=5000.0)


def test_trial_performance_limits():
    rng = np.random.default_rng(0)
    ideal = rng.random((4, 30, 3))
    perfect = ideal[:, None]
    assert np.allclose(ev.trial_performance(perfect, ideal, [0, 2]), 1.0)
    assert np.allclose(ev.trial_performance(0 * perfect, ideal, [1]), 0.0)
    half = 0.5 * perfect
    assert np.allclose(ev.trial_performance(half, ideal, [0, 1, 2]), 0.75)
    mask = np.zeros_like(ideal, dtype=bool)
    mask[:, :10] = True
    spoiled = perfect.copy()
    spoiled[:, :, 10:] += 5.0  # errors outside the mask do not count
    assert np.allclose(ev.trial_performance(spoiled, ideal, [0, 1], mask=mask), 1.0)


def test_recovery_trials_on_a_known_sequence():
    performance = np.array([0.8] * 10 + [0.1, 0.2, 0.5, 0.7, 0.75, 0.8, 0.8, 0.8, 0.8, 0.8])
    trials, reference = ev.recovery_trials(performance, 10, reference_trials=10, window=2)
    assert reference == pytest.approx(0.8)
    # windows of 2 from the switch: means .15 .35 .6 .725 .775 ...; 0.9 * 0.8 = 0.72 first at k=3
    assert trials == 3
    never = ev.recovery_trials(np.array([1.0] * 10 + [0.0] * 5), 10, reference_trials=10)
    assert never[0] == float("inf")
    assert ev.recovery_trials(np.ones(20), 10, reference_trials=10)[0] == 0
    negative = np.array([-1.0] * 10 + [-3.0, -1.2, -1.05, -1.0])
    assert ev.recovery_trials(negative, 10, reference_trials=10, window=1)[0] == 2  # threshold -1.1
    with pytest.raises(ValueError, match="reference_trials"):
        ev.recovery_trials(np.ones(20), 5, reference_trials=10)


def test_principal_angles_match_scipy():
    rng = np.random.default_rng(1)
    first, second = rng.standard_normal((3, 20)), rng.standard_normal((2, 20))
    ours = ev.principal_angles_deg(first, second)
    theirs = np.sort(np.degrees(subspace_angles(first.T, second.T)))
    assert np.allclose(ours, theirs, atol=1e-8)
    assert np.allclose(ev.principal_angles_deg(first, first[:1] * 3 + first[1:2]), 0.0, atol=1e-6)
    orthogonal = ev.principal_angles_deg(np.eye(4)[:2], np.eye(4)[2:])
    assert np.allclose(orthogonal, 90.0)
    with pytest.raises(ValueError, match="non-zero"):
        ev.principal_angles_deg(np.zeros((1, 4)), np.eye(4)[:1])


def test_random_subspaces_are_near_orthogonal_in_high_dimension():
    angles = ev.random_subspace_angles_deg(3, 1, 1000, samples=50)
    # cos of the angle ~ sqrt(k / D) for a k-dim subspace: ~3.1 deg from 90 at k=3, D=1000
    assert 84.0 < np.median(angles) < 89.5


def test_height_performance_and_trials_until_within():
    truth = np.array([[0.5, 0.3, 0.1], [0.1, 0.3, 0.5]])
    assert np.allclose(ev.height_performance(truth, truth), 1.0)
    assert np.allclose(ev.height_performance(0 * truth, truth), 0.0)
    assert np.allclose(ev.height_performance(truth + 0.1, truth), 1 - 0.03 / 0.35)
    deviation = np.array([0.0] * 5 + [100, 90, 80, 20, 10, 5, 5, 5])
    # windows of 3 from trial 5: medians 90, 80, 20, 10, 5, 5 -> first <= 12.5 at k = 3
    assert ev.trials_until_within(deviation, 5, 12.5, window=3) == 3
    assert ev.trials_until_within(deviation, 5, 1.0, window=3) == float("inf")


def test_scores_refuse_a_target_with_no_power_and_mismatched_shapes():
    # 1 - ||z - y||^2 / ||y||^2 is 0/0 where the target is zero: a named error, not NaN
    rng = np.random.default_rng(2)
    ideal = rng.random((4, 30, 3))
    ideal[2, :, 1] = 0.0
    output = ideal[:, None].repeat(2, axis=1)
    assert np.allclose(ev.trial_performance(output, ideal, [0, 1]), 1.0)  # column 0 carries trial 2
    with pytest.raises(ValueError, match=r"ideal \(over the mask and columns\) is zero or not finite in trials \[2\]"):
        ev.trial_performance(output, ideal, [1])
    mask = np.ones_like(ideal, dtype=bool)
    mask[3] = False
    with pytest.raises(ValueError, match=r"is zero or not finite in trials \[3\]"):
        ev.trial_performance(output, ideal, [0], mask=mask)
    with pytest.raises(ValueError, match="output must be"):
        ev.trial_performance(output[:, :, :20], ideal, [0])
    with pytest.raises(ValueError, match="mask must have ideal's shape"):
        ev.trial_performance(output, ideal, [0], mask=mask[:, :20])
    truth = np.array([[0.5, 0.3, 0.2], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"truth is zero or not finite in trials \[1\]"):
        ev.height_performance(truth, truth)
    with pytest.raises(ValueError, match="must have one shape"):
        ev.height_performance(truth[:, :2], truth)
    nan_truth = truth.copy()
    nan_truth[1] = (0.2, np.nan, 0.1)
    with pytest.raises(ValueError, match=r"truth is zero or not finite in trials \[1\]"):
        ev.height_performance(truth, nan_truth)
    # no trials: empty scores, not an error
    assert ev.height_performance(truth[:0], truth[:0]).shape == (0,)
    assert ev.trial_performance(output[:0], ideal[:0], [0]).shape == (0, 2)


def test_scores_take_plain_lists_and_name_a_wrong_shape():
    # a list of per-trial scores stopped with AttributeError ('list' object has no attribute 'shape')
    performance = [0.8] * 10 + [0.1, 0.2, 0.85, 0.9, 0.9, 0.9, 0.9, 0.9]
    assert ev.recovery_trials(performance, 10, window=3) == ev.recovery_trials(np.array(performance), 10, window=3)
    assert ev.recovery_trials(performance, 10, window=3) == (2.0, pytest.approx(0.8))
    assert ev.peak_times_ms([[0.0, 3.0, 1.0]], 5.0).tolist() == [7.5]
    with pytest.raises(ValueError, match=r"performance must be \[trials\]"):
        ev.recovery_trials(np.ones((20, 2)), 10)  # was numpy's "object too deep for desired array"


def test_trial_performance_names_bad_columns():
    output, ideal = np.ones((2, 1, 4, 3)), np.ones((2, 4, 3))
    assert np.allclose(ev.trial_performance(output, ideal, [-1]), 1.0)  # numpy's negative index
    for columns in ([3], [], [0.5], [True]):  # [3] was numpy's IndexError
        with pytest.raises(ValueError, match=r"columns must be readout indices in \[-3, 3\)"):
            ev.trial_performance(output, ideal, columns)
