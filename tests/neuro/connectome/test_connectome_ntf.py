"""Non-negative CP: planted recovery, invariants, tensorly from the same initialization."""
import numpy as np
import pytest
import torch

from neuro.connectome.cp_ops import (
    choose_split,
    contract_group,
    cp_reconstruct,
    partial_khatri_rao,
)
from neuro.connectome.ntf import ntf
from neuro.connectome.rank import factor_match_score
from neuro.connectome.synthetic import make_planted_cp

tl = pytest.importorskip("tensorly")

# float64 iterates: HALS decreases the error exactly; the Gram-matrix error formula loses
# ~eps * ||X||^2 / (err * ||X||)^2 ~ 1e-13 relative at err ~ 0.1, so 1e-10 is a safe slack.
MONOTONE_SLACK = 1e-10


def _watch(factors_seen):
    def callback(iteration, factors, error):
        for factor in factors:
            assert torch.isfinite(factor).all(), f"non-finite factor at iteration {iteration}"
            assert (factor >= 0).all(), f"negative factor at iteration {iteration}"
        factors_seen.append(iteration)
    return callback


@pytest.mark.parametrize("shape", [(100, 100, 200, 4), (4950, 100, 6)],
                         ids=["4way-100x100x200x4", "3way-4950x100x6"])
def test_hals_recovers_planted_rank8_at_issue_size(shape):
    torch.set_num_threads(1)
    planted = make_planted_cp(shape, 8, noise=0.1, seed=0)
    seen = []
    fit = ntf(planted.tensor, 8, method="hals", n_iter_max=50, seed=1, callback=_watch(seen))
    assert seen == list(range(1, fit.iterations + 1)) and fit.iterations <= 50
    truth = (torch.ones(8, dtype=torch.float64), planted.factors)
    assert factor_match_score(fit, truth) >= 0.95
    final = float(fit.error_history[-1])
    assert abs(final - planted.noise_floor) <= 0.005, (final, planted.noise_floor)
    history = fit.error_history.numpy()
    assert (np.diff(history) <= MONOTONE_SLACK).all()
    # output contract: unit-norm columns, weights sorted decreasing, non-negative
    assert torch.all(fit.weights[:-1] >= fit.weights[1:])
    for factor in fit.factors:
        assert torch.allclose(torch.linalg.vector_norm(factor, dim=0),
                              torch.ones(8, dtype=torch.float64), atol=1e-12)


def test_mu_error_history_non_increasing_and_nonnegative():
    planted = make_planted_cp((20, 15, 30, 3), 4, noise=0.1, seed=3)
    seen = []
    fit = ntf(planted.tensor, 4, method="mu", n_iter_max=150, seed=0, callback=_watch(seen))
    assert len(seen) == fit.iterations
    assert (np.diff(fit.error_history.numpy()) <= MONOTONE_SLACK).all()
    assert float(fit.error_history[-1]) < planted.noise_floor + 0.05


def test_same_seed_identical_factors_other_seed_differs():
    planted = make_planted_cp((15, 12, 20, 3), 4, noise=0.1, seed=2)
    first = ntf(planted.tensor, 4, n_iter_max=20, seed=7)
    second = ntf(planted.tensor, 4, n_iter_max=20, seed=7)
    third = ntf(planted.tensor, 4, n_iter_max=20, seed=8)
    for a, b in zip(first.factors, second.factors):
        assert torch.equal(a, b)
    assert torch.equal(first.error_history, second.error_history)
    assert not torch.equal(first.factors[0], third.factors[0])


