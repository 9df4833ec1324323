"""An order of a weighted graph's nodes that depends only on the graph, not on how its nodes
are numbered: the order in which Louvain and the SBM's sweeps visit nodes, so that
relabelling the nodes relabels the partition and changes nothing else.

Colour refinement (1-dimensional Weisfeiler-Lehman) over the edges: every node starts with
one colour; each round a node's new colour is the rank of (its colour, the multiset of
(neighbour colour, edge weight) over its edges), the multiset summarised by a sum of 64-bit
mixed hashes (splitmix64; a collision needs two different multisets with equal sums, odds
~2^-64 per pair). Rounds stop when the number of colours stops growing (at most the graph's
diameter plus one rounds), each O(E + n log n) (two 1-D sorts of n keys: a 10k-node
path, ~5000 rounds, takes seconds). Nodes sorted by final colour; nodes that
refinement cannot tell apart (e.g. the symmetric ends of a path) keep their index order:
only then can the numbering matter.
"""
from __future__ import annotations

import numpy as np

_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser of uint64 values (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = values + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _MIX1
        x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def canonical_node_order(weights: np.ndarray) -> np.ndarray:
    """Node indices (n,) of the weighted adjacency ``weights`` (n, n; entry [i, j] the weight
    of the edge i -> j, 0 for none) in colour-refinement order (module docstring)."""
    n = weights.shape[0]
    rows, cols = np.nonzero(weights)  # row-major: each node's edges are one run of rows
    weight_hash = _mix(weights[rows, cols].astype(np.float64).view(np.uint64))
    edges_per_node = np.bincount(rows, minlength=n)
    ends = np.cumsum(edges_per_node)
    starts = ends - edges_per_node
    colours, count = np.zeros(n, dtype=np.int64), 1
    while True:
        edge_hash = _mix(_mix(colours[cols].astype(np.uint64)) ^ weight_hash)
        # a node's sum over its run of edges, modulo 2^64, as a difference of running sums
        running = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(edge_hash, dtype=np.uint64)])
        with np.errstate(over="ignore"):
            signature = running[ends] - running[starts]
        # rank of (colour, signature): the signature's rank within 0..n-1 makes one int64 key
        signature_rank = np.unique(signature, return_inverse=True)[1].reshape(-1)
        refined = np.unique(colours * n + signature_rank, return_inverse=True)[1].reshape(-1)
        if refined.max(initial=0) + 1 == count:
            return np.lexsort((np.arange(n), colours))
        colours, count = refined, int(refined.max()) + 1
