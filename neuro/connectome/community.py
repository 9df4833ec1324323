"""Communities of a component's neuron-pair pattern: graphs, Louvain baseline, ARI.

`pair_graph` turns a pair-layout factor column (P,) back into a symmetric (N, N) weighted
adjacency. `louvain_partition` finds networkx's Louvain partition (modularity maximisation,
Blondel et al. 2008, arXiv 0803.0476; the same partition, computed on arrays) on a canonical
node order (``node_order``: colour refinement), so the partition depends on the graph and the
seed, not on how its nodes are numbered (short of nodes refinement cannot tell apart). `adjusted_rand_index` is Hubert & Arabie's (1985) ARI:

    ARI = (sum_ij C(n_ij, 2) - t) / (0.5 (sum_i C(a_i, 2) + sum_j C(b_j, 2)) - t),
    t = sum_i C(a_i, 2) sum_j C(b_j, 2) / C(n, 2),

with n_ij the contingency table of the two labelings and a, b its margins.
"""
from __future__ import annotations

from typing import NamedTuple

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
    try:
        pairs = np.asarray(pairs.detach().cpu() if hasattr(pairs, "detach") else pairs)
    except ValueError:
        raise ValueError("pairs must be a (P, 2) array of neuron indices, got a ragged "
                         "sequence") from None
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


# ---- Louvain: networkx's algorithm (networkx.community.louvain_communities, undirected,
# weighted, threshold 1e-7) restated on arrays. A level graph is an adjacency in CSR form whose
# rows list each node's neighbours (its self-loop included) in the order networkx's dict holds
# them, so every sum below adds the same floats in the same order and every gain compares as
# networkx's does: the partition is networkx's, bit for bit (checked against networkx in
# tests/neuro/connectome/test_connectome_louvain_arrays.py), at array speed and without
# the hundreds of bytes per edge of a networkx graph. The one step networkx takes in an order we cannot restate
# is its modularity (it sums over Python sets): ours carries a rounding bound, and a level
# whose modularity gain lies within that bound of the threshold hands the whole run to
# networkx itself (``_louvain_networkx``).

_LOUVAIN_THRESHOLD = 1e-7  # networkx's default: stop when a level gains at most this modularity
_UNIT_ROUNDOFF = 2.0**-53


class _LevelGraph(NamedTuple):
    """indptr (n + 1,), neighbours (2E',) int, weights (2E',): row u lists u's neighbours in
    networkx's adjacency order (a self-loop once, in its place); owners (2E',) each entry's
    row; degrees (n,) networkx's weighted degrees (self-loops twice), as Python's ``sum``
    adds them."""

    indptr: np.ndarray
    neighbours: np.ndarray
    weights: np.ndarray
    owners: np.ndarray
    degrees: np.ndarray


def _owners(indptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(indptr.size - 1), np.diff(indptr))


def _level_graph(indptr, neighbours, weights) -> _LevelGraph:
    """Degrees as networkx's ``G.degree(weight=...)``: Python's ``sum`` over the row in order,
    plus the self-loop's weight once more (Python's own ``sum``, as networkx calls it: from
    3.12 it compensates float sums)."""
    loops = np.zeros(indptr.size - 1)
    owners = _owners(indptr)
    is_loop = neighbours == owners
    loops[owners[is_loop]] = weights[is_loop]
    degrees = np.array([sum(weights[start:end].tolist()) + loop for start, end, loop
                        in zip(indptr[:-1].tolist(), indptr[1:].tolist(), loops.tolist())])
    return _LevelGraph(indptr, neighbours, weights, owners, degrees)


def _csr_from_dense(matrix: np.ndarray, block: int = 512) -> tuple:
    """CSR (indptr, column indices (int32 when they fit), values) of the nonzero entries of a
    square matrix, rows in order and columns increasing within a row (networkx's adjacency
    order for a graph whose edges were added row by row), built ``block`` rows at a time."""
    n = matrix.shape[0]
    index_type = np.int32 if n < 2**31 else np.int64
    counts = np.count_nonzero(matrix, axis=1)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    columns = np.empty(indptr[-1], dtype=index_type)
    values = np.empty(indptr[-1])
    for start in range(0, n, block):
        rows, cols = np.nonzero(matrix[start:start + block])
        span = slice(indptr[start], indptr[min(start + block, n)])
        columns[span] = cols
        values[span] = matrix[start:start + block][rows, cols]
    return indptr, columns, values


_SHORT_ROW = 128  # rows up to this long are scanned in Python (dict), longer ones in numpy
_LONG_ROW = 32  # a row at least 1/_LONG_ROW of the nodes long: O(n) bins, else np.unique


