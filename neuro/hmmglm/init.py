"""Default initialization: k-means on smoothed population rates, then hard-assignment GLMs.

1. Smooth every neuron's counts with a Gaussian kernel (``smoothing_bins`` standard
   deviation; restart r scales it by the fixed factor ``_WIDTH_FACTORS[r % 8]`` for
   diversity), z-score each neuron, and cluster the bins into K groups by k-means (best
   inertia of 5 k-means++ seeds per restart).
2. Use the cluster labels as hard posteriors: initial and transition probabilities from
   label counts (plus one pseudo-count), and a few Newton steps of each state's GLM on the
   bins of its cluster, starting from the state's mean rate with zero coupling.

Rate states are what a k-means can see; states that differ in coupling change the
population rates too, which is enough to start EM in the right basin (our choice, after
the frontier prototype in ANCHORS.md: random starts stayed at 0.89 accuracy).

All k-means runs, (restart, seed) pairs, go at once: restarts of the same smoothing width
share one feature array, so the features are (W, T, N) with W <= 8 widths and each width
carries Q = 5 * ceil(R / W) runs. A Lloyd iteration is two batched matrix products for all
runs (distances, then cluster sums by one-hot), and convergence (no label changed) is
checked every few iterations, so a GPU waits on the host only then.

Restarts are nested: restart r's width factor and its k-means++ draws depend on (seed, r)
alone, never on R, so a fit with more restarts contains the starts of a fit with fewer and
its best objective is never lower (EM only gains, and a point's restarts stop together).
The draws are uniforms from numpy, one stream per restart (``restart_uniforms``), turned
into indices by inverse-CDF search on the device: the same draws on every device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from neuro.hmmglm.data import PreparedData
from neuro.hmmglm.glm import inverse_mean_function
from neuro.hmmglm.newton import PackedOuterProducts, newton_step
from neuro.hmmglm.params import HMMGLMParams

_WIDTH_FACTORS = (1.0, 0.5, 2.0, 0.75, 1.5, 0.35, 3.0, 1.25)
NUM_SEEDS = 5  # k-means++ seeds per restart, best inertia kept


def smoothed_rates(data: PreparedData, smoothing_bins: float) -> torch.Tensor:
    """Per-sequence Gaussian smoothing of counts (FFT convolution, edge-corrected), z-scored
    per neuron: (T_total, N) in float32 (k-means features need no more)."""
    half = int(np.ceil(3 * smoothing_bins))
    counts = data.counts.to(torch.float32)
    offsets = torch.arange(-half, half + 1, dtype=torch.float32, device=counts.device)
    kernel = torch.exp(-0.5 * (offsets / smoothing_bins) ** 2)
    kernel = kernel / kernel.sum()
    pieces = []
    for start, length in zip(data.starts.tolist(), data.lengths.tolist()):
        seq = counts[start:start + length]
        size = length + 2 * half + 1
        spectrum = torch.fft.rfft(kernel, n=size).unsqueeze(-1)
        smooth = torch.fft.irfft(torch.fft.rfft(seq, n=size, dim=0) * spectrum, n=size, dim=0)
        ones = torch.ones(length, 1, dtype=torch.float32, device=counts.device)
        norm = torch.fft.irfft(torch.fft.rfft(ones, n=size, dim=0) * spectrum, n=size, dim=0)
        pieces.append(smooth[half:half + length] / norm[half:half + length].clamp_min(1e-6))
    rates = torch.cat(pieces, 0)
    return (rates - rates.mean(0)) / rates.std(0).clamp_min(1e-12)


def _centre_scores(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """|c|^2 - 2 x.c for points (W, T, N) and centres (W, M, N): (W, T, M), one matrix product.

    Adding |x|^2 gives the squared distance |x - c|^2; argmin over centres needs no |x|^2.
    """
    return torch.baddbmm((centres * centres).sum(-1).unsqueeze(1), points, centres.transpose(1, 2),
                         alpha=-2.0)


def restart_uniforms(rng: np.random.Generator, num_restarts: int, num_clusters: int) -> np.ndarray:
    """Uniforms in [0, 1) for the k-means++ draws of every restart: (R, NUM_SEEDS, K) float64.

    One integer from ``rng`` picks the fit's base; restart r draws from its own stream
    ``default_rng([base, r])``, so restart r's draws do not depend on R.
    """
    base = int(rng.integers(2**63))
    return np.stack([np.random.default_rng([base, r]).random((NUM_SEEDS, num_clusters))
                     for r in range(num_restarts)])


def kmeans_plus_plus(points: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """k-means++ seeds (Arthur & Vassilvitskii 2007) for Q runs per feature array.

    points (W, T, N), uniforms (W, Q, K) in [0, 1) -> centres (W, Q, K, N). Run q's first
    centre is point floor(u_0 T); centre j is drawn with probability proportional to the
    squared distance to the nearest centre chosen so far (uniform when every distance is
    0), by inverse CDF: the first point whose cumulative weight exceeds u_j times the total.
    """
    width, num_points, _ = points.shape
    if uniforms.dim() != 3 or uniforms.shape[0] != width:
        raise ValueError(f"uniforms must have shape (W={width}, Q, K), got {tuple(uniforms.shape)}")
    num_clusters = uniforms.shape[2]
    uniforms = uniforms.to(device=points.device, dtype=torch.float64)
    rows = torch.arange(width, device=points.device).unsqueeze(1)
    squared_norms = (points * points).sum(-1).unsqueeze(-1)  # (W, T, 1)
    index = (uniforms[..., 0] * num_points).long().clamp_max(num_points - 1)  # (W, Q)
    chosen = [points[rows, index]]  # (W, Q, N)
    nearest = None
    for j in range(1, num_clusters):
        distance = (_centre_scores(points, chosen[-1]) + squared_norms).clamp_min(0.0)  # (W, T, Q)
        nearest = distance if nearest is None else torch.minimum(nearest, distance)
        weights = nearest.transpose(1, 2).to(torch.float64)  # (W, Q, T)
        weights = torch.where(weights.sum(-1, keepdim=True) > 0, weights, 1.0)
        cumulative = weights.cumsum(-1)
        target = uniforms[..., j:j + 1] * cumulative[..., -1:]
        index = torch.searchsorted(cumulative, target, right=True).squeeze(-1).clamp_max(num_points - 1)
        chosen.append(points[rows, index])
    return torch.stack(chosen, 2)


def lloyd(points: torch.Tensor, centres: torch.Tensor, max_iters: int = 50, check_every: int = 5):
    """Batched Lloyd iterations from centres (W, Q, K, N) on points (W, T, N).

    Each iteration assigns every point to its nearest centre of every run, then moves each
    centre to the mean of its points (an empty cluster keeps its centre). Every
    ``check_every`` iterations (one host sync), runs whose labels did not change in the
    last iteration (for every width) are at a fixed point: they are set aside and the
    batch shrinks to the runs still moving. Stops when none moves or after ``max_iters``
    assignments. Returns labels (W, Q, T), inertia (W, Q) (sum of squared distances to
    the assigned centres) and centres (W, Q, K, N).
    """
    if max_iters < 1 or check_every < 1:
        raise ValueError(f"max_iters and check_every must be >= 1, got {max_iters}, {check_every}")
    width, num_runs, num_clusters, dim = centres.shape
    squared_norms = (points * points).sum(-1)  # (W, T)
    cluster_ids = torch.arange(num_clusters, device=points.device)
    labels_out = torch.empty(width, points.shape[1], num_runs, dtype=torch.long, device=points.device)
    best_out = points.new_empty(width, points.shape[1], num_runs)
    centres_out = centres.clone()
    active = torch.arange(num_runs, device=points.device)  # runs still in the batch
    previous = None
    for iteration in range(max_iters):
        runs = centres.shape[1]
        scores = _centre_scores(points, centres.reshape(width, -1, dim))
        best, labels = scores.view(width, -1, runs, num_clusters).min(-1)  # (W, T, runs)
        last = iteration == max_iters - 1
        if last or (previous is not None and (iteration + 1) % check_every == 0):
            moving = torch.zeros_like(active, dtype=torch.bool) if last else (labels != previous).any(1).any(0)
            done, go = (~moving).nonzero().squeeze(1), moving.nonzero().squeeze(1)
            labels_out[:, :, active[done]] = labels[:, :, done]
            best_out[:, :, active[done]] = best[:, :, done]
            centres_out[:, active[done]] = centres[:, done]
            if go.numel() == 0:
                break
            if done.numel():
                active, labels, centres = active[go], labels[:, :, go], centres[:, go]
                runs = go.numel()
        previous = labels
        one_hot = (labels.unsqueeze(-1) == cluster_ids).to(points.dtype).view(width, -1, runs * num_clusters)
        sums = one_hot.transpose(1, 2) @ points  # (W, runs*K, N)
        members = one_hot.sum(1).unsqueeze(-1)  # (W, runs*K, 1)
        means = (sums / members.clamp_min(1.0)).view(width, runs, num_clusters, dim)
        centres = torch.where(members.view(width, runs, num_clusters, 1) > 0, means, centres)
    inertia = (best_out + squared_norms.unsqueeze(-1)).clamp_min(0.0).sum(1)  # (W, Q)
    return labels_out.transpose(1, 2), inertia, centres_out


def kmeans(points: torch.Tensor, uniforms: torch.Tensor, max_iters: int = 50):
    """Q k-means++-seeded Lloyd runs of K clusters on each feature array of points (W, T, N),
    seeded by ``uniforms`` (W, Q, K) (see ``kmeans_plus_plus``).

    Returns labels (W, Q, T) and inertia (W, Q) of every run (the caller keeps the best).
    """
    if points.dim() != 3:
        raise ValueError(f"points must have shape (W, T, N), got {tuple(points.shape)}")
    centres = kmeans_plus_plus(points, uniforms)
    labels, inertia, _ = lloyd(points, centres, max_iters)
    return labels, inertia


def restart_labels(data: PreparedData, num_states: int, num_restarts: int, rng: np.random.Generator,
                   smoothing_bins: float = 20.0) -> torch.Tensor:
    """k-means labels (R, T_total) of every restart: the best of ``NUM_SEEDS`` runs each.

    Restart r uses width factor ``_WIDTH_FACTORS[r % W]`` (W = min(R, 8); equal to
    ``r % 8`` for every r < R) and is slot r // W of that width; its ``NUM_SEEDS`` runs draw
    from restart r's own uniforms (``restart_uniforms``), so restart r's labels do not
    depend on R. Slots past the last restart of a width (R not a multiple of W) are run
    with the uniforms of the restart numbers they would have, and dropped.
    """
    widths = min(num_restarts, len(_WIDTH_FACTORS))
    per_width = math.ceil(num_restarts / widths)
    features = torch.stack([smoothed_rates(data, smoothing_bins * factor)
                            for factor in _WIDTH_FACTORS[:widths]])  # (W, T, N)
    uniforms = restart_uniforms(rng, per_width * widths, num_states)  # (slot * W + w, seed, K)
    uniforms = uniforms.reshape(per_width, widths, NUM_SEEDS, num_states).transpose(1, 0, 2, 3)
    labels, inertia = kmeans(features, torch.as_tensor(uniforms.reshape(widths, -1, num_states)))
    labels = labels.view(widths, per_width, NUM_SEEDS, -1)
    best = inertia.view(widths, per_width, NUM_SEEDS).argmin(-1)  # (W, per_width)
    restart = torch.arange(num_restarts, device=features.device)
    width_of, slot_of = restart % widths, restart // widths
    return labels[width_of, slot_of, best[width_of, slot_of]]


def kmeans_initialization(
    data: PreparedData, num_states: int, num_restarts: int, rng: np.random.Generator,
    link: str, smoothing_bins: float = 20.0, newton_steps: int = 4, ridge: float = 1e-6,
    outer: PackedOuterProducts | None = None,
) -> HMMGLMParams:
    """Parameters with a leading restart axis R = num_restarts (see module docstring)."""
    counts, design = data.counts, data.design
    dtype, device = counts.dtype, counts.device
    num_neurons = counts.shape[1]
    labels = restart_labels(data, num_states, num_restarts, rng, smoothing_bins)  # (R, T)
    resp = F.one_hot(labels.T, num_states).to(dtype)  # (T, R, K)
    # label counts plus one pseudo-count: transitions within a sequence, first states
    k2 = num_states * num_states
    within = torch.ones(counts.shape[0] - 1, dtype=dtype, device=device)
    within[data.starts[1:] - 1] = 0.0  # t -> t+1 crosses into the next sequence
    pairs = labels[:, :-1] * num_states + labels[:, 1:]
    trans = torch.ones(num_restarts, k2, dtype=dtype, device=device)
    trans = trans.scatter_add_(1, pairs, within.expand(num_restarts, -1)).view(-1, num_states, num_states)
    first = torch.ones(num_restarts, num_states, dtype=dtype, device=device)
    first_labels = labels[:, data.starts]
    first = first.scatter_add_(1, first_labels, torch.ones_like(first_labels, dtype=dtype))
    log_transition = torch.log(trans / trans.sum(-1, keepdim=True))
    log_initial = torch.log(first / first.sum(-1, keepdim=True))
    mass = resp.sum(0).clamp_min(1e-12)  # (R, K)
    mean_counts = torch.einsum("trk,tn->rkn", resp, counts) / mass.unsqueeze(-1)
    overall = counts.mean(0).clamp_min(1e-3)
    mean_counts = torch.where(mean_counts > 0, mean_counts, overall)
    theta = counts.new_zeros(num_restarts, num_states, num_neurons, design.shape[1])
    theta[..., 0] = inverse_mean_function(mean_counts, link)
    outer = outer or PackedOuterProducts(design)
    for _ in range(newton_steps):
        theta, _, _, _ = newton_step(design, outer, counts, resp, theta, link, ridge=ridge,
                                     spikes=data.spikes)
    weights_shape = (num_restarts, num_states, num_neurons, num_neurons, -1)
    return HMMGLMParams(
        log_initial, log_transition,
        theta[..., 0], theta[..., 1:].reshape(weights_shape),
    )
