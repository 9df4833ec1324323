"""Louvain on arrays (community._louvain_arrays) against networkx's own louvain_communities.

The array form restates networkx's algorithm sum for sum; the oracle is networkx itself, run
on the graph the old code built (nodes 0..n-1, edges added row by row), and the partitions
must be equal, not merely close. louvain_partition is checked against the whole old pipeline
(canonical order, networkx, renumbering), and its networkx fallback is exercised.
"""

import networkx as nx
import numpy as np
import pytest

from neuro.connectome import community
from neuro.connectome.community import (
    _csr_from_dense,
    _level_graph,
    _louvain_arrays,
    _modularity,
    louvain_partition,
)
from neuro.connectome.node_order import canonical_node_order
from neuro.connectome.synthetic import make_weighted_planted_partition


def _networkx_graph(weights):
    graph = nx.Graph()
    graph.add_nodes_from(range(weights.shape[0]))
    rows, cols = np.nonzero(np.triu(weights, k=1))
    graph.add_weighted_edges_from(zip(rows.tolist(), cols.tolist(), weights[rows, cols].tolist()))
    return graph


def _networkx_partition(weights, resolution, seed):
    communities = nx.community.louvain_communities(
        _networkx_graph(weights), weight="weight", resolution=resolution, seed=seed)
    return sorted(sorted(c) for c in communities)


def _partition(labels):
    groups = {}
    for node, label in enumerate(np.asarray(labels).tolist()):
        groups.setdefault(label, []).append(node)
    return sorted(groups.values())


def _random_graph(rng, kind):
    n = int(rng.integers(2, 90))
    upper = np.triu(rng.random((n, n)) < rng.uniform(0.02, 0.9), k=1)
    if kind == "unweighted":  # every gain ties with others: candidate order decides
        weights = upper * 1.0
    elif kind == "integer":
        weights = upper * rng.integers(1, 4, (n, n)).astype(float)
    elif kind == "exponential":
        weights = upper * rng.exponential(1.0, (n, n))
    else:  # planted blocks
        blocks = rng.integers(0, 4, n)
        weights = upper * (1 + 5 * (blocks[:, None] == blocks[None, :])) * rng.random((n, n))
    return weights + weights.T


# each node's row is scanned one of three ways (dict, np.unique, bins); force each in turn
ROW_SCANS = {"default": {}, "unique": {"_SHORT_ROW": -1, "_LONG_ROW": 0},
             "bins": {"_SHORT_ROW": -1, "_LONG_ROW": 10**9}}


@pytest.fixture(params=list(ROW_SCANS))
def row_scan(request, monkeypatch):
    for name, value in ROW_SCANS[request.param].items():
        monkeypatch.setattr(community, name, value)
    return request.param


@pytest.mark.parametrize("kind", ["unweighted", "integer", "exponential", "planted"])
def test_array_louvain_equals_networkx_on_random_graphs(kind, row_scan):
    rng = np.random.default_rng(["unweighted", "integer", "exponential", "planted"].index(kind))
    for trial in range(25):
        weights = _random_graph(rng, kind)
        resolution = (1.0, 0.5, 2.0, 0.0, 0.05)[trial % 5]
        seed = int(rng.integers(0, 2**31 - 1))
        labels = _louvain_arrays(*_csr_from_dense(weights), resolution, seed)
        assert labels is not None
        assert _partition(labels) == _networkx_partition(weights, resolution, seed), (kind, trial)