def _louvain_one_level(graph: _LevelGraph, total: float, resolution: float, rng) -> tuple:
    """networkx's ``_one_level``: visit the nodes in a ``rng``-shuffled order, repeatedly,
    moving each to the neighbouring community of largest modularity gain

        gain(c) = -w_u(own) / m + gamma S_own k_u / (2 m^2) + w_u(c) / m - gamma S_c k_u / (2 m^2)

    (w_u(c) the weight from u to community c, S_c the community's total degree with u taken
    out of its own, m = ``total``), the first of the largest if it is > 0, until a pass moves
    nobody. Candidates are the neighbours' communities in order of first appearance along u's
    row, then u's own if no neighbour is in it. A short row is scanned with a dict as networkx
    does, a long one with numpy (the same sums in the same order, the same comparisons); the
    community of each node and each community's degree are kept both as lists (scalar reads)
    and as arrays (gathers), written together. Returns (communities (n,) numbered 0.. in
    increasing order of their first member's index, whether any node moved)."""
    n = graph.indptr.size - 1
    keep = graph.neighbours != graph.owners  # networkx's nbrs: the row less its self-loop
    if keep.all():
        indptr, neighbours, weights = graph.indptr, graph.neighbours, graph.weights
    else:
        neighbours, weights = graph.neighbours[keep], graph.weights[keep]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(graph.owners[keep], minlength=n))])
    community, community_list = np.arange(n), list(range(n))
    community_degree, degree_list = graph.degrees.copy(), graph.degrees.tolist()
    degrees = graph.degrees.tolist()
    bounds = list(zip(indptr[:-1].tolist(), indptr[1:].tolist()))
    short = {node: (neighbours[start:end].tolist(), weights[start:end].tolist())
             for node, (start, end) in enumerate(bounds) if end - start <= _SHORT_ROW}
    positions = np.arange(int(np.diff(indptr).max(initial=0)))
    twice_total_squared = 2 * total**2  # Python's float power, as networkx's 2 * m**2
    order = list(range(n))
    rng.shuffle(order)
    improvement, moves = False, 1
    while moves:
        moves = 0
        for node in order:
            own = community_list[node]
            degree = degrees[node]
            degree_list[own] = community_degree[own] = removed = degree_list[own] - degree
            if node in short:
                row_neighbours, row_weights = short[node]
                link = {}  # weights summed in row order, communities in order of appearance
                for candidate, weight in zip(map(community_list.__getitem__, row_neighbours),
                                             row_weights):
                    link[candidate] = link.get(candidate, 0.0) + weight
                own_link = link.setdefault(own, 0.0)  # own community last if not yet in
                remove_cost = -own_link / total + resolution * (removed * degree) \
                    / twice_total_squared
                target, best = own, 0.0
                for candidate, weight in link.items():
                    gain = remove_cost + weight / total \
                        - resolution * (degree_list[candidate] * degree) / twice_total_squared
                    if gain > best:
                        target, best = candidate, gain
            else:
                start, end = bounds[node]
                row = community[neighbours[start:end]]
                # bincount adds each bin's weights in array order, as the dict does
                if _LONG_ROW * row.size >= n:  # long row: O(n) bins beat sorting it
                    first = np.full(n, row.size)
                    np.minimum.at(first, row, positions[:row.size])
                    in_row = np.zeros(row.size, dtype=bool)
                    in_row[first[first < row.size]] = True
                    candidates = row[in_row]
                    link = np.bincount(row, weights=weights[start:end], minlength=n)[candidates]
                else:  # np.unique's first indices come from a stable sort
                    candidates, first, inverse = np.unique(row, return_index=True,
                                                           return_inverse=True)
                    link = np.bincount(inverse, weights=weights[start:end],
                                       minlength=candidates.size)
                    rank = np.argsort(first)
                    candidates, link = candidates[rank], link[rank]
                where_own = np.flatnonzero(candidates == own)
                if where_own.size:
                    own_link = float(link[where_own[0]])
                else:
                    own_link = 0.0
                    candidates = np.append(candidates, own)
                    link = np.append(link, 0.0)
                remove_cost = -own_link / total + resolution * (removed * degree) \
                    / twice_total_squared
                gains = remove_cost + link / total \
                    - resolution * (community_degree[candidates] * degree) / twice_total_squared
                best = int(np.argmax(gains))  # the first of the largest
                target = int(candidates[best]) if gains[best] > 0 else own
            degree_list[target] = community_degree[target] = degree_list[target] + degree
            if target != own:
                community_list[node] = community[node] = target
                improvement = True
                moves += 1
    return np.unique(community, return_inverse=True)[1].reshape(-1), improvement


