"""Bad input to the public connectome API: a TypeError / ValueError that names the argument,
raised before any work, never a NaN result, a hang or a traceback from inside numpy/torch."""
import numpy as np
import pytest
import torch

from neuro.connectome import (
    adjusted_rand_index,
    affinity_tensor,
    factor_match_score,
    fit_sbm,
    load_celegans_connectomes,
    louvain_partition,
    make_dynamic_connectome,
    make_planted_cp,
    make_weighted_planted_partition,
    neuron_class,
    ntf,
    pair_graph,
    select_rank,
)
from neuro.connectome.pipeline import fit_dynamic_connectome, recovery_metrics

RNG = np.random.default_rng(0)
TRACES = RNG.random((2, 5, 60))
TENSOR = RNG.random((3, 4, 5)) + 0.1
ADJACENCY = make_weighted_planted_partition(num_nodes=20, num_blocks=2, seed=0)[0]
PAIRS = np.stack(np.triu_indices(5, k=1), axis=1)


def small_connectome(**overrides):
    arguments = {"num_neurons": 6, "num_animals": 2, "num_timesteps": 60, **overrides}
    return make_dynamic_connectome(**arguments)


@pytest.fixture(scope="module")
def small_fit():
    truth = small_connectome()
    fit = fit_dynamic_connectome(truth.traces, window=20, step=10, rank=2, n_iter_max=5,
                                 max_blocks=2)
    return fit, truth


