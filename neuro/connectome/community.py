"""Communities of a component's neuron-pair pattern: graphs, Louvain baseline, ARI.

`pair_graph` turns a pair-layout factor column (P,) back into a symmetric (N, N) weighted
adjacency. `louvain_partition` runs networkx's Louvain modularity maximisation (Blondel et al.
2008, arXiv 0803.0476) on a canonical node order (``node_order``: colour refinement), so
the partition depends on the graph and the seed, not on how its nodes are numbered (short of
nodes refinement cannot tell apart). `adjusted_rand_index` is Hubert & Arabie's (1985) ARI:

    ARI = (sum_ij C(n_ij, 2) - t) / (0.5 (sum_i C(a_i, 2) + sum_j C(b_j, 2)) - t),
    t = sum_i C(a_i, 2) sum_j C(b_j, 2) / C(n, 2),

with n_ij the contingency table of the two labelings and a, b its margins.
"""
from __future__ import annotations

import numpy as np

from neuro.connectome._checks import (
    Seed,
    as_real_array,
    check_adjacency,
    check_positive_int,
    check_real,
    check_values,
    numpy_generator,
)
from neuro.connectome.node_order import canonical_node_order

__all__ = ["adjusted_rand_index", "labels_from_communities", "louvain_partition", "pair_graph"]


def pair_graph(pair_values, pairs: np.ndarray, num_neurons: int) -> np.ndarray:
    """(N, N) symmetric adjacency with A[i, j] = A[j, i] = pair_values[p] for pairs[p] = (i, j)."""
    values = as_real_array("pair_values", pair_values).reshape(-1)
    check_values("pair_values", values)
    num_neurons = check_positive_int("num_neurons", num_neurons)
    pairs = np.asarray(pairs)
    if pairs.shape != (values.size, 2):
        raise ValueError(f"pairs must have shape ({values.size}, 2), got {pairs.shape}")
    if pairs.dtype.kind not in "iu":
        raise TypeError(f"pairs must hold integer neuron indices, got dtype {pairs.dtype}")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= num_neurons):
        raise ValueError(f"pairs must hold neuron indices in [0, num_neurons={num_neurons}), got "
                         f"indices from {pairs.min()} to {pairs.max()}")
    if (pairs[:, 0] == pairs[:, 1]).any():
        raise ValueError("pairs must join two different neurons, got a pair (i, i)")
    if len(np.unique(np.sort(pairs, axis=1), axis=0)) != len(pairs):
        raise ValueError("pairs holds the same neuron pair more than once")
    adjacency = np.zeros((num_neurons, num_neurons))
    adjacency[pairs[:, 0], pairs[:, 1]] = values
    adjacency[pairs[:, 1], pairs[:, 0]] = values
    return adjacency


def labels_from_communities(communities, num_nodes: int) -> np.ndarray:
    labels = np.full(num_nodes, -1, dtype=np.int64)
    for index, community in enumerate(communities):
        labels[list(community)] = index
    return labels


def louvain_partition(adjacency, *, resolution: float = 1.0, seed: Seed = 0) -> np.ndarray:
    """Louvain communities of a symmetric non-negative weighted adjacency (n, n); labels
    (n,) numbered by first appearance. An edgeless graph gives singletons.

    Louvain (a local search) maximises the modularity with resolution gamma,
    ``Q = (1 / 2m) sum_ij [A_ij - gamma k_i k_j / 2m] delta(c_i, c_j)`` with
    ``k_i = sum_j A_ij`` and ``2m = sum_ij A_ij``, of the graph WITHOUT self-loops: the
    diagonal of `adjacency` is ignored (our choice, as in `fit_sbm`; Blondel et al.'s
    modularity would count A_ii in both terms)."""
    import networkx as nx

    weights = check_adjacency(adjacency)
    resolution = check_real("resolution", resolution, 0)
    rng = numpy_generator(seed)
    n = weights.shape[0]
    weights = weights * (1.0 - np.eye(n))
    # modularity does not change when every weight is scaled; a power of two scales exactly
    # (networkx's arithmetic, hence the partition, is bit-for-bit that of the unscaled
    # weights) and keeps its squared total weight from underflowing to 0 (a
    # ZeroDivisionError inside networkx for weights below ~1e-160)
    largest = float(weights.max(initial=0.0))
    if largest > 0:
        # ldexp, not a multiply by 2.0 ** e: for a subnormal largest weight 2.0 ** e overflows
        weights = np.ldexp(weights, -int(np.floor(np.log2(largest))))
    # after the rescale: the order hashes the weights' bits, so A and 2^k A share it only then
    order = canonical_node_order(weights)
    reordered = weights[np.ix_(order, order)]
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    rows, cols = np.nonzero(np.triu(reordered, k=1))
    graph.add_weighted_edges_from(zip(rows.tolist(), cols.tolist(), reordered[rows, cols].tolist()))
    communities = nx.community.louvain_communities(
        graph, weight="weight", resolution=resolution, seed=int(rng.integers(0, 2**31 - 1)))
    communities = sorted((sorted(c) for c in communities), key=lambda c: c[0])
    canonical_labels = labels_from_communities(communities, n)
    labels = np.empty(n, dtype=np.int64)
    labels[order] = canonical_labels
    _, first = np.unique(labels, return_index=True)
    mapping = np.zeros(labels.max() + 1, dtype=np.int64)
    for new, old in enumerate(labels[np.sort(first)]):
        mapping[old] = new
    return mapping[labels]


def _check_labels(name: str, labels) -> np.ndarray:
    if labels is None:
        raise TypeError(f"{name} must be a 1-D array of labels, got None")
    array = np.asarray(labels)
    if array.ndim != 1 or array.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array of labels, got shape "
                         f"{array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name} has NaN or inf labels")
    return array


def adjusted_rand_index(labels_a, labels_b) -> float:
    """ARI of two labelings of the same nodes (1 = identical partitions, ~0 = chance)."""
    a, b = _check_labels("labels_a", labels_a), _check_labels("labels_b", labels_b)
    if a.shape != b.shape:
        raise ValueError(f"labelings must have the same length, got {a.size} and {b.size}")
    _, a_codes = np.unique(a, return_inverse=True)
    _, b_codes = np.unique(b, return_inverse=True)
    table = np.zeros((a_codes.max() + 1, b_codes.max() + 1))
    np.add.at(table, (a_codes, b_codes), 1)

    def pairs(x):
        return x * (x - 1) / 2.0

    index = pairs(table).sum()
    row_term, col_term = pairs(table.sum(1)).sum(), pairs(table.sum(0)).sum()
    expected = row_term * col_term / pairs(a.size) if a.size > 1 else 0.0
    maximum = 0.5 * (row_term + col_term)
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))