def _aggregate(graph: _LevelGraph, community: np.ndarray) -> _LevelGraph:
    """networkx's ``_gen_graph``: one node per community; the edges of ``graph`` visited in
    networkx's order (node by node, each edge from its lower end, self-loops included) add
    their weight to the edge between their ends' communities (a self-loop inside one). A new
    node's neighbours are listed in the order their edge first appeared."""
    forward = graph.neighbours >= graph.owners
    ends_a, ends_b = community[graph.owners[forward]], community[graph.neighbours[forward]]
    size = int(community.max()) + 1
    low, high = np.minimum(ends_a, ends_b), np.maximum(ends_a, ends_b)
    pair = low.astype(np.int64) * size + high
    weights = graph.weights[forward]
    # each pair's weights added in edge order (bincount adds a bin's weights in array order)
    if size * size <= max(4 * pair.size, 2**20):  # few communities: bins, no sort
        first = np.full(size * size, pair.size)
        np.minimum.at(first, pair, np.arange(pair.size))
        keys = np.flatnonzero(first < pair.size)
        first = first[keys]
        pair_weight = np.bincount(pair, weights=weights, minlength=size * size)[keys]
    else:
        keys, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
        pair_weight = np.bincount(inverse, weights=weights, minlength=keys.size)
    low, high = keys // size, keys % size
    other = low != high
    owner = np.concatenate([low, high[other]])
    order = np.lexsort((np.concatenate([first, first[other]]), owner))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=size))])
    return _level_graph(indptr, np.concatenate([high, low[other]])[order],
                        np.concatenate([pair_weight, pair_weight[other]])[order])


def _modularity(graph: _LevelGraph, community: np.ndarray, resolution: float) -> tuple:
    """(Q, bound) with Q = sum_c [L_c / m - gamma S_c^2 / (2m)^2] (L_c the weight inside c,
    S_c its total degree, 2m the total degree) and ``bound`` >= |Q - networkx's modularity|.
    networkx sums L_c and S_c over a Python set, in an order we do not restate: both sums
    add non-negative terms, so each side lies within gamma_k = k u / (1 - k u) (k terms,
    u = 2^-53) of the exact sum (Higham, Accuracy and Stability of Numerical Algorithms,
    2002, eq. 4.4), and so does the rest of the arithmetic, which is the same on both sides."""
    owners = graph.owners
    inside = (graph.neighbours >= owners) & (community[owners] == community[graph.neighbours])
    count = int(community.max()) + 1
    inner = np.bincount(community[owners[inside]], weights=graph.weights[inside], minlength=count)
    strength = np.bincount(community, weights=graph.degrees, minlength=count)
    degree_sum = sum(graph.degrees.tolist())
    half, norm = degree_sum / 2, 1 / degree_sum**2
    kept = inner / half
    removed = resolution * strength * strength * norm
    quality = sum((kept - removed).tolist())
    terms = (int(np.bincount(community[owners[inside]], minlength=count).max(initial=0))
             + int(np.bincount(community).max()) * 2 + count + 16)
    gamma = terms * _UNIT_ROUNDOFF / (1 - terms * _UNIT_ROUNDOFF)
    return quality, 4 * gamma * float(np.abs(kept).sum() + np.abs(removed).sum())


def _louvain_arrays(indptr, neighbours, weights, resolution: float, seed: int):
    """Community of each node (n,) of the CSR graph as networkx's
    ``louvain_communities(G, resolution=resolution, seed=seed)`` finds them, for G built with
    nodes 0..n-1 and each node's neighbours in the CSR row order; None when a level's
    modularity gain is too close to the threshold to tell networkx's comparison from ours."""
    import random

    n = indptr.size - 1
    if weights.size == 0:
        return np.arange(n)
    rng = random.Random(seed)  # what networkx's @py_random_state makes of an int seed
    graph = _level_graph(indptr, neighbours, weights)
    total = sum(graph.degrees.tolist()) / 2  # networkx's G.size(weight="weight")
    quality, bound = _modularity(graph, np.arange(n), resolution)
    community, _ = _louvain_one_level(graph, total, resolution, rng)  # networkx goes on regardless
    labels = np.arange(n)  # each node's node in the current level graph
    improvement = True
    while improvement:
        partition = community[labels]
        new_quality, new_bound = _modularity(graph, community, resolution)
        gain = new_quality - quality
        margin = bound + new_bound + 4 * _UNIT_ROUNDOFF * (
            abs(new_quality) + abs(quality) + _LOUVAIN_THRESHOLD)
        if abs(gain - _LOUVAIN_THRESHOLD) <= margin:
            return None
        if gain <= _LOUVAIN_THRESHOLD:
            return partition
        quality, bound = new_quality, new_bound
        graph = _aggregate(graph, community)
        labels = partition
        community, improvement = _louvain_one_level(graph, total, resolution, rng)
    return partition


