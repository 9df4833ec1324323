"""Default initialization: k-means on smoothed population rates, then hard-assignment GLMs.

1. Smooth every neuron's counts with a Gaussian kernel (``smoothing_bins`` standard
   deviation; restart r scales it by a fixed factor for diversity), z-score each neuron,
   and cluster the bins into K groups by k-means (best inertia of 5 k-means++ seeds).
2. Use the cluster labels as hard posteriors: initial and transition probabilities from
   label counts (plus one pseudo-count), and a few Newton steps of each state's GLM on the
   bins of its cluster, starting from the state's mean rate with zero coupling.

Rate states are what a k-means can see; states that differ in coupling change the
population rates too, which is enough to start EM in the right basin (our choice, after
the frontier prototype in ANCHORS.md: random starts stayed at 0.89 accuracy).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from neuro.hmmglm.data import PreparedData
from neuro.hmmglm.glm import inverse_mean_function
from neuro.hmmglm.newton import PackedOuterProducts, newton_step
from neuro.hmmglm.params import HMMGLMParams


_WIDTH_FACTORS = (1.0, 0.5, 2.0, 0.75, 1.5, 0.35, 3.0, 1.25)


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


def kmeans(points: torch.Tensor, num_clusters: int, rng: np.random.Generator, iters: int = 50,
           num_inits: int = 5):
    """Best (lowest inertia) of ``num_inits`` k-means++-seeded Lloyd runs; returns labels (T,)."""
    best, best_inertia = None, math.inf
    for _ in range(num_inits):
        labels, inertia = _lloyd(points, num_clusters, rng, iters)
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def _squared_distances(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """|x - c|^2 = |x|^2 - 2 x.c + |c|^2 (one matrix product)."""
    return (points * points).sum(1, keepdim=True) - 2 * points @ centres.T + (centres * centres).sum(1)


def _lloyd(points: torch.Tensor, num_clusters: int, rng: np.random.Generator, iters: int):
    num_points = points.shape[0]
    centres = [points[int(rng.integers(num_points))]]
    for _ in range(1, num_clusters):
        dist = _squared_distances(points, torch.stack(centres)).amin(1).clamp_min(0)
        probs = (dist / dist.sum().clamp_min(1e-300)).cpu().numpy()
        probs = probs / probs.sum() if probs.sum() > 0 else np.full(num_points, 1.0 / num_points)
        centres.append(points[int(rng.choice(num_points, p=probs))])
    centres = torch.stack(centres)
    labels = torch.zeros(num_points, dtype=torch.long, device=points.device)
    for _ in range(iters):
        labels_new = _squared_distances(points, centres).argmin(1)
        if _ > 0 and bool((labels_new == labels).all()):
            break
        labels = labels_new
        for k in range(num_clusters):
            members = labels == k
            if bool(members.any()):
                centres[k] = points[members].mean(0)
    inertia = float(((points - centres[labels]) ** 2).sum())
    return labels, inertia


def kmeans_initialization(
    data: PreparedData, num_states: int, num_restarts: int, rng: np.random.Generator,
    link: str, smoothing_bins: float = 20.0, newton_steps: int = 4, ridge: float = 1e-6,
    outer: PackedOuterProducts | None = None,
) -> HMMGLMParams:
    """Parameters with a leading restart axis R = num_restarts (see module docstring)."""
    counts, design = data.counts, data.design
    dtype, device = counts.dtype, counts.device
    num_neurons = counts.shape[1]
    resp = counts.new_zeros(counts.shape[0], num_restarts, num_states)
    log_initial, log_transition = [], []
    for r in range(num_restarts):
        # restarts differ by their smoothing width (and k-means seeds), for diversity
        features = smoothed_rates(data, smoothing_bins * _WIDTH_FACTORS[r % len(_WIDTH_FACTORS)])
        labels = kmeans(features, num_states, rng)
        resp[torch.arange(labels.numel(), device=device), r, labels] = 1.0
        trans = torch.ones(num_states, num_states, dtype=dtype, device=device)
        first = torch.ones(num_states, dtype=dtype, device=device)
        for start, length in zip(data.starts.tolist(), data.lengths.tolist()):
            seq = labels[start:start + length]
            trans.index_put_((seq[:-1], seq[1:]), torch.ones_like(seq[1:], dtype=dtype), accumulate=True)
            first[seq[0]] += 1.0
        log_transition.append(torch.log(trans / trans.sum(1, keepdim=True)))
        log_initial.append(torch.log(first / first.sum()))
    mass = resp.sum(0).clamp_min(1e-12)  # (R, K)
    mean_counts = torch.einsum("trk,tn->rkn", resp, counts) / mass.unsqueeze(-1)
    overall = counts.mean(0).clamp_min(1e-3)
    mean_counts = torch.where(mean_counts > 0, mean_counts, overall)
    theta = counts.new_zeros(num_restarts, num_states, num_neurons, design.shape[1])
    theta[..., 0] = inverse_mean_function(mean_counts, link)
    outer = outer or PackedOuterProducts(design)
    for _ in range(newton_steps):
        theta, _, _, _ = newton_step(design, outer, counts, resp, theta, link, ridge=ridge)
    weights_shape = (num_restarts, num_states, num_neurons, num_neurons, -1)
    return HMMGLMParams(
        torch.stack(log_initial), torch.stack(log_transition),
        theta[..., 0], theta[..., 1:].reshape(weights_shape),
    )
