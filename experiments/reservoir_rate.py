"""Spiking reservoir firing rate vs constant drive (the network's f-I curve); batch-capable.

A heterogeneous Izhikevich reservoir (``neuro.reservoir``: 80 % excitatory regular-spiking
to chattering cells, 20 % inhibitory fast-spiking to low-threshold cells, Izhikevich 2003,
IEEE TNN 14:1569) with fixed in-degree K random wiring gets a constant input current
``drive`` on every neuron plus white noise of ``noise_std`` mV rms per ms. The metrics
are rates after a warm-up: population, excitatory, inhibitory, the spread across
neurons, and the fraction of neurons that spiked at all.

This is the sweep's batched-execution example: ``run_batch`` simulates several points
(same size and duration, any drive / weight scale / noise) as one batch of networks
with ``neuro.reservoir.simulate``. Each point's network and noise come from its own seed,
exactly as in ``run``, so a point's metrics do not depend on its batch-mates.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from experiments.store import RunDir


@dataclass(frozen=True)
class Config:
    num_neurons: int = field(default=200, metadata={"min": 2, "max": 100_000, "help": "N"})
    in_degree: int = field(default=20, metadata={"min": 0, "max": 10_000,
                                                 "help": "recurrent inputs per neuron, K"})
    drive: float = field(default=5.0, metadata={"min": -50.0, "max": 100.0,
                                                "help": "constant input current on every neuron"})
    weight_scale: float = field(default=3.0, metadata={"min": 0.0, "max": 100.0,
                                                       "help": "excitatory weights U(0, scale) mV"})
    noise_std: float = field(default=5.0, metadata={"min": 0.0, "max": 100.0,
                                                    "help": "noise, mV rms per ms"})
    duration_ms: float = field(default=1000.0, metadata={"min": 1.0, "max": 1e6,
                                                         "help": "measured time after warm-up"})
    warmup_ms: float = field(default=100.0, metadata={"min": 0.0, "max": 1e6,
                                                      "help": "discarded initial transient"})
    dt_ms: float = field(default=0.5, metadata={"min": 0.01, "max": 1.0, "help": "time step"})

    def __post_init__(self):
        _check(self)  # a config error (exit 2, before any run directory), not a failed run


DEMO = {"duration_ms": 300.0}


def batch_key(config: Config) -> tuple:
    """Points with equal sizes and time grids can share one batched simulation."""
    return (config.num_neurons, config.in_degree, config.duration_ms, config.warmup_ms, config.dt_ms)


def _check(config: Config) -> None:
    if config.in_degree > config.num_neurons - 1:
        raise ValueError(f"in_degree={config.in_degree} exceeds num_neurons - 1 = "
                         f"{config.num_neurons - 1} (no autapses)")


def _network(config: Config, seed: int):
    """One network and its noise, from the point's seed only: (params, noise [T, N])."""
    import torch

    from neuro.reservoir import make_reservoir

    network_seed, noise_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    params, _ = make_reservoir(config.num_neurons, 1, batch_size=1, in_degree=config.in_degree,
                               weight_scale=config.weight_scale if config.weight_scale > 0 else None,
                               noise_std=config.noise_std, seed=network_seed)
    if config.weight_scale == 0:  # no recurrence: keep the wiring's shape, zero its weights
        params = _replace_synapses(params, params.synapses._replace(weight=params.synapses.weight * 0))
    steps = _steps(config)
    generator = torch.Generator().manual_seed(noise_seed)
    noise = torch.randn(steps, config.num_neurons, generator=generator, dtype=params.dtype)
    noise *= config.noise_std / config.dt_ms ** 0.5  # white noise, std noise_std / sqrt(dt)
    return params, noise


def _replace_synapses(params, synapses):
    import dataclasses

    return dataclasses.replace(params, synapses=synapses)


def _steps(config: Config) -> int:
    return round((config.warmup_ms + config.duration_ms) / config.dt_ms)


