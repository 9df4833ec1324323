"""End to end on the synthetic dynamic connectome: every planted block is recovered."""
import numpy as np
import pytest
import torch

from neuro.connectome.community import adjusted_rand_index
from neuro.connectome.pipeline import fit_dynamic_connectome, recovery_metrics
from neuro.connectome.synthetic import make_dynamic_connectome


@pytest.mark.parametrize("measure", ["abs_correlation", "spearman"])
def test_every_planted_epoch_community_block_is_recovered(measure):
    torch.set_num_threads(1)
    truth = make_dynamic_connectome(num_neurons=60, num_animals=4, num_timesteps=3000,
                                    num_epochs=3, num_communities=3, seed=1)
    # rank = epochs + 1: one extra component absorbs the |rho| bias of independent traces
    fit = fit_dynamic_connectome(truth.traces, window=100, step=50, rank=4, measure=measure,
                                 seed=0)
    metrics = recovery_metrics(fit, truth)
    assert len(set(metrics["matched_component"].tolist())) == 3  # distinct components
    assert (metrics["time_correlation"] >= 0.9).all(), metrics
    assert (metrics["animal_cosine"] >= 0.95).all(), metrics
    # community ARI covers all blocks (e, c) of epoch e at once
    assert (metrics["sbm_ari"] >= 0.9).all(), metrics
    assert (metrics["louvain_ari"] >= 0.9).all(), metrics


def test_generator_ground_truth_is_consistent():
    truth = make_dynamic_connectome(num_neurons=12, num_animals=2, num_timesteps=300,
                                    num_epochs=3, num_communities=2, remix_fraction=0.5, seed=0)
    assert truth.traces.shape == (2, 12, 300) and truth.labels.shape == (3, 12)
    assert np.bincount(truth.epoch_of_time).tolist() == [100, 100, 100]
    assert all(np.bincount(labels).tolist() == [6, 6] for labels in truth.labels)
    indicator = truth.epoch_indicator(50, 25)
    np.testing.assert_allclose(indicator.sum(0), 1.0)
    assert indicator[0, 0] == 1.0 and indicator[:, 3].tolist() == [0.5, 0.5, 0.0]
    again = make_dynamic_connectome(num_neurons=12, num_animals=2, num_timesteps=300,
                                    num_epochs=3, num_communities=2, remix_fraction=0.5, seed=0)
    assert np.array_equal(truth.traces, again.traces)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_neurons": 2}, "num_neurons must be >= 3"),
        ({"num_communities": 100}, "num_communities"),
        ({"remix_fraction": 1.5}, "remix_fraction"),
        ({"participation": -np.ones((4, 3))}, "participation"),
        ({"tau_calcium_s": 0.0}, "tau_calcium_s"),
    ],
)
def test_generator_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_dynamic_connectome(**kwargs)


def test_a_fit_made_with_names_is_scored_in_its_own_neuron_order():
    # names n0..n11 sort as n0, n1, n10, n11, n2, ...: the fit's neuron axis is in that order,
    # and the true labels were compared by position (silently the wrong neurons)
    truth = make_dynamic_connectome(num_neurons=12, num_animals=2, num_timesteps=600,
                                    num_epochs=2, num_communities=2, seed=3)
    names = [f"n{i}" for i in range(12)]
    plain = fit_dynamic_connectome(truth.traces, window=100, step=50, rank=3, seed=0, n_iter_max=50)
    named = fit_dynamic_connectome(truth.traces, window=100, step=50, rank=3, seed=0, n_iter_max=50,
                                   neuron_names=[names, names])
    order = [int(name[1:]) for name in named.affinity.neuron_names]
    assert order != sorted(order)
    expected = recovery_metrics(plain, truth)
    got = recovery_metrics(named, truth, neuron_names=names)
    # the named fit is the plain one with its neurons permuted (its NTF sums the pair rows in
    # another order, so the time courses differ in the 5th digit): the same partitions
    assert expected["louvain_ari"].tolist() == [1.0, 1.0]
    for key in ("matched_component", "sbm_ari", "louvain_ari"):
        assert np.array_equal(got[key], expected[key]), key
    by_position = [adjusted_rand_index(named.louvain_labels[r], truth.labels[e])
                   for e, r in enumerate(got["matched_component"])]
    assert max(by_position) < 0.5  # what the old comparison scored
    with pytest.raises(ValueError, match="pass neuron_names"):
        recovery_metrics(named, truth)
    with pytest.raises(ValueError, match="leave neuron_names out"):
        recovery_metrics(plain, truth, neuron_names=names)
    with pytest.raises(ValueError, match="must hold the fit's 12 neuron names once each"):
        recovery_metrics(named, truth, neuron_names=names[:-1] + ["x"])
    # a truth of 13 neurons, one name given twice: every fit name is there, and picking one
    # column per name scored 12 of its neurons as if they were the fit's (no error)
    larger = make_dynamic_connectome(num_neurons=13, num_animals=2, num_timesteps=600,
                                     num_epochs=2, num_communities=2, seed=3)
    with pytest.raises(ValueError, match="must hold the fit's 12 neuron names once each"):
        recovery_metrics(named, larger, neuron_names=names + ["n0"])


def test_an_undefined_time_correlation_is_nan_not_zero():
    # one epoch: its indicator is 1 in every window, so no correlation is defined (was 0.0,
    # with numpy's divide warning)
    truth = make_dynamic_connectome(num_neurons=12, num_animals=2, num_timesteps=600, num_epochs=1,
                                    num_communities=2, seed=3)
    fit = fit_dynamic_connectome(truth.traces, window=100, step=50, rank=2, seed=0, n_iter_max=50)
    metrics = recovery_metrics(fit, truth)
    assert np.isnan(metrics["time_correlation"]).all() and metrics["matched_component"].tolist() == [0]