CASES = {
    # affinity_tensor
    "traces None": (lambda: affinity_tensor(None, 10, 5), TypeError, "traces must be a list"),
    "traces 2-D array": (lambda: affinity_tensor(TRACES[0], 10, 5), ValueError,
                         "traces given as one array must be 3-D"),
    "traces complex": (lambda: affinity_tensor(TRACES + 1j, 10, 5), TypeError,
                       r"traces\[0\] must hold real numbers"),
    "traces all NaN": (lambda: affinity_tensor(np.full((1, 5, 60), np.nan), 10, 5), ValueError,
                       "traces hold no window"),
    "traces overflow": (lambda: affinity_tensor(TRACES * 1e200, 10, 5), ValueError,
                        r"traces\[0\] is too large"),
    "neuron_names entry None": (lambda: affinity_tensor(TRACES, 10, 5, neuron_names=[None, None]),
                                TypeError, r"neuron_names\[0\] must be a list of names"),
    "step float": (lambda: affinity_tensor(TRACES, 10, 2.0), TypeError, "step must be an int"),
    "max_bytes None": (lambda: affinity_tensor(TRACES, 10, 5, max_bytes=None), TypeError,
                       "max_bytes must be"),
    "max_bytes negative": (lambda: affinity_tensor(TRACES, 10, 5, max_bytes=-1), ValueError,
                           "max_bytes must be"),
    "affinity device": (lambda: affinity_tensor(TRACES, 10, 5, device="nope"), ValueError,
                        "device must be"),
    # ntf
    "tensor complex": (lambda: ntf(TENSOR + 0j, 2), TypeError, "tensor must hold real numbers"),
    "tensor object": (lambda: ntf(np.array([[1, None], [2, 3]], dtype=object), 1), TypeError,
                      "tensor must hold real numbers"),
    "tensor overflow": (lambda: ntf(TENSOR * 1e160, 2), ValueError, "tensor is too large"),
    "tensor overflow float32": (lambda: ntf(torch.tensor(TENSOR * 1e20, dtype=torch.float32), 2),
                                ValueError, "tensor is too large"),
    "mask all False": (lambda: ntf(TENSOR, 2, mask=np.zeros(TENSOR.shape, bool)), ValueError,
                       "mask has no observed entry"),
    "mask strings": (lambda: ntf(TENSOR, 2, mask=np.full(TENSOR.shape, "y")), TypeError,
                     "mask must hold real numbers"),
    "init array": (lambda: ntf(TENSOR, 2, init=np.ones((3, 4, 2))), TypeError,
                   "init must be 'random' or a list"),
    "init None": (lambda: ntf(TENSOR, 2, init=None), TypeError, "init must be 'random' or a list"),
    "init entry str": (lambda: ntf(TENSOR, 2, init=["a", "b", "c"]), TypeError, r"init\[0\]"),
    "tol None": (lambda: ntf(TENSOR, 2, tol=None), TypeError, "tol must be"),
    "tol inf": (lambda: ntf(TENSOR, 2, tol=float("inf")), ValueError, "tol must be"),
    "inner_tol negative": (lambda: ntf(TENSOR, 2, inner_tol=-1.0), ValueError, "inner_tol must be"),
    "inner_tol NaN": (lambda: ntf(TENSOR, 2, inner_tol=float("nan")), ValueError,
                      "inner_tol must be"),
    "extrapolate str": (lambda: ntf(TENSOR, 2, extrapolate="yes"), TypeError,
                        "extrapolate must be True or False"),
    "callback int": (lambda: ntf(TENSOR, 2, callback=5), TypeError, "callback must be callable"),
    "ntf device": (lambda: ntf(TENSOR, 2, device="nope"), ValueError, "device must be"),
    # select_rank
    "ranks int": (lambda: select_rank(TENSOR, 3), TypeError, "ranks must be a list"),
    "ranks str": (lambda: select_rank(TENSOR, "12"), TypeError, "ranks must be a list"),
    "ranks float entry": (lambda: select_rank(TENSOR, [1, 2.0]), TypeError, r"ranks\[1\]"),
    "min_stability NaN": (lambda: select_rank(TENSOR, [1, 2], min_stability=float("nan")),
                          ValueError, "min_stability must be"),
    "min_stability above 1": (lambda: select_rank(TENSOR, [1, 2], min_stability=2.0), ValueError,
                              "min_stability must be"),
    "min_relative_improvement negative": (
        lambda: select_rank(TENSOR, [1, 2], min_relative_improvement=-1.0), ValueError,
        "min_relative_improvement must be"),
    "min_absolute_improvement negative": (
        lambda: select_rank(TENSOR, [1, 2], min_absolute_improvement=-1e-4), ValueError,
        "min_absolute_improvement must be"),
    "min_relative_improvement None": (
        lambda: select_rank(TENSOR, [1, 2], min_relative_improvement=None), TypeError,
        "min_relative_improvement must be"),
    # factor_match_score
    "model None": (lambda: factor_match_score(None, (np.ones(1), [np.ones((3, 1))])), TypeError,
                   "model_a must be an NTFResult"),
    "model weights NaN": (
        lambda: factor_match_score((np.array([np.nan]), [np.ones((3, 1))]),
                                   (np.ones(1), [np.ones((3, 1))])),
        ValueError, "model_a weights has NaN"),
    "model factor columns": (
        lambda: factor_match_score((np.ones(2), [np.ones((3, 2))] * 2),
                                   (np.ones(2), [np.ones((3, 2)), np.ones((3, 1))])),
        ValueError, r"model_b factors\[1\] must have 2 columns"),
    "model factor 1-D": (
        lambda: factor_match_score((np.ones(1), [np.ones(3)]), (np.ones(1), [np.ones((3, 1))])),
        ValueError, r"model_a factors\[0\] must be 2-D"),
    "weight_penalty str": (
        lambda: factor_match_score((np.ones(1), [np.ones((3, 1))]),
                                   (np.ones(1), [np.ones((3, 1))]), weight_penalty="no"),
        TypeError, "weight_penalty must be True or False"),
    # pair_graph
    "num_neurons too small": (lambda: pair_graph(np.ones(10), PAIRS, 3), ValueError,
                              "num_neurons=3"),
    "num_neurons float": (lambda: pair_graph(np.ones(10), PAIRS, 5.0), TypeError,
                          "num_neurons must be an int"),
    "pairs negative": (lambda: pair_graph(np.ones(10), -PAIRS, 5), ValueError,
                       "pairs must hold neuron indices in"),
    "pairs float": (lambda: pair_graph(np.ones(10), PAIRS + 0.5, 5), TypeError,
                    "pairs must hold integer"),
    "pairs self": (lambda: pair_graph(np.ones(1), np.array([[1, 1]]), 5), ValueError,
                   "pairs must join two different neurons"),
    "pairs duplicate": (lambda: pair_graph(np.ones(2), np.array([[0, 1], [1, 0]]), 5), ValueError,
                        "pairs holds the same neuron pair"),
    "pair_values NaN": (lambda: pair_graph(np.full(10, np.nan), PAIRS, 5), ValueError,
                        "pair_values has NaN"),
    "pair_values None": (lambda: pair_graph(None, PAIRS, 5), TypeError,
                         "pair_values must be an array"),
    # louvain_partition
    "louvain empty": (lambda: louvain_partition(np.zeros((0, 0))), ValueError,
                      "adjacency must have at least one node"),
    "louvain complex": (lambda: louvain_partition(ADJACENCY + 0j), TypeError,
                        "adjacency must hold real numbers"),
    "louvain overflow": (lambda: louvain_partition(ADJACENCY * 1e160), ValueError,
                         "adjacency is too large"),
    "resolution negative": (lambda: louvain_partition(ADJACENCY, resolution=-1.0), ValueError,
                            "resolution must be"),
    "resolution None": (lambda: louvain_partition(ADJACENCY, resolution=None), TypeError,
                        "resolution must be"),
    # adjusted_rand_index
    "labels empty": (lambda: adjusted_rand_index([], []), ValueError,
                     "labels_a must be a non-empty 1-D"),
    "labels None": (lambda: adjusted_rand_index(None, None), TypeError, "labels_a"),
    "labels 2-D": (lambda: adjusted_rand_index([0, 1, 0, 1], [[0, 1], [0, 1]]), ValueError,
                   "labels_b must be a non-empty 1-D"),
    "labels NaN": (lambda: adjusted_rand_index([np.nan, 1.0], [0, 1]), ValueError,
                   "labels_a has NaN"),
    # fit_sbm
    "sbm edgeless num_blocks 0": (lambda: fit_sbm(np.zeros((3, 3)), num_blocks=0), ValueError,
                                  "num_blocks must be >= 1"),
    "sbm edgeless seed None": (lambda: fit_sbm(np.zeros((3, 3)), seed=None), TypeError, "seed"),
    "num_vem_starts 0": (lambda: fit_sbm(ADJACENCY, num_blocks=2, num_vem_starts=0), ValueError,
                         "num_vem_starts must be >= 1"),
    "num_vem_starts negative": (lambda: fit_sbm(ADJACENCY, num_blocks=2, num_vem_starts=-1),
                                ValueError, "num_vem_starts must be >= 1"),
    "num_restarts negative": (lambda: fit_sbm(ADJACENCY, num_blocks=2, num_restarts=-1),
                              ValueError, "num_restarts must be >= 0"),
    "sbm iterations 0": (lambda: fit_sbm(ADJACENCY, num_blocks=2, iterations=0), ValueError,
                         "iterations must be >= 1"),
    "sbm tol NaN": (lambda: fit_sbm(ADJACENCY, num_blocks=2, tol=float("nan")), ValueError,
                    "tol must be"),
    "degree_corrected str": (
        lambda: fit_sbm(ADJACENCY, distribution="poisson", degree_corrected="yes"), TypeError,
        "degree_corrected must be True or False"),
    "sbm complex": (lambda: fit_sbm(ADJACENCY + 0j), TypeError, "adjacency must hold real numbers"),
    "sbm overflow": (lambda: fit_sbm(ADJACENCY * 1e300, num_blocks=2), ValueError,
                     "adjacency is too large"),
    # make_planted_cp
    "shape int": (lambda: make_planted_cp(5, 2), TypeError, "shape must be a list"),
    "shape empty": (lambda: make_planted_cp((), 2), ValueError, "shape must hold at least one"),
    "shape zero": (lambda: make_planted_cp((3, 0, 2), 2), ValueError, r"shape\[1\] must be >= 1"),
    "shape float": (lambda: make_planted_cp((3, 2.5), 2), TypeError, r"shape\[1\] must be an int"),
    "noise inf": (lambda: make_planted_cp((3, 4), 2, noise=float("inf")), ValueError,
                  "noise must be"),
    "noise None": (lambda: make_planted_cp((3, 4), 2, noise=None), TypeError, "noise must be"),
    "planted dtype int": (lambda: make_planted_cp((3, 4), 2, dtype=torch.int32), ValueError,
                          "dtype must be"),
    "planted device": (lambda: make_planted_cp((3, 4), 2, device="nope"), ValueError,
                       "device must be"),
    # make_dynamic_connectome and DynamicConnectome.epoch_indicator
    "participation NaN": (lambda: small_connectome(participation=np.full((2, 3), np.nan)),
                          ValueError, "participation has NaN"),
    "participation shape": (lambda: small_connectome(participation=np.ones((3, 3))), ValueError,
                            "participation must have shape"),
    "participation above 1": (lambda: small_connectome(participation=np.full((2, 3), 1.5)), ValueError,
                              r"participation must lie in \[0, 1\], got max 1.5"),
    "participation silent epoch": (lambda: small_connectome(participation=np.array([[1.0, 0, 1], [1, 0, 1]])),
                                   ValueError, r"participation of epoch\(s\) \[1\] is 0 in every animal"),
    "dt_s inf": (lambda: small_connectome(dt_s=float("inf")), ValueError, "dt_s must be"),
    "dt_s None": (lambda: small_connectome(dt_s=None), TypeError, "dt_s must be"),
    "drive_rate_hz negative": (lambda: small_connectome(drive_rate_hz=-1.0), ValueError,
                               "drive_rate_hz must be"),
    "private_rate_hz NaN": (lambda: small_connectome(private_rate_hz=float("nan")), ValueError,
                            "private_rate_hz must be"),
    "noise_std negative": (lambda: small_connectome(noise_std=-1.0), ValueError,
                           "noise_std must be"),
    "remix_fraction None": (lambda: small_connectome(remix_fraction=None), TypeError,
                            "remix_fraction must be"),
    "indicator window 0": (lambda: small_connectome().epoch_indicator(0, 5), ValueError,
                           "window must be >= 1"),
    "indicator step 0": (lambda: small_connectome().epoch_indicator(10, 0), ValueError,
                         "step must be >= 1"),
    "indicator step float": (lambda: small_connectome().epoch_indicator(10, 2.5), TypeError,
                             "step must be an int"),
    "indicator window too long": (lambda: small_connectome().epoch_indicator(100, 5), ValueError,
                                  r"window \(100\) must be <= num_timesteps \(60\)"),
    # make_weighted_planted_partition
    "num_blocks above num_nodes": (
        lambda: make_weighted_planted_partition(num_nodes=20, num_blocks=30), ValueError,
        r"num_blocks \(30\) must be <= num_nodes \(20\)"),
    "probability_in above 1": (lambda: make_weighted_planted_partition(probability_in=1.5),
                               ValueError, "probability_in must be"),
    "probability_out str": (lambda: make_weighted_planted_partition(probability_out="x"),
                            TypeError, "probability_out must be"),
    "weight_mean_in negative": (lambda: make_weighted_planted_partition(weight_mean_in=-1.0),
                                ValueError, "weight_mean_in must be"),
    "weight_mean_out zero": (lambda: make_weighted_planted_partition(weight_mean_out=0.0),
                             ValueError, "weight_mean_out must be"),
    # C. elegans
    "datasets str": (lambda: load_celegans_connectomes("witvliet_1"), TypeError,
                     "datasets must be a list"),
    "datasets None": (lambda: load_celegans_connectomes(None), TypeError,
                      "datasets must be a list"),
    "neurons_only str": (lambda: load_celegans_connectomes(("witvliet_1",), neurons_only="no"),
                         TypeError, "neurons_only must be True or False"),
    "neuron_class None": (lambda: neuron_class(None), TypeError, "name must be a str"),
    # pipeline: later stages' arguments are checked first (traces=None would fail in stage 1)
    "pipeline rank first": (lambda: fit_dynamic_connectome(None, window=20, step=10, rank=0),
                            ValueError, "rank must be >= 1"),
    "pipeline max_blocks first": (
        lambda: fit_dynamic_connectome(None, window=20, step=10, rank=2, max_blocks=0),
        ValueError, "max_blocks must be >= 1"),
    "pipeline traces NaN": (
        lambda: fit_dynamic_connectome(np.full((2, 6, 60), np.nan), window=20, step=10, rank=2),
        ValueError, "traces hold no window"),
}


