"""Small-matrix products of the scans and the batched k-means initialization.

Oracles: a sequential Python loop of vector-matrix products (scans), a naive per-run
NumPy Lloyd iteration (k-means), explicit label counting (initial Markov parameters).
Tolerances: the scans compare float64 sums of the same terms in another order and with
rescaling (~1e-15 relative per step); k-means works in float32 on well-separated data,
where every label is decided by a margin far above float32 rounding.
"""

import numpy as np
import pytest
import torch

from neuro.hmmglm import reference_problem
from neuro.hmmglm.data import prepare
from neuro.hmmglm.init import (
    NUM_SEEDS,
    kmeans,
    kmeans_initialization,
    kmeans_plus_plus,
    lloyd,
    restart_labels,
    restart_uniforms,
)
from neuro.hmmglm.scan import scaled_vecmat_scan, small_matmul


@pytest.mark.parametrize("k", [1, 3, 5])
def test_small_matmul_forms_agree_with_numpy(k):
    rng = np.random.default_rng(k)
    left, right = rng.random((4, 7, k, k)), rng.random((4, 7, k, k))
    expected = np.einsum("bsij,bsjk->bsik", left, right)
    for product in ("auto", "gemm", "broadcast"):
        got = small_matmul(torch.as_tensor(left), torch.as_tensor(right), product).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0)
    vec = rng.random((4, 7, 1, k))  # row vector times matrix, as in the scans
    got = small_matmul(torch.as_tensor(vec), torch.as_tensor(right), "broadcast").numpy()
    np.testing.assert_allclose(got, vec @ right, rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="product must be one of"):
        small_matmul(torch.as_tensor(left), torch.as_tensor(right), "einsum")


@pytest.mark.parametrize("product", ["gemm", "broadcast"])
@pytest.mark.parametrize("k,steps,chunk", [(3, 50, None), (3, 37, 4), (5, 20, 8), (2, 1, None)])
def test_scaled_scan_matches_sequential_loop(product, k, steps, chunk):
    rng = np.random.default_rng(steps + k)
    mats = rng.random((2, steps, k, k)) * np.exp(-rng.random((2, steps, 1, k)) * 30)
    mats /= mats.max(axis=(-1, -2), keepdims=True)
    log_initial = np.log(rng.dirichlet(np.ones(k), size=2))
    vectors, log_scale = scaled_vecmat_scan(torch.as_tensor(log_initial), torch.as_tensor(mats),
                                            chunk=chunk, product=product)
    got = np.log(vectors.numpy()) + log_scale.numpy()[..., None]
    # oracle: v_s = v_{s-1} M_s one step at a time, in log space to avoid underflow
    expected = np.empty((2, steps, k))
    for b in range(2):
        log_v = log_initial[b]
        for s in range(steps):
            shift = log_v.max()
            log_v = np.log(np.exp(log_v - shift) @ mats[b, s]) + shift
            expected[b, s] = log_v
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-10)


def blobs(rng, per_cluster=60, dim=4, num_clusters=3, spread=0.05):
    centres = rng.normal(0, 3, (num_clusters, dim))
    points = np.concatenate([c + spread * rng.standard_normal((per_cluster, dim)) for c in centres])
    return points.astype(np.float32), np.repeat(np.arange(num_clusters), per_cluster)


def naive_lloyd(points, centres, iters):
    """One run, NumPy, float64: assign, then move each non-empty centre to its points' mean."""
    centres = centres.astype(np.float64).copy()
    for _ in range(iters):
        labels = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        for c in range(len(centres)):
            if (labels == c).any():
                centres[c] = points[labels == c].mean(0)
    labels = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    return labels, ((points - centres[labels]) ** 2).sum()


@pytest.mark.parametrize("check_every", [1, 3, 50])
def test_batched_lloyd_equals_naive_runs(check_every):
    rng = np.random.default_rng(0)
    # two "widths" (feature arrays) of the same size, four runs each, from arbitrary starts
    points = np.stack([blobs(rng, spread=0.8)[0] for _ in range(2)])  # overlapping: many moves
    starts = points[np.arange(2)[:, None, None], rng.integers(0, points.shape[1], (2, 4, 3))]
    labels, inertia, _ = lloyd(torch.as_tensor(points), torch.as_tensor(starts), max_iters=30,
                               check_every=check_every)
    for w in range(2):
        for q in range(4):
            expected_labels, expected_inertia = naive_lloyd(points[w], starts[w, q], 29)
            np.testing.assert_array_equal(labels[w, q].numpy(), expected_labels)
            # float32 sums of ~180 squared distances
            assert abs(float(inertia[w, q]) - expected_inertia) < 1e-4 * expected_inertia


def uniforms(width, runs, clusters, seed):
    return torch.as_tensor(np.random.default_rng(seed).random((width, runs, clusters)))


def test_kmeans_plus_plus_seeds_are_distinct_data_points_and_seeded():
    rng = np.random.default_rng(1)
    points = torch.as_tensor(np.stack([blobs(rng)[0], blobs(rng)[0]]))
    centres = kmeans_plus_plus(points, uniforms(2, 6, 3, 5))
    assert centres.shape == (2, 6, 3, 4)
    for w in range(2):
        for q in range(6):
            # every centre is one of the points; far-apart blobs: one seed per blob
            hits = (centres[w, q, :, None] == points[w][None]).all(-1)
            assert bool(hits.any(-1).all())
            assert len(set(hits.float().argmax(-1).div(60, rounding_mode="floor").tolist())) == 3
    assert torch.equal(centres, kmeans_plus_plus(points, uniforms(2, 6, 3, 5)))
    # identical points: zero distances everywhere -> uniform draws, no error
    flat = kmeans_plus_plus(torch.zeros(1, 10, 2), uniforms(1, 2, 3, 0))
    assert torch.equal(flat, torch.zeros(1, 2, 3, 2))
    with pytest.raises(ValueError, match=r"uniforms must have shape \(W=2, Q, K\), got \(1, 6, 3\)"):
        kmeans_plus_plus(points, uniforms(1, 6, 3, 5))