def test_array_louvain_equals_networkx_on_many_small_communities(row_scan):
    # 1300 pairs plus a few bridges: the second level has > 1024 nodes and few edges, the
    # aggregation's sorted (np.unique) branch; one dense node gives a long row (bin branch)
    rng = np.random.default_rng(7)
    n = 2600
    weights = np.zeros((n, n))
    nodes = rng.permutation(n)
    weights[nodes[0::2], nodes[1::2]] = rng.integers(1, 5, n // 2)
    bridges = rng.integers(0, n, (100, 2))
    weights[bridges[:, 0], bridges[:, 1]] = 0.5
    weights[0, rng.choice(n, 200, replace=False)] = 0.25
    weights = np.maximum(weights, weights.T)
    np.fill_diagonal(weights, 0.0)
    for seed in (0, 1):
        labels = _louvain_arrays(*_csr_from_dense(weights), 1.0, seed)
        assert _partition(labels) == _networkx_partition(weights, 1.0, seed)


def test_modularity_bound_covers_networkx():
    rng = np.random.default_rng(3)
    for _ in range(10):
        weights = _random_graph(rng, "exponential")
        labels = rng.integers(0, 4, weights.shape[0])
        quality, bound = _modularity(_level_graph(*_csr_from_dense(weights)), labels, 1.0)
        reference = nx.community.modularity(
            _networkx_graph(weights), _partition(labels), weight="weight", resolution=1.0)
        assert abs(quality - reference) <= bound < 1e-10


def _old_louvain_partition(adjacency, resolution=1.0, seed=0):
    """The pre-array pipeline: canonical order, networkx's Louvain, first-appearance labels."""
    weights = np.asarray(adjacency, dtype=float) * (1.0 - np.eye(adjacency.shape[0]))
    largest = weights.max(initial=0.0)
    if largest > 0:
        weights = np.ldexp(weights, -int(np.floor(np.log2(largest))))
    order = canonical_node_order(weights)
    reordered = weights[np.ix_(order, order)]
    louvain_seed = int(np.random.default_rng(seed).integers(0, 2**31 - 1))
    labels = np.empty(weights.shape[0], dtype=np.int64)
    for index, members in enumerate(_networkx_partition(reordered, resolution, louvain_seed)):
        labels[order[members]] = index
    _, first = np.unique(labels, return_index=True)
    mapping = np.empty(labels.max() + 1, dtype=np.int64)
    mapping[labels[np.sort(first)]] = np.arange(first.size)
    return mapping[labels]


@pytest.mark.parametrize("fallback", [False, True])
def test_louvain_partition_equals_the_networkx_pipeline(monkeypatch, fallback):
    if fallback:  # a modularity comparison too close to call hands the run to networkx
        monkeypatch.setattr(community, "_louvain_arrays", lambda *args: None)
    for seed in range(4):
        adjacency, _ = make_weighted_planted_partition(
            num_nodes=150, num_blocks=5, probability_in=0.3, probability_out=0.05, seed=seed)
        for resolution in (1.0, 1.7):
            expected = _old_louvain_partition(adjacency, resolution, seed)
            assert np.array_equal(louvain_partition(adjacency, resolution=resolution, seed=seed),
                                  expected)


def test_close_modularity_comparison_returns_none(monkeypatch):
    adjacency, _ = make_weighted_planted_partition(
        num_nodes=60, num_blocks=3, probability_in=0.4, probability_out=0.05, seed=0)
    arrays = _csr_from_dense(adjacency)
    assert _louvain_arrays(*arrays, 1.0, 0) is not None
    monkeypatch.setattr(community, "_modularity", lambda *args: (0.0, 1.0))
    assert _louvain_arrays(*arrays, 1.0, 0) is None


def _networkx_private(name):
    """networkx's own level steps (private: skipped if a networkx release renames them)."""
    louvain = pytest.importorskip("networkx.algorithms.community.louvain")
    if not hasattr(louvain, name):
        pytest.skip(f"networkx has no louvain.{name}")
    return getattr(louvain, name)


def _as_networkx(level):
    """The level graph as a networkx Graph with the same node and adjacency order."""
    graph = nx.Graph()
    graph.add_nodes_from(range(level.indptr.size - 1))
    for node in range(level.indptr.size - 1):
        span = slice(level.indptr[node], level.indptr[node + 1])
        for neighbour, weight in zip(level.neighbours[span].tolist(), level.weights[span].tolist()):
            graph.add_edge(node, neighbour, weight=weight)
    return graph


def test_aggregation_matches_networkx_gen_graph_order_and_weights():
    gen_graph = _networkx_private("_gen_graph")
    rng = np.random.default_rng(11)
    for trial in range(12):
        weights = _random_graph(rng, ("integer", "exponential")[trial % 2])
        level = _level_graph(*_csr_from_dense(weights))
        for _ in range(2):  # twice: the second level graph has self-loops
            labels = np.unique(rng.integers(0, max(2, level.indptr.size // 3), level.indptr.size - 1),
                               return_inverse=True)[1].reshape(-1)
            reference = gen_graph(_as_networkx(level),
                                  [set(np.flatnonzero(labels == c).tolist()) for c in range(labels.max() + 1)])
            level = community._aggregate(level, labels)
            assert list(reference.nodes) == list(range(level.indptr.size - 1))
            for node in reference.nodes:
                span = slice(level.indptr[node], level.indptr[node + 1])
                assert list(reference[node]) == level.neighbours[span].tolist()  # same order
                assert [d["weight"] for d in reference[node].values()] == level.weights[span].tolist()
            assert [d for _, d in reference.degree(weight="weight")] == level.degrees.tolist()


def test_one_level_matches_networkx_one_level_with_self_loops(row_scan):
    import random

    one_level = _networkx_private("_one_level")
    rng = np.random.default_rng(12)
    for trial in range(12):
        weights = _random_graph(rng, ("integer", "planted")[trial % 2])
        level = _level_graph(*_csr_from_dense(weights))
        labels = np.unique(rng.integers(0, max(2, level.indptr.size // 2), level.indptr.size - 1),
                           return_inverse=True)[1].reshape(-1)
        level = community._aggregate(level, labels)  # self-loops, first-appearance order
        total = float(sum(level.degrees.tolist()) / 2)
        resolution = (1.0, 0.6, 1.5)[trial % 3]
        seed = int(rng.integers(0, 2**31 - 1))
        graph = _as_networkx(level)
        _, inner, improvement = one_level(graph, total, [{u} for u in graph.nodes], resolution,
                                          False, random.Random(seed))
        ours, moved = community._louvain_one_level(level, total, resolution, random.Random(seed))
        assert _partition(ours) == sorted(sorted(c) for c in inner)
        assert moved == improvement
