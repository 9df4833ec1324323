"""Affinity tensors against per-window numpy/scipy references; masks, layouts, bad input."""
import warnings

import numpy as np
import pytest
import torch

from neuro.connectome.affinity import affinity_tensor, pair_index


def _traces(seed, animals=2, neurons=6, timesteps=120):
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((animals, 1, timesteps))
    return rng.standard_normal((animals, neurons, timesteps)) + 0.8 * shared


@pytest.mark.parametrize("measure", ["abs_correlation", "positive_correlation", "spearman"])
def test_pairs_layout_matches_reference(measure):
    from scipy.stats import spearmanr

    traces = _traces(0)
    window, step = 30, 20
    result = affinity_tensor(traces, window, step, measure=measure)
    num_windows = (traces.shape[2] - window) // step + 1
    assert result.values.shape == (15, num_windows, 2) and result.mask.all()
    assert np.array_equal(result.window_starts, np.arange(num_windows) * step)
    for a in range(2):
        for w in range(num_windows):
            segment = traces[a, :, w * step:w * step + window]
            for p, (i, j) in enumerate(result.pairs):
                if measure == "spearman":
                    rho = spearmanr(segment[i], segment[j]).statistic
                else:
                    rho = np.corrcoef(segment[i], segment[j])[0, 1]
                expected = max(rho, 0.0) if measure == "positive_correlation" else abs(rho)
                # float64 throughout: agreement to rounding
                assert float(result.values[p, w, a]) == pytest.approx(expected, abs=1e-12)


def test_spearman_with_ties_equals_scipy_and_a_constant_window_is_zero_with_a_warning():
    from scipy.stats import spearmanr

    # integer-valued traces: many ties in every window (scipy averages tied ranks);
    # neuron 3 is constant in window 0
    rng = np.random.default_rng(3)
    traces = rng.integers(0, 4, size=(1, 4, 40)).astype(float)
    traces[0, 3, :20] = 2.0
    with pytest.warns(RuntimeWarning, match="1 \\(neuron, window\\) cells have zero variance"):
        result = affinity_tensor(traces, 20, 20, measure="spearman")
    for w in range(2):
        segment = traces[0, :, w * 20:(w + 1) * 20]
        for p, (i, j) in enumerate(result.pairs):
            if w == 0 and 3 in (i, j):
                assert float(result.values[p, w, 0]) == 0.0
                continue
            expected = abs(spearmanr(segment[i], segment[j]).statistic)
            assert float(result.values[p, w, 0]) == pytest.approx(expected, abs=1e-12)


def test_pair_order_is_row_major_upper_triangle():
    assert pair_index(4).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]


def test_square_layout_is_symmetric_with_masked_diagonal_and_matches_pairs():
    traces = _traces(1)
    pairs = affinity_tensor(traces, 40, 40)
    square = affinity_tensor(traces, 40, 40, layout="square")
    assert square.values.shape == (6, 6, 3, 2)
    assert torch.equal(square.values, square.values.transpose(0, 1))
    assert not square.mask[torch.arange(6), torch.arange(6)].any()
    i, j = pairs.pairs[:, 0], pairs.pairs[:, 1]
    assert torch.equal(square.values[i, j], pairs.values)


def test_missing_neurons_and_nan_windows_are_masked_not_nan():
    traces = _traces(2)
    traces[0, 3, :] = np.nan  # neuron 3 not identified in animal 0
    traces[1, 1, 50] = np.nan  # one bad sample: only windows containing it are masked
    result = affinity_tensor(traces, 30, 30)
    assert torch.isfinite(result.values).all()
    involves_3 = (result.pairs == 3).any(axis=1)
    assert not result.mask[involves_3, :, 0].any() and result.mask[~involves_3, :, 0].all()
    assert (result.values[~result.mask] == 0).all()
    involves_1 = (result.pairs == 1).any(axis=1)
    assert not result.mask[involves_1, 1, 1].any()  # window [30, 60) holds t = 50
    assert result.mask[involves_1, 0, 1].all() and result.mask[involves_1, 2, 1].all()


def test_zero_variance_window_gives_zero_with_one_warning():
    traces = _traces(3)
    traces[0, 2, :30] = 5.0
    traces[1, 4, 30:60] = 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = affinity_tensor(traces, 30, 30)
    relevant = [w for w in caught if "zero variance" in str(w.message)]
    assert len(relevant) == 1 and "2 (neuron, window)" in str(relevant[0].message)
    involves = (result.pairs == 2).any(axis=1)
    assert (result.values[involves, 0, 0] == 0).all() and result.mask[involves, 0, 0].all()
    assert torch.isfinite(result.values).all()


def test_names_align_animals_with_different_neuron_sets():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 80))
    b = rng.standard_normal((4, 80))
    result = affinity_tensor([a, b], 40, 20, neuron_names=[["x", "y", "z"], ["w", "z", "y", "x"]])
    assert result.neuron_names == ("w", "x", "y", "z")
    involves_w = (result.pairs == 0).any(axis=1)
    assert not result.mask[involves_w, :, 0].any() and result.mask[:, :, 1].all()
    reference = affinity_tensor([a], 40, 20)  # row 0 = pair (x, y) of animal 0
    # pair (x, y) in animal 0 equals the correlation of a[0], a[1]
    p = int(np.nonzero((result.pairs == [1, 2]).all(axis=1))[0][0])
    assert torch.allclose(result.values[p, :, 0], reference.values[0, :, 0])


def test_unequal_lengths_pad_and_mask():
    rng = np.random.default_rng(5)
    result = affinity_tensor([rng.standard_normal((4, 100)), rng.standard_normal((4, 60))], 20, 20)
    assert result.values.shape[1] == 5
    assert result.mask[:, :3, 1].all() and not result.mask[:, 3:, 1].any()


@pytest.mark.parametrize(
    "traces, kwargs, message",
    [
        (np.zeros((1, 2, 50)), {}, "at least 3 neurons"),
        (np.zeros((1, 4, 50)), {"window": 60}, "window \\(60\\) must be <="),
        (np.zeros((1, 4, 50)), {"step": 0}, "step must be >= 1"),
        (np.zeros((1, 4, 50)), {"step": -2}, "step must be >= 1"),
        (np.zeros((1, 4, 50)), {"measure": "mi"}, "measure must be one of"),
        (np.zeros((1, 4, 50)), {"layout": "cube"}, "layout must be"),
        ([np.zeros((4, 50)), np.zeros((5, 50))], {}, "no neuron_names"),
        (np.zeros((1, 4, 50)), {"max_bytes": 100}, "above max_bytes=100"),
        ([np.zeros((4, 50))], {"neuron_names": [["a", "a", "b", "c"]]}, "distinct names"),
    ],
)
def test_bad_input_raises_value_error(traces, kwargs, message):
    arguments = {"window": 10, "step": 5}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        affinity_tensor(traces, arguments.pop("window"), arguments.pop("step"), **arguments)