@pytest.mark.parametrize("call, error, message", CASES.values(), ids=CASES.keys())
def test_bad_input_raises_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_select_rank_checks_its_own_arguments_before_fitting():
    calls = []
    with pytest.raises(ValueError, match="min_stability must be"):
        select_rank(TENSOR, [1, 2], min_stability=2.0,
                    callback=lambda iteration, factors, error: calls.append(iteration))
    assert calls == []


def test_recovery_metrics_bad_input(small_fit):
    fit, truth = small_fit
    with pytest.raises(TypeError, match="fit must be a DynamicConnectomeFit"):
        recovery_metrics(None, truth)
    with pytest.raises(TypeError, match="truth must be a DynamicConnectome"):
        recovery_metrics(fit, None)
    for other in (small_connectome(num_animals=3), small_connectome(num_timesteps=200),
                  small_connectome(num_neurons=7)):
        with pytest.raises(ValueError, match="truth does not match fit"):
            recovery_metrics(fit, other)


def test_limits_that_stay_allowed():
    """Edge values that are valid keep working: no decay, no memory cap, bool adjacency."""
    assert small_connectome(tau_calcium_s=float("inf")).traces.shape == (2, 6, 60)
    assert affinity_tensor(TRACES, 10, 5, max_bytes=float("inf")).values.shape == (10, 11, 2)
    assert louvain_partition(ADJACENCY > 0).shape == (20,)
    assert ntf(TENSOR, 2, n_iter_max=0).iterations == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is absent")