def test_kmeans_plus_plus_inverse_cdf_draws():
    # points 0, 1, 3 on a line; u_0 = 0.1 picks point floor(0.3) = 0, whose squared
    # distances [0, 1, 9] (cumulative [0, 1, 10]) make u_1 * 10 in [0, 1) pick point 1
    # and [1, 10) point 2; a zero-weight point (the first centre) is never drawn again
    points = torch.tensor([[[0.0], [1.0], [3.0]]])
    draws = torch.tensor([[[0.1, 0.0], [0.1, 0.099], [0.1, 0.1], [0.1, 0.999]]], dtype=torch.float64)
    centres = kmeans_plus_plus(points, draws)
    assert centres[0, :, :, 0].tolist() == [[0.0, 1.0], [0.0, 1.0], [0.0, 3.0], [0.0, 3.0]]
    # many runs: the second centre's frequencies follow the D^2 weights [0, 1, 9] / 10
    runs = 20000
    many = uniforms(1, runs, 2, 3)
    many[..., 0] = 0.1
    second = kmeans_plus_plus(points, many)[0, :, 1, 0]
    picked_far = float((second == 3.0).double().mean())
    assert abs(picked_far - 0.9) < 5 * (0.9 * 0.1 / runs) ** 0.5  # 5 standard errors
    assert float((second == 0.0).double().sum()) == 0


def test_kmeans_recovers_separated_clusters_in_every_run():
    rng = np.random.default_rng(2)
    points, truth = blobs(rng)
    labels, _inertia = kmeans(torch.as_tensor(points)[None], uniforms(1, 5, 3, 0))
    for q in range(5):
        # the same partition up to a relabelling
        pairs = set(zip(truth.tolist(), labels[0, q].tolist()))
        assert len(pairs) == 3
    with pytest.raises(ValueError, match="points must have shape"):
        kmeans(torch.as_tensor(points), uniforms(1, 5, 3, 0))


def test_restarts_are_nested():
    # restart r's draws and labels depend on (seed, r), not on the number of restarts
    draws = restart_uniforms(np.random.default_rng(4), 11, 3)
    assert draws.shape == (11, NUM_SEEDS, 3) and ((draws >= 0) & (draws < 1)).all()
    np.testing.assert_array_equal(restart_uniforms(np.random.default_rng(4), 2, 3), draws[:2])
    assert not np.array_equal(draws[0], draws[1])
    problem = reference_problem(1500, seed=0)
    data = prepare([torch.as_tensor(problem.spikes)], torch.as_tensor(problem.basis))
    many = restart_labels(data, 3, 11, np.random.default_rng(4))
    for fewer in (1, 3, 8):
        assert torch.equal(restart_labels(data, 3, fewer, np.random.default_rng(4)), many[:fewer])


def test_restart_labels_and_initial_markov_parameters():
    problem = reference_problem(1500, seed=0)
    spikes = torch.as_tensor(problem.spikes)
    data = prepare([spikes[:700], spikes[700:]], torch.as_tensor(problem.basis))
    labels = restart_labels(data, 3, 11, np.random.default_rng(4))
    assert labels.shape == (11, 1500)
    assert torch.equal(labels, restart_labels(data, 3, 11, np.random.default_rng(4)))
    params = kmeans_initialization(data, 3, 11, np.random.default_rng(4), problem.link)
    assert params.log_transition.shape == (11, 3, 3) and params.bias.shape == (11, 3, 20)
    for r in (0, 7, 10):
        seq = labels[r].numpy()
        trans, first = np.ones((3, 3)), np.ones(3)
        for start, stop in ((0, 700), (700, 1500)):  # no transition across sequences
            np.add.at(trans, (seq[start:stop - 1], seq[start + 1:stop]), 1.0)
            first[seq[start]] += 1.0
        np.testing.assert_allclose(params.log_transition[r].numpy(),
                                   np.log(trans / trans.sum(1, keepdims=True)), rtol=1e-12)
        np.testing.assert_allclose(params.log_initial[r].numpy(), np.log(first / first.sum()), rtol=1e-12)
    assert NUM_SEEDS == 5


def test_default_chunk_per_device():
    from neuro.hmmglm.scan import default_chunk

    # CPU: ~sqrt(T) within [4, 64]; other devices: at most 16 (launch-bound steps)
    assert [default_chunk(t) for t in (1, 30, 300, 20000)] == [4, 4, 16, 64]
    assert [default_chunk(t, "cuda") for t in (1, 30, 300, 20000)] == [4, 4, 16, 16]
    assert default_chunk(20000, torch.device("cpu")) == 64


@pytest.mark.parametrize("product", ["gemm", "broadcast"])
def test_scan_batch_elements_are_independent(product):
    # forward_backward off the CPU scans forward and reversed-time messages as one batch
    rng = np.random.default_rng(9)
    mats = torch.as_tensor(rng.random((2, 40, 3, 3)))
    log_initial = torch.as_tensor(rng.normal(size=(2, 3)))
    both = scaled_vecmat_scan(log_initial, mats, chunk=8, product=product)
    for b in range(2):
        alone = scaled_vecmat_scan(log_initial[b:b + 1], mats[b:b + 1], chunk=8, product=product)
        for x, y in zip(both, alone):
            np.testing.assert_allclose(x[b:b + 1].numpy(), y.numpy(), rtol=1e-14, atol=0)