def _louvain_networkx(weights: np.ndarray, resolution: float, seed: int) -> np.ndarray:
    """networkx's own Louvain on the graph of ``weights`` (n, n), nodes 0..n-1, each node's
    edges added in increasing order of its neighbour; the community of each node (n,)."""
    import networkx as nx

    n = weights.shape[0]
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    rows, cols = np.nonzero(np.triu(weights, k=1))
    graph.add_weighted_edges_from(zip(rows.tolist(), cols.tolist(), weights[rows, cols].tolist()))
    communities = nx.community.louvain_communities(
        graph, weight="weight", resolution=resolution, seed=seed)
    return labels_from_communities(communities, n)


def _symmetrize_(weights: np.ndarray, block: int = 256) -> None:
    """``weights <- (weights + weights.T) / 2`` in place, a block of rows at a time (no (n, n)
    temporary). ``check_adjacency`` lets through asymmetries up to its tolerance (1e-5
    relative); without this, W and W.T (the same graph to that tolerance) could get different
    partitions (10 of 30 graphs at 1e-9). Exact for a symmetric W: (a + a) / 2 = a."""
    n = weights.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        mean = (weights[start:stop, start:] + weights[start:, start:stop].T) * 0.5
        weights[start:stop, start:] = mean
        weights[start:, start:stop] = mean.T


def louvain_partition(adjacency, *, resolution: float = 1.0, seed: Seed = 0) -> np.ndarray:
    """Louvain communities of a symmetric non-negative weighted adjacency (n, n); labels
    (n,) numbered by first appearance. An edgeless graph gives singletons.

    Louvain (a local search) maximises the modularity with resolution gamma,
    ``Q = (1 / 2m) sum_ij [A_ij - gamma k_i k_j / 2m] delta(c_i, c_j)`` with
    ``k_i = sum_j A_ij`` and ``2m = sum_ij A_ij``, of the graph WITHOUT self-loops: the
    diagonal of `adjacency` is ignored (our choice, as in `fit_sbm`; Blondel et al.'s
    modularity would count A_ii in both terms). The partition is networkx's
    ``louvain_communities`` (threshold 1e-7) on the graph in canonical node order, computed
    on arrays (``_louvain_arrays``; E edges): memory O(n^2) for the dense input plus tens of
    bytes per edge, each pass over the nodes O(E) work, no networkx graph unless a
    modularity comparison is too close to call (then networkx itself runs). Measured on 2
    cores: a 5,000-node dense graph (12.5M edges) ~10 s and ~2 GB, where networkx took ~3 min
    and ~9 GB."""
    weights = check_adjacency(adjacency)
    resolution = check_real("resolution", resolution, 0)
    rng = numpy_generator(seed)
    n = weights.shape[0]
    weights = weights.copy()
    np.fill_diagonal(weights, 0.0)
    # modularity does not change when every weight is scaled; a power of two scales exactly
    # (networkx's arithmetic, hence the partition, is bit-for-bit that of the unscaled
    # weights) and keeps its squared total weight from underflowing to 0 (a
    # ZeroDivisionError inside networkx for weights below ~1e-160)
    largest = float(weights.max(initial=0.0))
    if largest > 0:
        # ldexp, not a multiply by 2.0 ** e: for a subnormal largest weight 2.0 ** e overflows
        np.ldexp(weights, -int(np.floor(np.log2(largest))), out=weights)
    _symmetrize_(weights)
    # the order hashes the ranks of the distinct weights: c A (c > 0) shares the order of A
    order = canonical_node_order(weights)
    reordered = weights[np.ix_(order, order)]
    del weights
    louvain_seed = int(rng.integers(0, 2**31 - 1))
    canonical_labels = _louvain_arrays(*_csr_from_dense(reordered), resolution, louvain_seed)
    if canonical_labels is None:
        canonical_labels = _louvain_networkx(reordered, resolution, louvain_seed)
    labels = np.empty(n, dtype=np.int64)
    labels[order] = canonical_labels
    # renumbered by first appearance
    _, first = np.unique(labels, return_index=True)
    mapping = np.zeros(labels.max() + 1, dtype=np.int64)
    mapping[labels[np.sort(first)]] = np.arange(first.size)
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