@pytest.mark.parametrize("method", ["hals", "mu"])
@pytest.mark.parametrize("shape", [(30, 20, 25, 4), (40, 30, 6)])
def test_same_iterates_as_tensorly_from_same_initialization(method, shape):
    from tensorly.cp_tensor import CPTensor
    from tensorly.decomposition import non_negative_parafac, non_negative_parafac_hals

    tl.set_backend("numpy")
    rank = 5
    planted = make_planted_cp(shape, rank, noise=0.1, seed=4)
    generator = torch.Generator().manual_seed(11)
    init = [torch.rand(size, rank, generator=generator, dtype=torch.float64) for size in shape]
    iterations = 30
    ours = ntf(planted.tensor, rank, method=method, init=init, n_iter_max=iterations, tol=0.0)
    peer = non_negative_parafac_hals if method == "hals" else non_negative_parafac
    # tol=1e-300 keeps tensorly's error tracking on without stopping early (tol=0 disables it)
    (weights, factors), errors = peer(
        planted.tensor.numpy(), rank, init=CPTensor((np.ones(rank), [f.numpy().copy() for f in init])),
        n_iter_max=iterations, tol=1e-300, return_errors=True)
    assert len(errors) == iterations == ours.iterations
    # float64, identical update order: errors agree to rounding (issue asks 1e-6)
    np.testing.assert_allclose(ours.error_history[1:].numpy(), np.asarray(errors), rtol=0, atol=1e-9)
    peer_model = (torch.as_tensor(weights), [torch.as_tensor(f) for f in factors])
    assert factor_match_score(ours, peer_model) > 1 - 1e-8


def test_float32_matches_float64_fit():
    planted = make_planted_cp((25, 20, 30, 4), 5, noise=0.1, seed=5)
    fit64 = ntf(planted.tensor, 5, n_iter_max=40, tol=0.0, seed=0)
    fit32 = ntf(planted.tensor.float(), 5, n_iter_max=40, tol=0.0, seed=0)
    assert fit32.factors[0].dtype == torch.float32
    # same seed draws the same float64 init; float32 rounding (~1e-7 relative per op) stays
    # far below the 1e-4 bound on the relative error after 40 iterations
    assert abs(float(fit32.error_history[-1]) - float(fit64.error_history[-1])) < 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_gives_cuda_output_and_same_fit():
    planted = make_planted_cp((30, 20, 25, 4), 5, noise=0.1, seed=6)
    cpu = ntf(planted.tensor, 5, n_iter_max=30, tol=0.0, seed=0)
    gpu = ntf(planted.tensor.cuda(), 5, n_iter_max=30, tol=0.0, seed=0)
    assert all(f.is_cuda for f in gpu.factors) and gpu.weights.is_cuda
    # float64 on both devices: different reduction orders, agreement to ~1e-12
    assert abs(float(cpu.error_history[-1]) - float(gpu.error_history[-1])) < 1e-9


def test_all_zero_tensor_returns_zero_factors_with_warning():
    with pytest.warns(RuntimeWarning, match="all zero"):
        fit = ntf(torch.zeros(4, 5, 6, dtype=torch.float64), 3)
    assert all(torch.count_nonzero(f) == 0 for f in fit.factors)
    assert torch.count_nonzero(fit.weights) == 0 and fit.iterations == 0


@pytest.mark.parametrize("shape", [(6, 5, 4), (4, 3, 5, 2), (3, 4, 2, 3, 2), (7, 6)])
def test_partial_khatri_rao_mttkrp_matches_tensorly(shape):
    from tensorly.base import unfold
    from tensorly.tenalg import khatri_rao

    tl.set_backend("numpy")
    rng = np.random.default_rng(0)
    rank = 3
    tensor = torch.from_numpy(rng.random(shape))
    factors = [torch.from_numpy(rng.random((size, rank))) for size in shape]
    split = choose_split(shape)
    matrix = tensor.reshape(int(np.prod(shape[:split])), -1)
    left = (matrix @ partial_khatri_rao(factors[split:])).view(*shape[:split], rank)
    right = (partial_khatri_rao(factors[:split]).t() @ matrix).view(rank, *shape[split:])
    for mode in range(len(shape)):
        others = [f.numpy() for m, f in enumerate(factors) if m != mode]
        expected = unfold(tensor.numpy(), mode) @ khatri_rao(others)
        if mode < split:
            ours = contract_group(left, factors[:split], mode, rank_axis=-1)
        else:
            ours = contract_group(right, factors[split:], mode - split, rank_axis=0)
        np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12, atol=1e-12)
    weights = torch.from_numpy(rng.random(rank))
    np.testing.assert_allclose(cp_reconstruct(weights, factors).numpy(),
                               tl.cp_to_tensor((weights.numpy(), [f.numpy() for f in factors])),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tensor": -np.ones((3, 3, 3))}, "non-negative"),
        ({"tensor": np.full((3, 3, 3), np.nan)}, "NaN or inf"),
        ({"tensor": np.full((3, 3, 3), np.inf)}, "NaN or inf"),
        ({"rank": 0}, "rank must be >= 1"),
        ({"method": "als"}, "method must be"),
        ({"tensor": np.ones(5)}, "at least 2 modes"),
        ({"mask": np.ones((3, 3, 2))}, "mask shape"),
        ({"mask": np.full((3, 3, 3), 2)}, "only 0 and 1"),
        ({"init": [np.ones((3, 2))] * 2}, "init must hold 3"),
        ({"init": "svd"}, "init must be"),
    ],
)
def test_bad_input_raises_clear_value_error(kwargs, message):
    arguments = {"tensor": np.ones((3, 3, 3)), "rank": 2}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ntf(arguments.pop("tensor"), arguments.pop("rank"), **arguments)


