"""The dynamic-connectome pipeline of Dyballa et al. (arXiv 2402.14102), end to end.

traces -> affinity tensor (pairs x windows x animals, masked where neurons are missing) ->
non-negative CP -> for each component r, the pair factor a_0r as a weighted graph on the neurons
-> weighted-SBM communities (and Louvain as the baseline). `recovery_metrics` scores a fit
against a synthetic ground truth (`make_dynamic_connectome`): each epoch e is matched to the
component whose time course correlates best with the epoch indicator; that component must also
carry the animals' participation (cosine of loadings) and the epoch's communities (ARI). The
blocks (e, c) of an epoch are recovered together: one rank-1 term carries all communities of
an epoch, because they share its time course and animal loadings.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from neuro.connectome._checks import (
    Seed,
    check_choice,
    check_positive_int,
    check_real,
    check_sequence,
    numpy_generator,
)
from neuro.connectome.affinity import AffinityTensor, affinity_tensor
from neuro.connectome.community import adjusted_rand_index, louvain_partition, pair_graph
from neuro.connectome.ntf import METHODS, NTFResult, ntf
from neuro.connectome.sbm import fit_sbm
from neuro.connectome.synthetic import DynamicConnectome

__all__ = ["DynamicConnectomeFit", "fit_dynamic_connectome", "recovery_metrics"]


class DynamicConnectomeFit(NamedTuple):
    """affinity; decomposition; sbm_labels and louvain_labels (R, N) communities of each
    component's pair graph; window, step."""

    affinity: AffinityTensor
    decomposition: NTFResult
    sbm_labels: np.ndarray
    louvain_labels: np.ndarray
    window: int
    step: int


def fit_dynamic_connectome(
    traces,
    *,
    window: int,
    step: int,
    rank: int,
    measure: str = "abs_correlation",
    method: str = "hals",
    n_iter_max: int = 500,
    tol: float = 1e-8,
    max_blocks: int = 8,
    neuron_names: Sequence[Sequence[str]] | None = None,
    seed: Seed = 0,
    device: str = "cpu",
) -> DynamicConnectomeFit:
    """Run the pipeline of the module docstring; seeds of the three random stages are spawned
    from `seed`. The arguments of the later stages are checked before the first runs."""
    rank = check_positive_int("rank", rank)
    check_choice("method", method, METHODS)
    check_positive_int("n_iter_max", n_iter_max, minimum=0)
    check_real("tol", tol, 0)
    check_positive_int("max_blocks", max_blocks)
    rng = numpy_generator(seed)
    ntf_seed, sbm_seed, louvain_seed = (int(s) for s in rng.integers(0, 2**62, size=3))
    affinity = affinity_tensor(traces, window, step, measure=measure, neuron_names=neuron_names,
                               device=device)
    mask = None if bool(affinity.mask.all()) else affinity.mask
    decomposition = ntf(affinity.values, rank, method=method, mask=mask, n_iter_max=n_iter_max,
                        tol=tol, seed=ntf_seed)
    num_neurons = int(affinity.pairs.max()) + 1
    pair_factor = decomposition.factors[0].detach().cpu().numpy()
    sbm_labels = np.zeros((rank, num_neurons), dtype=np.int64)
    louvain_labels = np.zeros((rank, num_neurons), dtype=np.int64)
    for component in range(rank):
        graph = pair_graph(pair_factor[:, component], affinity.pairs, num_neurons)
        sbm_labels[component] = fit_sbm(graph, max_blocks=max_blocks, seed=sbm_seed).labels
        louvain_labels[component] = louvain_partition(graph, seed=louvain_seed)
    return DynamicConnectomeFit(affinity, decomposition, sbm_labels, louvain_labels, window, step)


def recovery_metrics(fit: DynamicConnectomeFit, truth: DynamicConnectome,
                     neuron_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Per epoch: matched component, time-course correlation with the epoch indicator,
    cosine of the animal loadings with participation[:, e], ARI of the component's SBM and
    Louvain partitions with labels[e]. A time correlation that is undefined (an epoch that
    spans every window, as the only epoch does, or a component with a constant time course) is
    NaN, not 0; an epoch with none defined is matched to component 0.

    A fit made with ``neuron_names`` orders its neurons by name (the sorted union): then
    ``neuron_names`` here must give the names of truth's neurons in truth's order, and the
    true labels are compared in the fit's order (a ValueError without them: comparing by
    position would score the wrong neurons against each other)."""
    if not isinstance(fit, DynamicConnectomeFit):
        raise TypeError(f"fit must be a DynamicConnectomeFit, got {type(fit).__name__}")
    if not isinstance(truth, DynamicConnectome):
        raise TypeError(f"truth must be a DynamicConnectome, got {type(truth).__name__}")
    labels = _labels_in_fit_order(truth.labels, fit.affinity.neuron_names, neuron_names)
    indicator = truth.epoch_indicator(fit.window, fit.step)  # (E, W)
    time_courses = fit.decomposition.factors[1].detach().cpu().numpy()  # (W, R)
    loadings = fit.decomposition.factors[2].detach().cpu().numpy()  # (A, R)
    fitted = (fit.sbm_labels.shape[1], time_courses.shape[0], loadings.shape[0])
    expected = (labels.shape[1], indicator.shape[1], truth.participation.shape[0])
    if fitted != expected:
        raise ValueError(f"truth does not match fit: fit has (neurons, windows, animals) = "
                         f"{fitted}, truth gives {expected}")
    num_epochs = indicator.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant row: NaN, kept
        correlation = np.corrcoef(np.vstack([indicator, time_courses.T]))[:num_epochs, num_epochs:]
    matched = np.nan_to_num(correlation, nan=-np.inf).argmax(1)
    participation = truth.participation / np.linalg.norm(truth.participation, axis=0)
    loading_norm = np.linalg.norm(loadings, axis=0)
    loading_norm[loading_norm == 0] = 1.0
    cosine = np.einsum("ae,ae->e", participation, loadings[:, matched] / loading_norm[matched])
    sbm_ari = np.array([adjusted_rand_index(fit.sbm_labels[r], labels[e])
                        for e, r in enumerate(matched)])
    louvain_ari = np.array([adjusted_rand_index(fit.louvain_labels[r], labels[e])
                            for e, r in enumerate(matched)])
    return {
        "matched_component": matched,
        "time_correlation": correlation[np.arange(num_epochs), matched],
        "animal_cosine": cosine,
        "sbm_ari": sbm_ari,
        "louvain_ari": louvain_ari,
    }


def _labels_in_fit_order(labels: np.ndarray, fit_names, truth_names) -> np.ndarray:
    """truth's labels (E, N) with columns in the fit's neuron order (see recovery_metrics)."""
    if fit_names is None:
        if truth_names is not None:
            raise ValueError("neuron_names is given but the fit was made without names (its "
                             "neurons are in the traces' order); leave neuron_names out")
        return labels
    if truth_names is None:
        raise ValueError("the fit was made with neuron_names, so its neurons are in sorted-name "
                         "order; pass neuron_names (truth's neuron names, in truth's order) to "
                         "align the true labels")
    check_sequence("neuron_names", truth_names, "a list of names, one per neuron of truth")
    names = [str(name) for name in truth_names]
    if (len(names) != labels.shape[1] or len(set(names)) != len(names)
            or sorted(set(names)) != sorted(fit_names)):
        raise ValueError(f"neuron_names must hold the fit's {len(fit_names)} neuron names once "
                         f"each, one per neuron of truth ({labels.shape[1]}), got {len(names)} names")
    position = {name: index for index, name in enumerate(names)}
    return labels[:, [position[name] for name in fit_names]]