def _measured_seconds(config: Config) -> float:
    """The time the rates are counted over: the steps after warm-up (each total rounded to
    whole steps, so at dt 0.3 ms, 0.5 ms warm-up and 1 ms duration it is 0.9 ms, not 1)."""
    return (_steps(config) - round(config.warmup_ms / config.dt_ms)) * config.dt_ms / 1000.0


def _stack(networks: list):
    """B single-network params -> one batch (networks keep their own neurons and wiring)."""
    import dataclasses

    import torch

    from neuro.reservoir.connectivity import SynapseList
    from neuro.reservoir.izhikevich import IzhikevichParams

    first = networks[0]
    neurons = IzhikevichParams(*(torch.cat([getattr(p.neurons, k) for p in networks])
                                 for k in ("a", "b", "c", "d")),
                               v_peak_mv=first.neurons.v_peak_mv, refractory_ms=first.neurons.refractory_ms)
    synapses = SynapseList(
        torch.cat([torch.full_like(p.synapses.batch_index, i) for i, p in enumerate(networks)]),
        torch.cat([p.synapses.pre_index for p in networks]),
        torch.cat([p.synapses.post_index for p in networks]),
        torch.cat([p.synapses.weight for p in networks]))
    return dataclasses.replace(
        first, neurons=neurons, synapses=synapses,
        input_weights=torch.ones(len(networks), first.num_neurons, 1, dtype=first.dtype),
        noise_std=torch.cat([p.noise_std.expand(1, -1) for p in networks]))


def _simulate(configs: list[Config], seeds: list[int]) -> list[np.ndarray]:
    """Spike counts per neuron after warm-up, [N] per point, from one batched simulation."""
    import torch

    from neuro.reservoir import initial_state, simulate

    first = configs[0]
    built = [_network(c, s) for c, s in zip(configs, seeds)]
    params = _stack([p for p, _ in built])
    noise = torch.stack([n for _, n in built])                                   # [B, T, N]
    steps = noise.shape[1]
    drive = torch.tensor([c.drive for c in configs], dtype=params.dtype)
    inputs = drive[:, None, None].expand(len(configs), steps, 1)                 # [B, T, 1]
    result = simulate(params, initial_state(params), inputs, first.dt_ms, noise=noise)
    warmup_steps = round(first.warmup_ms / first.dt_ms)
    record = result.spikes
    keep = record.step >= warmup_steps
    flat = record.batch_index[keep] * first.num_neurons + record.neuron[keep]
    counts = torch.bincount(flat, minlength=len(configs) * first.num_neurons)
    return list(counts.view(len(configs), first.num_neurons).numpy())


def _metrics(config: Config, counts: np.ndarray) -> dict[str, float]:
    rates = counts / _measured_seconds(config)
    excitatory = np.arange(config.num_neurons) < round(0.8 * config.num_neurons)
    return {"rate_hz": float(rates.mean()), "excitatory_rate_hz": float(rates[excitatory].mean()),
            "inhibitory_rate_hz": float(rates[~excitatory].mean()) if (~excitatory).any() else 0.0,
            "rate_std_hz": float(rates.std()), "active_fraction": float((counts > 0).mean())}


def run_batch(configs: list[Config], outs: list[RunDir]) -> list[dict[str, float]]:
    """Simulate every point in one batch; ``batch_key`` must agree across ``configs``."""

    keys = {batch_key(c) for c in configs}
    if len(keys) != 1:
        raise ValueError(f"run_batch got incompatible configs (batch keys {sorted(keys)}); "
                         "group points by batch_key first")
    for config in configs:
        _check(config)
    counts = _simulate(configs, [out.seed for out in outs])
    results = []
    for config, out, point_counts in zip(configs, outs, counts):
        out.save_arrays("rates", spike_counts=point_counts, rate_hz=point_counts / _measured_seconds(config))
        metrics = _metrics(config, point_counts)
        out.log(f"drive {config.drive}: {metrics['rate_hz']:.2f} Hz")
        results.append(metrics)
    return results


def run(config: Config, out: RunDir) -> dict[str, float]:
    return run_batch([config], [out])[0]