def test_rank_of_wrong_type_is_type_error():
    with pytest.raises(TypeError, match="rank"):
        ntf(np.ones((3, 3, 3)), 2.5)


def test_extrapolation_keeps_monotone_errors_and_needs_no_more_iterations():
    planted = make_planted_cp((30, 25, 40, 4), 6, noise=0.1, seed=12)
    generator = torch.Generator().manual_seed(13)
    init = [torch.rand(size, 6, generator=generator, dtype=torch.float64)
            for size in planted.tensor.shape]
    plain = ntf(planted.tensor, 6, init=init, n_iter_max=100, tol=0.0)
    fast = ntf(planted.tensor, 6, init=init, n_iter_max=100, tol=0.0, extrapolate=True)
    mask = torch.rand(planted.tensor.shape, generator=generator) >= 0.2
    masked = ntf(planted.tensor, 6, mask=mask, init=init, n_iter_max=30, tol=0.0, extrapolate=True)
    for fit in (fast, masked):
        assert (np.diff(fit.error_history.numpy()) <= MONOTONE_SLACK).all()
        assert all((f >= 0).all() and torch.isfinite(f).all() for f in fit.factors)
    final = float(plain.error_history[-1])
    assert float(fast.error_history[-1]) <= final + 1e-6

    def iterations_to(history):
        return int(np.argmax(history.numpy() - final <= 1e-4))

    assert iterations_to(fast.error_history) <= iterations_to(plain.error_history)


def test_a_component_the_updates_cannot_revive_is_refused():
    tensor = torch.rand(6, 5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    start = [torch.rand(size, 2, generator=torch.Generator().manual_seed(size), dtype=torch.float64)
             for size in (6, 5, 4)]
    # zero in one mode: HALS revives it (the other two modes' Gram product is non-zero)
    one = [f.clone() for f in start]
    one[1][:, 1] = 0
    revived = ntf(tensor, 2, init=one, n_iter_max=3)
    assert all(bool((factor[:, 1] > 0).any()) for factor in revived.factors)
    # zero in two modes: H[1, 1] = 0 in every mode's update, so it would stay zero forever
    two = [f.clone() for f in one]
    two[2][:, 1] = 0
    with pytest.raises(ValueError, match=r"component 1 is all zero in modes \[1, 2\]; 'hals' can never"):
        ntf(tensor, 2, init=two)
    with pytest.raises(ValueError, match=r"component 0 is all zero in modes \[0, 1, 2\]"):
        ntf(tensor, 2, init=[torch.zeros_like(f) for f in start])
    # multiplicative updates never change a zero entry: one zero column is already dead
    with pytest.raises(ValueError, match=r"component 1 is all zero in modes \[1\]; 'mu' can never"):
        ntf(tensor, 2, init=one, method="mu")


def test_an_input_that_requires_grad_builds_no_graph():
    from neuro.connectome.ntf import ntf

    tensor = torch.rand(5, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = ntf(tensor.requires_grad_(), 2, seed=0, n_iter_max=5)
    assert not result.weights.requires_grad
    assert not any(factor.requires_grad for factor in result.factors)
