"""Synthetic data with known structure: planted CP tensors and dynamic connectomes.

`make_planted_cp`: X = sum_r a_0r o ... o a_{N-1}r + noise, factors uniform on [0, 1),
Gaussian noise scaled to `noise` * ||X_true||_F, negatives clipped to 0 (so the noise floor,
||X - X_true|| / ||X||, is returned as measured, not assumed).

`make_dynamic_connectome` (our generator, after the setting of Dyballa et al., arXiv 2402.14102):
time is cut into `num_epochs` consecutive epochs; in epoch e the neurons are partitioned into
`num_communities` balanced communities (labels[e]); a fraction `remix_fraction` of neurons is
reassigned between consecutive epochs. For animal a, epoch e and community c a shared latent
drive s_aec(t) (Poisson events at `drive_rate_hz`, active only during epoch e) enters every
member with amplitude participation[a, e]; every neuron also has private events at
`private_rate_hz`. Events pass through a calcium kernel exp(-t / tau_calcium_s) and Gaussian
observation noise (std `noise_std`) is added:

    F_ai(t) = sum_e participation[a, e] * (k * s_{a,e,labels[e,i]})(t) + (k * p_ai)(t) + eps.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from neuro.connectome._checks import (
    Seed,
    as_real_array,
    check_device,
    check_positive_int,
    check_real,
    check_sequence,
    check_values,
    numpy_generator,
    resolve_dtype,
    torch_generator,
)
from neuro.connectome.cp_ops import cp_reconstruct

__all__ = [
    "DynamicConnectome",
    "PlantedCP",
    "make_dynamic_connectome",
    "make_planted_cp",
    "make_weighted_planted_partition",
]


class PlantedCP(NamedTuple):
    tensor: torch.Tensor
    factors: tuple[torch.Tensor, ...]
    noise_floor: float


def make_planted_cp(shape, rank: int, *, noise: float = 0.1, seed: Seed = 0,
                    dtype: torch.dtype = torch.float64, device="cpu") -> PlantedCP:
    """Planted non-negative rank-`rank` tensor (see module docstring). Draws in float64 on
    the CPU (same data on every device), then casts."""
    check_sequence("shape", shape, "a list of mode sizes (ints >= 1)")
    if len(shape) < 1:
        raise ValueError("shape must hold at least one mode size, got ()")
    shape = [check_positive_int(f"shape[{n}]", size) for n, size in enumerate(shape)]
    rank = check_positive_int("rank", rank)
    noise = check_real("noise", noise, 0)
    dtype = resolve_dtype(dtype, torch.float64)
    device = check_device("device", device)
    generator = torch_generator(seed)
    factors = [torch.rand(size, rank, generator=generator, dtype=torch.float64) for size in shape]
    clean = cp_reconstruct(torch.ones(rank, dtype=torch.float64), factors)
    perturbation = torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    scale = noise * torch.linalg.vector_norm(clean) / torch.linalg.vector_norm(perturbation)
    noisy = (clean + scale * perturbation).clamp_(min=0)
    floor = float(torch.linalg.vector_norm(noisy - clean) / torch.linalg.vector_norm(noisy))
    del clean, perturbation
    return PlantedCP(noisy.to(dtype=dtype, device=device),
                     tuple(f.to(dtype=dtype, device=device) for f in factors), floor)


class DynamicConnectome(NamedTuple):
    """traces (animals, neurons, timesteps); labels (epochs, neurons) community per epoch;
    epoch_of_time (timesteps,) epoch index; participation (animals, epochs); dt_s."""

    traces: np.ndarray
    labels: np.ndarray
    epoch_of_time: np.ndarray
    participation: np.ndarray
    dt_s: float

    def epoch_indicator(self, window: int, step: int) -> np.ndarray:
        """(epochs, windows): fraction of each sliding window (same windows as
        `affinity_tensor(window, step)`) that falls in each epoch."""
        window = check_positive_int("window", window)
        step = check_positive_int("step", step)
        if window > self.epoch_of_time.size:
            raise ValueError(f"window ({window}) must be <= num_timesteps "
                             f"({self.epoch_of_time.size})")
        num_windows = (self.epoch_of_time.size - window) // step + 1
        starts = np.arange(num_windows) * step
        one_hot = np.eye(self.labels.shape[0])[self.epoch_of_time]  # (T, epochs)
        cumulative = np.vstack([np.zeros((1, one_hot.shape[1])), np.cumsum(one_hot, axis=0)])
        return ((cumulative[starts + window] - cumulative[starts]) / window).T


def _balanced_labels(num_neurons: int, num_communities: int, rng) -> np.ndarray:
    return rng.permutation(np.arange(num_neurons) % num_communities)


def make_dynamic_connectome(
    *,
    num_neurons: int = 60,
    num_animals: int = 4,
    num_timesteps: int = 3000,
    num_epochs: int = 3,
    num_communities: int = 3,
    participation: np.ndarray | None = None,
    remix_fraction: float = 0.5,
    dt_s: float = 0.1,
    tau_calcium_s: float = 0.5,
    drive_rate_hz: float = 1.0,
    private_rate_hz: float = 0.5,
    noise_std: float = 0.2,
    seed: Seed = 0,
) -> DynamicConnectome:
    """See the module docstring. participation: (animals, epochs) in [0, 1]; default drawn
    uniform on [0.3, 1]."""
    num_neurons = check_positive_int("num_neurons", num_neurons, minimum=3)
    num_animals = check_positive_int("num_animals", num_animals)
    num_epochs = check_positive_int("num_epochs", num_epochs)
    num_communities = check_positive_int("num_communities", num_communities)
    num_timesteps = check_positive_int("num_timesteps", num_timesteps, minimum=num_epochs)
    if num_communities > num_neurons:
        raise ValueError(f"num_communities ({num_communities}) must be <= num_neurons "
                         f"({num_neurons})")
    remix_fraction = check_real("remix_fraction", remix_fraction, 0, 1)
    dt_s = check_real("dt_s", dt_s, 0, low_open=True)
    tau_calcium_s = check_real("tau_calcium_s", tau_calcium_s, 0, low_open=True, allow_inf=True)
    for name, value in (("drive_rate_hz", drive_rate_hz), ("private_rate_hz", private_rate_hz),
                        ("noise_std", noise_std)):
        check_real(name, value, 0)
    if participation is not None:
        participation = as_real_array("participation", participation)
        if participation.shape != (num_animals, num_epochs):
            raise ValueError(f"participation must have shape (num_animals, num_epochs) = "
                             f"{(num_animals, num_epochs)}, got {participation.shape}")
        check_values("participation", participation, nonnegative=True)
        if participation.max(initial=0.0) > 1.0:
            raise ValueError(f"participation must lie in [0, 1], got max {participation.max():.4g}")
        silent = np.flatnonzero(participation.max(0, initial=0.0) == 0.0) if participation.size else []
        if len(silent):
            raise ValueError(f"participation of epoch(s) {silent.tolist()} is 0 in every animal: such "
                             "an epoch plants nothing to recover; give each epoch a positive entry")
    rng = numpy_generator(seed)
    if participation is None:
        participation = rng.uniform(0.3, 1.0, size=(num_animals, num_epochs))

    labels = np.empty((num_epochs, num_neurons), dtype=np.int64)
    labels[0] = _balanced_labels(num_neurons, num_communities, rng)
    for epoch in range(1, num_epochs):
        labels[epoch] = labels[epoch - 1]
        movers = rng.choice(num_neurons, size=round(remix_fraction * num_neurons),
                            replace=False)
        labels[epoch, movers] = rng.permutation(labels[epoch, movers])
    boundaries = np.linspace(0, num_timesteps, num_epochs + 1).round().astype(int)
    epoch_of_time = np.repeat(np.arange(num_epochs), np.diff(boundaries))

    drives = rng.poisson(drive_rate_hz * dt_s,
                         size=(num_animals, num_epochs, num_communities, num_timesteps))
    active = epoch_of_time[None, :] == np.arange(num_epochs)[:, None]  # (epochs, T)
    drives = drives * active[None, :, None, :]
    events = rng.poisson(private_rate_hz * dt_s, size=(num_animals, num_neurons, num_timesteps))
    events = events.astype(np.float64)
    for epoch in range(num_epochs):
        member_drive = drives[:, epoch][:, labels[epoch], :]  # (animals, neurons, T)
        events += participation[:, epoch, None, None] * member_drive
    from scipy.signal import lfilter

    # Calcium kernel k(t) = exp(-t / tau) as the recursion c_t = exp(-dt / tau) c_{t-1} + events_t.
    convolved = lfilter([1.0], [1.0, -np.exp(-dt_s / tau_calcium_s)], events, axis=-1)
    traces = convolved + noise_std * rng.standard_normal(convolved.shape)
    return DynamicConnectome(traces, labels, epoch_of_time, participation, float(dt_s))


def make_weighted_planted_partition(
    *,
    num_nodes: int = 125,
    num_blocks: int = 5,
    probability_in: float = 0.3,
    probability_out: float = 0.05,
    weight_mean_in: float = 2.0,
    weight_mean_out: float = 1.0,
    seed: Seed = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted planted partition: balanced blocks, edges Bernoulli(probability_in / _out),
    weights Exponential(mean weight_mean_in / _out). Returns (adjacency (n, n) symmetric,
    labels (n,))."""
    num_nodes = check_positive_int("num_nodes", num_nodes)
    num_blocks = check_positive_int("num_blocks", num_blocks)
    if num_blocks > num_nodes:
        raise ValueError(f"num_blocks ({num_blocks}) must be <= num_nodes ({num_nodes})")
    for name, value in (("probability_in", probability_in), ("probability_out", probability_out)):
        check_real(name, value, 0, 1)
    for name, value in (("weight_mean_in", weight_mean_in), ("weight_mean_out", weight_mean_out)):
        check_real(name, value, 0, low_open=True)
    rng = numpy_generator(seed)
    labels = np.arange(num_nodes) * num_blocks // num_nodes
    same = labels[:, None] == labels[None, :]
    probability = np.where(same, probability_in, probability_out)
    mean = np.where(same, weight_mean_in, weight_mean_out)
    upper = np.triu(rng.random((num_nodes, num_nodes)) < probability, k=1)
    weights = np.where(upper, rng.exponential(1.0, (num_nodes, num_nodes)) * mean, 0.0)
    return weights + weights.T, labels
