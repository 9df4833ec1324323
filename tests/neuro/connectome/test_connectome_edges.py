"""Edges of the connectome pipeline a user reaches: unobserved factor rows, extreme scales,
neuron names that collide as str."""
import warnings

import numpy as np
import pytest
import torch

from neuro.connectome.affinity import affinity_tensor
from neuro.connectome.cp_ops import cp_reconstruct
from neuro.connectome.ntf import ntf
from neuro.connectome.pipeline import fit_dynamic_connectome
from neuro.connectome.rank import factor_match_score
from neuro.connectome.synthetic import make_dynamic_connectome, make_planted_cp


def _planted(shape, rank, seed=0):
    generator = torch.Generator().manual_seed(seed)
    factors = [torch.rand(size, rank, generator=generator, dtype=torch.float64)
               for size in shape]
    return cp_reconstruct(torch.ones(rank, dtype=torch.float64), factors), factors


@pytest.mark.parametrize("method", ["hals", "mu"])
def test_factor_rows_with_no_observed_entry_are_zero_and_do_not_depend_on_the_seed(method):
    tensor = make_planted_cp((8, 9, 7), 2, noise=0.05, seed=1).tensor
    mask = torch.ones(tensor.shape, dtype=torch.bool)
    mask[3] = False  # row 3 of mode 0: never observed
    mask[:, :, 5] = False  # row 5 of mode 2: never observed
    for seed in (0, 1):
        fit = ntf(tensor, 3, method=method, mask=mask, seed=seed, n_iter_max=50)
        assert torch.equal(fit.factors[0][3], torch.zeros(3, dtype=torch.float64))
        assert torch.equal(fit.factors[2][5], torch.zeros(3, dtype=torch.float64))
        # the model at observed entries is untouched: its masked error is the reported one
        # (float64, error read from Gram matrices: ~1e-8 absolute resolution, see NTFResult)
        model = cp_reconstruct(fit.weights, fit.factors)
        error = torch.linalg.vector_norm((model - tensor)[mask]) / torch.linalg.vector_norm(
            tensor[mask])
        assert float(error) == pytest.approx(float(fit.error_history[-1]), abs=1e-7)


def test_pipeline_gives_no_edge_to_pairs_never_recorded_together():
    truth = make_dynamic_connectome(num_neurons=12, num_animals=2, num_timesteps=400, seed=0)
    names = [f"n{i}" for i in range(12)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = fit_dynamic_connectome([truth.traces[0][:8], truth.traces[1][4:]], window=50,
                                     step=25, rank=2, neuron_names=[names[:8], names[4:]],
                                     n_iter_max=60)
    never = ~fit.affinity.mask.any(dim=(1, 2))  # n0..n3 with n8..n11: 16 pairs
    assert int(never.sum()) == 16
    assert float(fit.decomposition.factors[0][never].abs().max()) == 0.0


@pytest.mark.parametrize("scale, dtype", [(1e-170, torch.float64), (1e-22, torch.float32)])
def test_a_tensor_whose_squared_norm_underflows_is_refused(scale, dtype):
    tensor, _ = _planted((6, 7, 8), 3)
    with pytest.raises(ValueError, match=r"tensor is too small for torch.float\d\d: .*rescale"):
        ntf((tensor * scale).to(dtype), 3, n_iter_max=5)


def test_tiny_and_huge_tensors_that_fit_the_dtype_are_recovered_and_scored():
    tensor, factors = _planted((6, 7, 8), 3)
    truth = (torch.ones(3, dtype=torch.float64), factors)
    for scale in (1e-100, 1e150):  # weights ~ scale: FMS compares them, never squares them
        fit = ntf(tensor * scale, 3, n_iter_max=2000, tol=1e-13)
        assert factor_match_score(fit, truth) > 0.999
        assert factor_match_score(fit, fit, weight_penalty=True) == pytest.approx(1.0)


def test_traces_of_tiny_scale_have_the_affinities_of_np_corrcoef():
    rng = np.random.default_rng(0)
    traces = rng.standard_normal((2, 5, 30))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zero-variance warning: no window is flat
        result = affinity_tensor(traces * 1e-170, 10, 10)
    rows, cols = np.triu_indices(5, k=1)
    for animal in range(2):
        for window in range(3):
            segment = traces[animal, :, window * 10:(window + 1) * 10]
            expected = np.abs(np.corrcoef(segment)[rows, cols])
            # float64, 10-sample windows: rounding ~1e-15
            np.testing.assert_allclose(result.values[:, window, animal].numpy(), expected,
                                       atol=1e-12)


def test_neuron_names_equal_as_str_are_duplicates():
    traces = np.random.default_rng(0).standard_normal((2, 3, 20))
    with pytest.raises(ValueError, match=r"neuron_names\[0\] must hold 3 distinct names "
                                         r"\(compared as str\), got 3 \(2 distinct\)"):
        affinity_tensor(list(traces), 5, 5, neuron_names=[[1, "1", "b"], ["a", "b", "c"]])


def test_numpy_views_torch_cannot_wrap_give_the_fit_of_a_plain_copy():
    # np.flip / [::-1] views (negative strides) and big-endian arrays (read from files) are
    # ordinary numpy input; torch.from_numpy refuses both with its own ValueError
    rng = np.random.default_rng(3)
    tensor = rng.random((5, 4, 6))
    mask = rng.random((5, 4, 6)) > 0.2
    init = [rng.random((size, 2)) for size in tensor.shape]
    reference = ntf(tensor, 2, mask=mask, init=init, n_iter_max=5)

    def reversed_view(array, axis):  # the same values, as a view with a negative stride
        view = np.flip(np.flip(array, axis).copy(), axis)
        assert view.strides[axis] < 0 and np.array_equal(view, array)
        return view

    views = ntf(reversed_view(tensor, 0), 2, mask=reversed_view(mask, 1),
                init=[reversed_view(init[0], 0)] + init[1:], n_iter_max=5)
    big_endian = ntf(tensor.astype(">f8"), 2, mask=mask, init=init, n_iter_max=5)
    for fit in (views, big_endian):
        assert torch.equal(fit.weights, reference.weights)
        for ours, theirs in zip(fit.factors, reference.factors):
            assert torch.equal(ours, theirs)
    weights, factors = reference.weights.numpy(), [f.numpy() for f in reference.factors]
    reversed_model = (weights[::-1], [f[:, ::-1] for f in factors])
    assert factor_match_score(reversed_model, (weights, factors)) == pytest.approx(1.0)
