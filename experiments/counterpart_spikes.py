"""Spike trains modelled by the HMM-GLM (none/Gaussian/one-hot priors) and by causal sequence models.

Two data sources with a known hidden state: (1) a ground-truth HMM-GLM, problem (b) of
``neuro.hmmglm.simulate`` (Li et al., arXiv 2310.15263: K=5 states, N=20 neurons); (2) a
spiking Izhikevich reservoir whose input switches between K regimes by a sticky Markov
chain (the hidden state is the regime; a random subset of neurons is recorded, counts in
``bin_ms`` bins). Each is modelled, for several training lengths (nested prefixes), by
(a) the HMM-GLM with each prior, fitted by generalized EM, and (b) small causal sequence
models (mixer patterns of ``bridges``: softmax, linear, GLA, delta) trained to predict the
next bin's counts with a Poisson loss (early stopping on the end of the training data).
Metrics: held-out bits per spike (log-likelihood gain over each neuron's mean rate, per
spike, in bits) vs training length; HMM-GLM: held-out state accuracy (Hungarian matching);
sequence models: accuracy of a linear probe decoding the hidden state from each layer's
activations (fit on the first half of the held-out bins, tested on the second; the probe is
supervised, the HMM-GLM is not). The question: where does the structured model win, and
where does the flexible one catch up?
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from experiments.store import RunDir

PRIORS = ("none", "gaussian", "onehot")
DATASETS = ("hmmglm", "reservoir")


@dataclass(frozen=True)
class Config:
    datasets: tuple[str, ...] = field(default=DATASETS, metadata={"choices": DATASETS, "help": "hmmglm, reservoir"})
    train_lengths: tuple[int, ...] = field(default=(1000, 4000, 16000), metadata={"help": "training bins (nested prefixes)"})
    test_length: int = field(default=4000, metadata={"min": 200, "help": "held-out bins"})
    num_states: int = field(default=5, metadata={"min": 2, "max": 20, "help": "HMM-GLM ground truth: K"})
    num_neurons: int = field(default=20, metadata={"min": 2, "max": 200, "help": "HMM-GLM ground truth: N"})
    priors: tuple[str, ...] = field(default=PRIORS, metadata={"choices": PRIORS, "help": "none, gaussian, onehot"})
    em_iterations: int = field(default=60, metadata={"min": 1, "help": "max EM iterations per fit"})
    patterns: tuple[str, ...] = field(default=("SS", "LL", "GG", "DD"), metadata={"help": "mixer pattern per sequence model"})
    model_dim: int = field(default=32, metadata={"min": 4, "help": "sequence-model width"})
    num_heads: int = field(default=2, metadata={"min": 1, "help": "heads per mixer"})
    window: int = field(default=128, metadata={"min": 16, "help": "training/evaluation window (bins)"})
    train_steps: int = field(default=200, metadata={"min": 1, "help": "optimiser steps per sequence model"})
    batch_size: int = field(default=16, metadata={"min": 1, "help": "windows per step"})
    learning_rate: float = field(default=3e-3, metadata={"min": 0.0, "help": "peak AdamW learning rate"})
    validation_fraction: float = field(default=0.1, metadata={"min": 0.02, "max": 0.5, "help": "end of the training bins used for early stopping"})
    reservoir_neurons: int = field(default=200, metadata={"min": 20, "help": "reservoir size"})
    reservoir_in_degree: int = field(default=100, metadata={"min": 1, "help": "synapses per neuron"})
    reservoir_weight_scale: float = field(default=0.5, metadata={"min": 0.0, "help": "recurrent weights U(0, w)"})
    reservoir_noise_std: float = field(default=2.0, metadata={"min": 0.0, "help": "mV rms per ms"})
    recorded_neurons: int = field(default=20, metadata={"min": 2, "help": "neurons recorded from the reservoir"})
    reservoir_states: int = field(default=3, metadata={"min": 2, "help": "input regimes (hidden states)"})
    regime_stay_probability: float = field(default=0.99, metadata={"min": 0.0, "max": 1.0, "help": "per bin"})
    input_amplitude: float = field(default=1.0, metadata={"min": 0.0, "help": "regime input level"})
    input_scale: float = field(default=10.0, metadata={"min": 0.0, "help": "input weights N(0, s^2)"})
    bin_ms: float = field(default=10.0, metadata={"min": 0.5, "help": "reservoir counting bin (~0.1 spikes per bin at ~10 Hz)"})
    dt_ms: float = field(default=0.5, metadata={"min": 0.05, "max": 1.0, "help": "reservoir time step"})

    def __post_init__(self):
        if not self.datasets or not self.priors or not self.train_lengths:
            raise ValueError("datasets, priors and train_lengths must each name at least one value")
        if self.model_dim % self.num_heads:
            raise ValueError(f"model_dim ({self.model_dim}) must be divisible by num_heads ({self.num_heads})")
        if min(self.train_lengths) < 2 * self.window or sorted(self.train_lengths) != list(self.train_lengths):
            raise ValueError(f"train_lengths must be increasing and each >= 2 * window = {2 * self.window}, "
                             f"got {self.train_lengths}")
        steps = round(self.bin_ms / self.dt_ms)
        if steps < 1 or abs(steps * self.dt_ms - self.bin_ms) > 1e-9:
            raise ValueError(f"bin_ms={self.bin_ms} must be a whole number of dt_ms={self.dt_ms} steps")


DEMO = {"train_lengths": (1000, 4000), "test_length": 2000, "em_iterations": 25, "patterns": ("SS", "DD"),
        "train_steps": 80, "reservoir_neurons": 100}


def _hmmglm_data(config: Config, seeds):
    from neuro.hmmglm import HMMGLM, make_params, paper_problem

    problem = paper_problem(max(config.train_lengths), seed=seeds[0], num_states=config.num_states,
                            num_neurons=config.num_neurons)
    truth = HMMGLM(config.num_states, config.num_neurons, basis=problem.basis, link=problem.link)
    truth.set_params(make_params(problem.initial, problem.transition, problem.bias, problem.weights))
    test, test_states, _ = truth.sample(config.test_length, seed=seeds[1])
    return (problem.spikes, problem.states, test, test_states, config.num_states, problem.basis,
            float(truth.score(test)))


def _reservoir_data(config: Config, seeds, device):
    import torch

    from neuro.hmmglm.simulate import paper_problem, sample_states
    from neuro.reservoir.build import make_reservoir
    from neuro.reservoir.simulation import simulate

    k = config.reservoir_states
    total = max(config.train_lengths) + config.test_length
    rng = np.random.default_rng(seeds[0])
    transition = np.full((k, k), (1 - config.regime_stay_probability) / (k - 1))
    np.fill_diagonal(transition, config.regime_stay_probability)
    states = sample_states(np.full(k, 1.0 / k), transition, total, rng)
    steps = round(config.bin_ms / config.dt_ms)
    in_degree = min(config.reservoir_in_degree, config.reservoir_neurons - 1)
    # network constants of the what_when study (weights U(0, 0.5), 50 ms exponential synapses,
    # 2 mV/ms noise): an asynchronous ~10 Hz regime
    params, state = make_reservoir(config.reservoir_neurons, k, in_degree=in_degree, input_scale=config.input_scale,
                                   weight_scale=config.reservoir_weight_scale, synapse="exponential",
                                   synapse_tau_ms=50.0, noise_std=config.reservoir_noise_std,
                                   seed=np.random.default_rng(seeds[1]), device=device)
    recorded = np.sort(rng.choice(config.reservoir_neurons, config.recorded_neurons, replace=False))
    counts = np.zeros((total, config.reservoir_neurons))
    noise_rng, chunk = np.random.default_rng(seeds[2]), 2000                  # bins per simulate call
    for first in range(0, total, chunk):
        block = states[first:first + chunk]
        inputs = torch.zeros(1, block.size * steps, k, device=device)
        inputs[0, torch.arange(block.size * steps), torch.as_tensor(np.repeat(block, steps))] = config.input_amplitude
        result = simulate(params, state, inputs, config.dt_ms, seed=noise_rng, record="indices")
        state = result.state
        step, neuron = result.spikes.step.cpu().numpy(), result.spikes.neuron.cpu().numpy()
        np.add.at(counts, (first + step // steps, neuron), 1)
    counts = counts[:, recorded]
    train_bins = max(config.train_lengths)
    basis = paper_problem(50, seed=0).basis
    return counts[:train_bins], states[:train_bins], counts[train_bins:], states[train_bins:], k, basis, float("nan")


def _match(true_states, inferred, k):
    from scipy.optimize import linear_sum_assignment

    overlap = np.zeros((k, max(k, int(inferred.max()) + 1)))
    np.add.at(overlap, (true_states, inferred), 1)
    rows, cols = linear_sum_assignment(-overlap)
    return float(overlap[rows, cols].sum() / len(true_states))


def run(config: Config, out: RunDir) -> dict[str, float]:
    import torch

    from experiments._spike_models import held_out_bits_per_spike, make_model, probe_accuracy, train
    from neuro.hmmglm import HMMGLM

    torch.set_num_threads(1)
    rows, metrics, curves = [], {}, {}
    for d_index, dataset in enumerate(config.datasets):
        seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence([out.seed, d_index]).spawn(6)]
        data = _hmmglm_data(config, seeds) if dataset == "hmmglm" else _reservoir_data(config, seeds, out.device)
        train_counts, _train_states, test, test_states, k, basis, true_bps = data
        if dataset == "hmmglm":
            metrics["hmmglm_true_heldout_bits_per_spike"] = true_bps
        out.log(f"{dataset}: {train_counts.shape[1]} neurons, {train_counts.mean():.3f} spikes/bin, K={k}")
        # chance of the probes: the most frequent state in the half of the held-out bins they are tested on
        tested = test_states[len(test_states) // 2:]
        metrics[f"{dataset}_probe_chance_accuracy"] = float(np.bincount(tested).max() / tested.size)
        for length in config.train_lengths:
            spikes = train_counts[:length]
            for prior in out.progress(config.priors, desc=f"{dataset} HMM-GLM T={length}"):
                model = HMMGLM(k, spikes.shape[1], basis=basis, link="softplus", prior=prior, device=out.device)
                history = model.fit(spikes, num_iters=config.em_iterations, seed=seeds[3])
                inferred = model.posterior(test).smoothed[0].argmax(-1).cpu().numpy()
                rows.append({"dataset": dataset, "model": f"hmmglm_{prior}", "train_bins": length,
                             "heldout_bits_per_spike": float(model.score(test)),
                             "state_accuracy": _match(test_states, inferred, k), "probe_accuracy": float("nan"),
                             "input_probe_accuracy": float("nan"), "seconds": float(history["seconds"])})
                out.log(str(rows[-1]))
            for p_index, pattern in enumerate(out.progress(config.patterns, desc=f"{dataset} sequence T={length}")):
                rng = np.random.default_rng([seeds[4], length, p_index])
                model = make_model(pattern, spikes.shape[1], model_dim=config.model_dim, num_heads=config.num_heads,
                                   window=config.window, mean_rate=spikes.mean(0), seed=rng, device=out.device)
                import time
                start = time.perf_counter()
                history = train(model, spikes, window=config.window, steps=config.train_steps,
                                batch=config.batch_size, learning_rate=config.learning_rate,
                                validation_fraction=config.validation_fraction,
                                eval_every=max(1, config.train_steps // 8), rng=rng, device=out.device)
                seconds = time.perf_counter() - start
                bps, scored, hidden = held_out_bits_per_spike(model, test, config.window, collect_hidden=True)
                probes = [probe_accuracy(h, test_states[scored]) for h in hidden]
                rows.append({"dataset": dataset, "model": f"seq_{pattern}", "train_bins": length,
                             "heldout_bits_per_spike": float(bps), "state_accuracy": float("nan"),
                             "probe_accuracy": float(np.nanmax(probes[1:])), "input_probe_accuracy": probes[0],
                             "seconds": seconds})
                curves[f"{dataset}_{pattern}_{length}"] = history["validation"]
                out.log(str(rows[-1]) + f"; probe per layer {np.round(probes, 3).tolist()}")
    for row in rows:
        stem = f"{row['dataset']}_{row['model']}"
        metrics[f"{stem}_bits_per_spike_T{row['train_bins']}"] = row["heldout_bits_per_spike"]
        key = "state_accuracy" if row["model"].startswith("hmmglm") else "probe_accuracy"
        metrics[f"{stem}_{key}_T{row['train_bins']}"] = row[key]
    verdicts = _verdict(config, rows, metrics)
    for line in verdicts:
        out.log(line)
    out.save_table("models", rows, caption="Held-out bits/spike, HMM-GLM state accuracy (Hungarian) and "
                   "sequence-model probe accuracy (best layer; input_probe: the input layer) per data set, "
                   "model and training length. " + " ".join(verdicts))
    _figures(out, config, rows, metrics, curves)
    return metrics


def _verdict(config, rows, metrics) -> list[str]:
    """Per data set and length, which family has the better held-out bits/spike; and
    ``<dataset>_sequence_catches_up_at_bins``: the shortest training length from which the best
    sequence model matches or beats the best HMM-GLM at that and every longer length (inf when
    it is behind at the longest length: a lead at short lengths that is lost later is no
    catching up)."""
    lines = []
    for dataset in config.datasets:
        crossover = float("inf")
        for length in config.train_lengths:
            sel = [r for r in rows if r["dataset"] == dataset and r["train_bins"] == length]
            hmm = max((r for r in sel if r["model"].startswith("hmmglm")), key=lambda r: r["heldout_bits_per_spike"])
            seq = max((r for r in sel if r["model"].startswith("seq")), key=lambda r: r["heldout_bits_per_spike"])
            gap = seq["heldout_bits_per_spike"] - hmm["heldout_bits_per_spike"]
            metrics[f"{dataset}_sequence_minus_hmmglm_bits_per_spike_T{length}"] = gap
            if gap < 0:
                crossover = float("inf")
            elif not np.isfinite(crossover):
                crossover = float(length)
            lines.append(f"{dataset}, T={length}: best HMM-GLM {hmm['model']} {hmm['heldout_bits_per_spike']:.4f}, "
                         f"best sequence model {seq['model']} {seq['heldout_bits_per_spike']:.4f} bits/spike "
                         f"-> {'sequence model' if gap >= 0 else 'HMM-GLM'} wins by {abs(gap):.4f}")
        metrics[f"{dataset}_sequence_catches_up_at_bins"] = crossover
    return lines


def _figures(out, config, rows, metrics, curves):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5 * len(config.datasets), 7))
    axes = fig.subplots(2, len(config.datasets), squeeze=False)
    for col, dataset in enumerate(config.datasets):
        models = sorted({r["model"] for r in rows if r["dataset"] == dataset})
        for model in models:
            sel = sorted((r for r in rows if r["dataset"] == dataset and r["model"] == model), key=lambda r: r["train_bins"])
            lengths = [r["train_bins"] for r in sel]
            style = "-o" if model.startswith("hmmglm") else "--s"
            axes[0, col].plot(lengths, [r["heldout_bits_per_spike"] for r in sel], style, label=model, ms=4)
            key = "state_accuracy" if model.startswith("hmmglm") else "probe_accuracy"
            axes[1, col].plot(lengths, [r[key] for r in sel], style, label=f"{model} ({key.split('_')[0]})", ms=4)
        if dataset == "hmmglm":
            axes[0, col].axhline(metrics["hmmglm_true_heldout_bits_per_spike"], color="k", ls=":", label="true model")
        axes[0, col].set_title(f"{dataset} data", fontsize=9)
        axes[0, col].set_ylabel("held-out bits/spike")
        axes[1, col].set_ylabel("hidden-state accuracy")
        for ax in axes[:, col]:
            ax.set_xscale("log"), ax.set_xlabel("training bins"), ax.legend(fontsize=6)
    out.save_figure(fig, "bits_per_spike", caption="Top: held-out bits per spike vs training length (solid: "
                    "HMM-GLM priors; dashed: sequence models by mixer pattern). Bottom: HMM-GLM held-out state "
                    "accuracy (unsupervised, Hungarian-matched) and the sequence models' best-layer linear-probe "
                    "accuracy (supervised probe).")
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    for name, curve in curves.items():
        if name.endswith(f"_{max(config.train_lengths)}"):
            ax.plot(curve, label=name.rsplit("_", 1)[0])
    ax.set_xlabel("validation check"), ax.set_ylabel("validation NLL (nats/bin/neuron)"), ax.legend(fontsize=6)
    out.save_figure(fig, "validation", caption="Validation loss of the sequence models at the longest length.")
