"""What/when stream, online: spiking reservoir (three-factor, FORCE) vs fast-weight and softmax counterparts.

One sampled what/when session (blocks: baseline, latency switch, probability switch; the
task of ``what_when``, Yamada & Chao arXiv 2510.14382) is fed trial after trial, no replay,
to (a) the spiking reservoir with the three-factor readout, (b) the same reservoir and spikes
with FORCE, and FORCE with a reset of P at each switch, (c) a slow-weight sequence encoder
(bridges mixer pattern, default one delta-rule layer) whose delta-rule fast-weight memory is
written with each trial's (key, target) pairs during the stream (test-time memorisation,
Titans style, arXiv:2501.00663), its slow weights meta-trained beforehand on episodes with
OTHER latencies and probabilities; also with a learned forgetting gate (gated delta rule), and (d) the same encoder with softmax attention over the
(key, target) pairs of the last ``context_trials`` trials. Same inputs (bin means of the
task's input channels), same targets, same switch schedule; every learner is scored on its
output from its state at the trial start (no leak of a trial's own targets).
Not a like-for-like budget: the counterparts' slow weights have seen pretrain_steps x
pretrain_batch x pretrain_trials meta-training trials (28,800 by default) before the stream,
the reservoir readouts start from zero; the study asks how each re-adapts online, not which
is cheaper to obtain. A "recovery" from a negative pre-switch performance is not informative.
Metrics per learner: timing error of the "when" peak, correlation of fitted "what"
amplitudes with the true probabilities, trials to recover after each switch, compute per
trial (measured seconds and counted multiply-accumulates).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from experiments import what_when
from experiments.store import RunDir

RESERVOIR_LEARNERS = ("three_factor", "force", "force_reset")
SEQUENCE_LEARNERS = ("fast_weights", "gated_fast_weights", "softmax")
LEARNERS = RESERVOIR_LEARNERS + SEQUENCE_LEARNERS


@dataclass(frozen=True)
class Config:
    reservoir: what_when.Config = field(default_factory=what_when.Config)
    bin_ms: float = field(default=10.0, metadata={"min": 0.5, "help": "bin of every learner's inputs, outputs and scores (replaces reservoir.bin_ms)"})
    encoder_pattern: str = field(default="D", metadata={"help": "mixer letters of the slow encoder (bridges.mixers)"})
    model_dim: int = field(default=32, metadata={"min": 4, "help": "encoder width"})
    key_dim: int = field(default=64, metadata={"min": 2, "help": "fast-weight / attention key size K (a linear memory resolves at most K of the trial's bins)"})
    context_trials: int = field(default=10, metadata={"min": 1, "help": "softmax counterpart: trials in its KV cache"})
    pretrain_latencies_ms: tuple[float, ...] = field(
        default=(150.0, 250.0, 350.0, 450.0), metadata={"min": 60.0, "help": "meta-training latencies (test ones excluded)"})
    pretrain_steps: int = field(default=300, metadata={"min": 1, "help": "meta-training steps per counterpart"})
    pretrain_batch: int = field(default=8, metadata={"min": 1, "help": "episodes per step"})
    pretrain_trials: int = field(default=12, metadata={"min": 4, "help": "trials per episode"})
    learning_rate: float = field(default=3e-3, metadata={"min": 0.0, "help": "meta-training peak learning rate"})
    timing_trials: int = field(default=3, metadata={"min": 1, "help": "trials per learner in the compute timing"})


DEMO = {"reservoir.num_neurons": 300, "reservoir.trials_per_block": (16, 16, 16),
        "reservoir.evaluation_trials": 8, "pretrain_steps": 60, "timing_trials": 1}


def _reservoir_session(config: Config, out: RunDir, task, session):
    """Simulate the reservoir stream once with the three reservoir learners (what_when's set-up)."""

    from neuro.reservoir.build import make_reservoir
    from neuro.reservoir.training import run_session

    rc = replace(config.reservoir, bin_ms=config.bin_ms)
    net_seed, noise_seed, warm_seed, time_seed = np.random.SeedSequence(out.seed).spawn(5)[1:]
    params, state = make_reservoir(
        rc.num_neurons, task.num_inputs, in_degree=rc.in_degree, weight_scale=rc.weight_scale,
        noise_std=rc.noise_std, synapse="exponential", synapse_tau_ms=rc.synapse_tau_ms,
        input_scale=rc.input_scale, seed=np.random.default_rng(net_seed), device=out.device)
    result, offset, spread, power = what_when.warm_up(rc, task, params, state, warm_seed, out.device)
    learners = what_when.build_learners(rc, task, rc.num_neurons + 1, power)
    kwargs = {"feature_offset": offset, "feature_scale": spread, "feature_clip": rc.feature_clip,
              "bin_ms": rc.bin_ms, "engine": rc.engine}
    record = run_session(task, session, params, result.state, learners, rc.dt_ms,
                         seed=np.random.default_rng(noise_seed),
                         progress=lambda t: out.progress(t, total=session.num_trials, desc="reservoir trials"),
                         **kwargs)
    # compute: each learner alone on a few trials of the same network, minus the same trials
    # simulated with no learner (same call, same noise), timed after the session so that no
    # one-off start-up cost lands on either side (the cold warm-up trial once stood in for the
    # simulation and left every readout at 0.0 ms/trial)
    short = task.sample(np.random.default_rng(time_seed))
    short = short._replace(**{f: getattr(short, f)[:config.timing_trials] for f in short._fields})

    def seconds_per_trial(chosen) -> float:
        start = time.perf_counter()
        run_session(task, short, params, result.state, chosen, rc.dt_ms, seed=np.random.default_rng(0), **kwargs)
        return (time.perf_counter() - start) / config.timing_trials

    simulate_seconds = seconds_per_trial([])
    seconds = {learner.name: max(0.0, seconds_per_trial([learner]) - simulate_seconds) for learner in learners}
    return record, seconds, simulate_seconds, params


def _reservoir_macs(config: Config, task, params, rate_hz: float) -> dict:
    """Multiply-accumulates per trial: readouts (three-factor: output, eligibility, update and the
    replay pass, ~5 R D + D per step; FORCE: R D per step plus D^2 (P x) + D^2 (P update) + R D
    per RLS update) and the shared reservoir (~20 per neuron per step + K per spike)."""
    rc = config.reservoir
    steps = task.num_steps(rc.dt_ms)
    d, r = rc.num_neurons + 1, task.num_readouts
    spikes = rate_hz * rc.num_neurons * task.trial_ms * 1e-3
    replay = 2 if rc.consolidation == "replay" else 1
    force = steps * r * d + (steps // rc.force_update_every) * (2 * d * d + r * d)
    return {"three_factor": steps * (replay * 2 * r * d + d + r * d), "force": force, "force_reset": force,
            "reservoir": int(steps * 20 * rc.num_neurons + spikes * rc.in_degree)}


def run(config: Config, out: RunDir) -> dict[str, float]:
    import torch

    from experiments._counterpart_analysis import plot_all, score
    from experiments._counterpart_learners import Counterpart, TrialShapes, meta_train

    torch.set_num_threads(1)
    rc = replace(config.reservoir, bin_ms=config.bin_ms)
    task = what_when.build_task(rc)
    overlap = set(config.pretrain_latencies_ms) & set(rc.latencies_ms)
    if overlap or len(config.pretrain_latencies_ms) < 2:
        raise ValueError(f"pretrain_latencies_ms must hold >= 2 latencies, none of them a test latency "
                         f"{rc.latencies_ms}; got {config.pretrain_latencies_ms}")
    session = task.sample(np.random.default_rng(np.random.SeedSequence(out.seed).spawn(1)[0]))
    record, seconds, simulate_seconds, params = _reservoir_session(config, out, task, session)
    rate = float(record.population_rate_hz.mean())
    outputs = {name: record.probe_outputs[name][:, 0] for name in RESERVOIR_LEARNERS}
    macs = _reservoir_macs(config, task, params, rate)

    shapes = TrialShapes(task, rc.dt_ms, rc.bin_ms)
    inputs, target, _ = shapes.trials(session.latency_ms, session.identity, session.probabilities)
    bins = inputs.shape[1]
    meta_seeds = np.random.SeedSequence(out.seed).spawn(9)[6:]
    losses = {}
    for kind, meta_seed in zip(SEQUENCE_LEARNERS, meta_seeds):
        rng = np.random.default_rng(meta_seed)
        model = Counterpart(kind, task.num_inputs, task.num_readouts, bins, pattern=config.encoder_pattern,
                            model_dim=config.model_dim, key_dim=config.key_dim,
                            context_trials=config.context_trials, seed=rng, device=out.device)
        losses[kind] = meta_train(model, shapes, steps=config.pretrain_steps, batch=config.pretrain_batch,
                                  trials=config.pretrain_trials, latencies_ms=config.pretrain_latencies_ms,
                                  learning_rate=config.learning_rate, rng=rng, device=out.device,
                                  progress=lambda s, kind=kind: out.progress(s, desc=f"meta-train {kind}"))
        state, predictions = None, []
        start = time.perf_counter()
        for trial in range(session.num_trials):
            prediction, state = model.stream_trial(state, inputs[trial].to(out.device), target[trial].to(out.device))
            predictions.append(prediction.double().cpu().numpy())
        seconds[kind] = (time.perf_counter() - start) / session.num_trials
        outputs[kind] = np.stack(predictions)
        macs[kind] = model.macs_per_trial(bins)
        out.log(f"{kind}: meta-training loss {losses[kind][:10].mean():.4f} -> {losses[kind][-10:].mean():.4f}")
    out.log(f"reservoir: {rc.num_neurons} neurons, mean rate {rate:.2f} Hz, simulation {simulate_seconds:.3f} s/trial")

    metrics, rows, performance = score(config, task, session, shapes, record.ideal, outputs, seconds, macs)
    metrics.update({"mean_rate_hz": rate, "reservoir_simulation_seconds_per_trial": simulate_seconds,
                    "reservoir_simulation_macs_per_trial": float(macs["reservoir"])})
    for kind in SEQUENCE_LEARNERS:
        metrics[f"{kind}_meta_training_final_loss"] = float(losses[kind][-10:].mean())
    out.save_table("learners", rows, caption="Per learner: timing error (ms), amplitude-probability "
                   "correlation, trials to recover after each switch, compute per trial (reservoir "
                   "learners: readout only; the shared simulation is listed separately).")
    out.save_arrays("outputs", ideal=record.ideal, **{f"output_{k}": v for k, v in outputs.items()},
                    **{f"loss_{k}": v for k, v in losses.items()})
    verdict = plot_all(out, config, task, session, record.ideal, outputs, performance, metrics, losses)
    out.log(verdict)
    return metrics