@pytest.mark.parametrize("call", [
    lambda: ntf(TENSOR, 2, device="cuda"),
    lambda: select_rank(TENSOR, [1], device="cuda"),
    lambda: affinity_tensor(TRACES, 10, 5, device="cuda"),
    lambda: make_planted_cp((3, 4), 2, device="cuda"),
    lambda: fit_dynamic_connectome(TRACES, window=20, step=10, rank=2, device="cuda"),
], ids=["ntf", "select_rank", "affinity_tensor", "make_planted_cp", "pipeline"])
def test_a_cuda_device_without_cuda_is_a_value_error_naming_the_argument(call):
    # was torch's AssertionError "Torch not compiled with CUDA enabled" from the first allocation
    with pytest.raises(ValueError, match="device='cuda'.*no CUDA device"):
        call()


@pytest.mark.parametrize("call, name", [
    (lambda: louvain_partition([[0.0, 1.0], [1.0]]), "adjacency"),
    (lambda: fit_sbm([[0.0, 1.0], [1.0]]), "adjacency"),
    (lambda: affinity_tensor([[[1.0, 2.0, 3.0], [1.0, 2.0]]], 2, 1), r"traces\[0\]"),
    (lambda: ntf(TENSOR, 2, init=[[[1.0, 2.0], [1.0]], np.ones((4, 2)), np.ones((5, 2))]),
     r"init\[0\]"),
    (lambda: pair_graph(np.ones(2), [[0, 1], [2]], 3), "pairs"),
], ids=["louvain", "fit_sbm", "affinity_tensor", "ntf init", "pair_graph"])
def test_ragged_nested_lists_are_a_value_error_naming_the_argument(call, name):
    # was numpy's "setting an array element with a sequence ... inhomogeneous shape"
    with pytest.raises(ValueError, match=f"^{name} must be a .*ragged"):
        call()
