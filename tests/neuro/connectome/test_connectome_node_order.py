"""canonical_node_order against the plain colour refinement it was first written as.

The naive oracle below hashes every edge from a (row, column) list, mixes twice per edge and
runs refinement until the number of colours stops growing; the library version works in
blocks, in place, mixes the colours before gathering them and stops as soon as all colours
differ. Orders must be equal, element for element.
"""

import numpy as np
import pytest

from neuro.connectome.node_order import canonical_node_order

GOLDEN, MIX1, MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(values):
    with np.errstate(over="ignore"):
        x = values + GOLDEN
        x = (x ^ (x >> np.uint64(30))) * MIX1
        x = (x ^ (x >> np.uint64(27))) * MIX2
    return x ^ (x >> np.uint64(31))


def _naive_order(weights):
    n = weights.shape[0]
    rows, cols = np.nonzero(weights)
    # a weight enters as its rank among the distinct weights (scaling all weights keeps it)
    distinct = sorted(set(weights[rows, cols].astype(np.float64).tolist()))
    rank = {value: k for k, value in enumerate(distinct)}
    weight_hash = _mix(np.array([rank[w] for w in weights[rows, cols].astype(np.float64).tolist()],
                                dtype=np.uint64))
    ends = np.cumsum(np.bincount(rows, minlength=n))
    starts = ends - np.bincount(rows, minlength=n)
    colours, count = np.zeros(n, dtype=np.int64), 1
    while True:
        edge_hash = _mix(_mix(colours[cols].astype(np.uint64)) ^ weight_hash)
        running = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(edge_hash, dtype=np.uint64)])
        with np.errstate(over="ignore"):
            signature = running[ends] - running[starts]
        signature_rank = np.unique(signature, return_inverse=True)[1].reshape(-1)
        refined = np.unique(colours * n + signature_rank, return_inverse=True)[1].reshape(-1)
        if refined.max(initial=0) + 1 == count:
            return np.lexsort((np.arange(n), colours))
        colours, count = refined, int(refined.max()) + 1


def _graphs():
    rng = np.random.default_rng(0)
    path = np.zeros((40, 40))
    path[np.arange(39), np.arange(1, 40)] = 1.0
    path = path + path.T  # symmetric ends: ties refinement cannot break
    yield np.zeros((0, 0))
    yield np.zeros((1, 1))
    yield np.zeros((6, 6))  # edgeless
    yield path
    for trial in range(120):
        n = int(rng.integers(2, 70))
        upper = np.triu(rng.random((n, n)) < rng.uniform(0.0, 1.0), k=1)
        kind = trial % 4
        if kind == 0:
            weights = upper * 1.0
        elif kind == 1:
            weights = upper * rng.integers(1, 3, (n, n)).astype(float)
        elif kind == 2:
            weights = upper * rng.exponential(1.0, (n, n))
        else:  # directed integer counts with a diagonal
            weights = (rng.random((n, n)) < 0.2) * rng.integers(0, 3, (n, n))
        if kind != 3:
            weights = weights + weights.T
        if trial % 5 == 0:
            weights[np.arange(n), np.arange(n)] = rng.integers(0, 2, n)
        yield weights


@pytest.mark.parametrize("block", [1024, 3])
def test_order_equals_naive_colour_refinement(monkeypatch, block):
    from neuro.connectome import node_order

    original = node_order._nonzero_columns
    monkeypatch.setattr(node_order, "_nonzero_columns", lambda weights: original(weights, block))
    for weights in _graphs():
        assert np.array_equal(canonical_node_order(weights), _naive_order(weights))


def test_order_is_label_free():
    rng = np.random.default_rng(1)
    weights = np.triu(rng.random((50, 50)) < 0.2, k=1) * rng.exponential(1.0, (50, 50))
    weights = weights + weights.T
    permutation = rng.permutation(50)
    order = canonical_node_order(weights)
    permuted_order = canonical_node_order(weights[np.ix_(permutation, permutation)])
    assert np.array_equal(permutation[permuted_order], order)
