"""What/when predictions in a spiking reservoir: three-factor readout vs FORCE (with/without reset).

Yamada & Chao (arXiv 2510.14382) claim that a heterogeneous Izhikevich reservoir with
readouts trained by an error-modulated, attention-gated three-factor Hebbian rule
(online "when", offline-consolidated "what") (1) predicts the stimulus time, (2) with
"what" amplitudes proportional to the stimulus probabilities, (3) re-adapts quickly
when latency or probabilities switch, where FORCE needs an explicit reset of P, and
(4) ends with near-orthogonal what/when readout weights. One reservoir, one trial
sequence; three learners read the same spikes: three-factor, FORCE, FORCE with a
reset of P at each block switch. Blocks: baseline, latency switch, probability switch.

Our choices where the paper is silent (all documented in neuro/reservoir/): the rule's
equations and rates (three_factor.py; rates normalised by the mean feature power),
what-consolidation by replaying the trial (or a summed update), the task's timing,
targets ("what" targets are the trial's outcome, so amplitude = p must be learned
from outcomes) and gate (task.py), a decaying cue trace as an input (a random
reservoir alone forgets a 50 ms cue within ~150 ms), features = spike traces
standardised per neuron on a warm-up trial and clamped to +-3, plus a bias. Scores use
probe outputs: each trial's output of the weights it started with (no leak of the
trial's own target through FORCE's within-trial updates).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from experiments.store import RunDir


@dataclass(frozen=True)
class Config:
    num_neurons: int = field(default=1000, metadata={"min": 10, "max": 100_000, "help": "reservoir size N"})
    in_degree: int = field(default=100, metadata={"min": 1, "help": "recurrent synapses per neuron K (< N)"})
    dt_ms: float = field(default=0.5, metadata={"min": 0.01, "max": 1.0, "help": "time step"})
    trials_per_block: tuple[int, ...] = field(
        default=(60, 40, 40), metadata={"min": 4, "help": "baseline, latency-switch, probability-switch blocks"})
    latencies_ms: tuple[float, ...] = field(
        default=(200.0, 300.0), metadata={"min": 60.0, "max": 700.0, "help": "cue-to-stimulus latency before/after the latency switch"})
    probabilities_before: tuple[float, ...] = field(
        default=(0.5, 0.3, 0.1), metadata={"min": 0.0, "max": 1.0, "help": "p_1..p_M before the probability switch"})
    probabilities_after: tuple[float, ...] = field(
        default=(0.1, 0.3, 0.5), metadata={"min": 0.0, "max": 1.0, "help": "p_1..p_M after it"})
    cue_trace_tau_ms: float = field(default=300.0, metadata={"min": 0.0, "help": "decay of the cue's input trace (0: none)"})
    target_width_ms: float = field(default=25.0, metadata={"min": 1.0, "help": "sigma of the target pulses"})
    gate_floor: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0, "help": "gate outside the attention window"})
    weight_scale: float = field(default=0.5, metadata={"min": 0.0, "help": "recurrent weights U(0, w) (mV jump of I_syn)"})
    synapse_tau_ms: float = field(default=50.0, metadata={"min": 0.1, "help": "exponential synapse decay"})
    noise_std: float = field(default=2.0, metadata={"min": 0.0, "help": "mV rms per ms"})
    input_scale: float = field(default=10.0, metadata={"min": 0.0, "help": "input weights N(0, s^2)"})
    when_rate: float = field(default=0.01, metadata={"min": 0.0, "help": "three-factor eta x <|x|^2> for the when readout"})
    what_rate: float = field(default=0.01, metadata={"min": 0.0, "help": "three-factor eta x <|x|^2> for the what readouts"})
    consolidation: str = field(default="replay", metadata={
        "choices": ("replay", "accumulate"),
        "help": "offline what learning: replay the trial, or apply its summed update once"})
    feature_clip: float = field(default=3.0, metadata={"min": 0.1, "help": "standardised features clamped to +-clip"})
    eligibility_tau_ms: float = field(default=20.0, metadata={"min": 0.0, "help": "tau_e"})
    force_alpha: float = field(default=1.0, metadata={"min": 1e-6, "help": "P(0) = I / alpha"})
    force_update_every: int = field(default=20, metadata={"min": 1, "help": "RLS every n steps"})
    evaluation_trials: int = field(default=10, metadata={"min": 2, "help": "last trials of a block that are scored"})
    recovery_window: int = field(default=5, metadata={"min": 1, "help": "running-mean window for recovery"})
    bin_ms: float = field(default=5.0, metadata={"min": 0.5, "help": "recording bin"})
    engine: str = field(default="eager", metadata={
        "choices": ("eager", "compiled"),
        "help": "reservoir engine: eager torch ops, or the whole loop in C (CPU; another noise stream)"})

    def __post_init__(self):
        # a config error (before any run directory), not a failed run: with the default K = 100,
        # every num_neurons from the documented minimum 10 up to 100 failed in make_reservoir
        if self.in_degree > self.num_neurons - 1:
            raise ValueError(f"in_degree={self.in_degree} exceeds num_neurons - 1 = {self.num_neurons - 1} "
                             "(K distinct presynaptic partners, no autapses)")
        from neuro.reservoir.training import steps_per_bin

        steps_per_bin(self.bin_ms, self.dt_ms, build_task(self).num_steps(self.dt_ms))


DEMO = {"num_neurons": 500, "trials_per_block": (20, 15, 15)}

def build_task(config: Config):
    from neuro.reservoir.task import Block, WhatWhenTask

    if len(config.trials_per_block) != 3 or len(config.latencies_ms) != 2:
        raise ValueError("trials_per_block needs 3 entries (baseline, latency switch, probability "
                         f"switch) and latencies_ms 2; got {config.trials_per_block}, {config.latencies_ms}")
    if len(config.probabilities_before) != len(config.probabilities_after):
        raise ValueError(f"probabilities_before {config.probabilities_before} and probabilities_after "
                         f"{config.probabilities_after} must name the same number of stimuli")
    for name in ("probabilities_before", "probabilities_after"):
        if not sum(getattr(config, name)) > 0:  # the "what" score divides by the target's power
            raise ValueError(f"{name}={getattr(config, name)} must have a positive sum: with no "
                             "stimulus ever paired, the what targets are zero and their score undefined")
    if min(config.trials_per_block) < config.evaluation_trials + max(config.recovery_window, 1):
        raise ValueError(f"every block needs at least evaluation_trials + recovery_window = "
                         f"{config.evaluation_trials + config.recovery_window} trials; got "
                         f"trials_per_block={config.trials_per_block}")
    first, second = config.latencies_ms
    blocks = (Block(config.trials_per_block[0], first, config.probabilities_before),
              Block(config.trials_per_block[1], second, config.probabilities_before),
              Block(config.trials_per_block[2], second, config.probabilities_after))
    return WhatWhenTask(blocks=blocks, cue_trace_tau_ms=config.cue_trace_tau_ms,
                        target_width_ms=config.target_width_ms, gate_floor=config.gate_floor)


def build_learners(config: Config, task, num_features: int, feature_power: float):
    import torch

    from neuro.reservoir.force import FORCEReadout
    from neuro.reservoir.three_factor import ThreeFactorReadout
    from neuro.reservoir.training import Learner

    readouts = task.num_readouts
    rates = (config.when_rate / feature_power,) + (config.what_rate / feature_power,) * (readouts - 1)
    three = ThreeFactorReadout(readouts, num_features, learning_rate=rates,
                               eligibility_tau_ms=config.eligibility_tau_ms, dt_ms=config.dt_ms,
                               online=(True,) + (False,) * (readouts - 1),
                               consolidation=config.consolidation)
    force = FORCEReadout(readouts, num_features, alpha=config.force_alpha,
                         update_every=config.force_update_every)
    return [
        Learner("three_factor", three, three.initial_state(1)),
        # RLS in float64: P's eigenvalues span many decades after thousands of updates
        Learner("force", force, force.initial_state(1, dtype=torch.float64)),
        Learner("force_reset", force, force.initial_state(1, dtype=torch.float64), reset_on_block=True),
    ]


def warm_up(config: Config, task, params, state, seed, device):
    """The warm-up trial (not learned, not scored): it settles the network and gives each
    neuron's mean and spread of its trace, with which the features are standardised (see
    training.readout_features), and <|x|^2> of the clamped features, which normalises the
    three-factor learning rates (NLMS-style). Both are our choices, applied identically to
    all learners. Returns (the simulation result, offset [1, N], spread [1, N], <|x|^2>)."""
    from neuro.reservoir.simulation import simulate
    from neuro.reservoir.training import readout_features

    warm = task.trial(task.sample(np.random.default_rng(seed)), 0, config.dt_ms, device=device)
    result = simulate(params, state, warm.inputs.unsqueeze(0), config.dt_ms, engine=config.engine,
                      seed=np.random.default_rng(seed), record_trace=True, record="none")
    offset = result.trace.mean(1)
    spread = result.trace.std(1)
    # neurons (nearly) silent in the warm-up get a floor of a tenth of the median spread,
    # so that their first spikes later do not become huge features
    active = spread[spread > 0]
    spread = spread.clamp(min=0.1 * float(active.median()) if active.numel() else 1.0)
    features = readout_features(result.trace, offset=offset.unsqueeze(1), scale=spread.unsqueeze(1),
                                clip=config.feature_clip)
    return result, offset, spread, float((features**2).sum(-1).mean())


def run(config: Config, out: RunDir) -> dict[str, float]:
    import torch

    from experiments._what_when_analysis import analyse, plot_all
    from neuro.reservoir.build import make_reservoir
    from neuro.reservoir.training import run_session

    torch.set_num_threads(1)
    task = build_task(config)
    task_seed, net_seed, noise_seed, warm_seed = np.random.SeedSequence(out.seed).spawn(4)
    session = task.sample(np.random.default_rng(task_seed))
    params, state = make_reservoir(
        config.num_neurons, task.num_inputs, in_degree=config.in_degree, weight_scale=config.weight_scale, noise_std=config.noise_std,
        synapse="exponential", synapse_tau_ms=config.synapse_tau_ms, input_scale=config.input_scale,
        seed=np.random.default_rng(net_seed), device=out.device)
    result, offset, spread, feature_power = warm_up(config, task, params, state, warm_seed, out.device)
    learners = build_learners(config, task, config.num_neurons + 1, feature_power)
    starts = task.block_starts()
    record = run_session(
        task, session, params, result.state, learners, config.dt_ms, seed=np.random.default_rng(noise_seed),
        feature_offset=offset, feature_scale=spread, feature_clip=config.feature_clip, bin_ms=config.bin_ms, record_spikes=(starts[1] - 1, starts[2] - 1),
        progress=lambda trials: out.progress(trials, total=session.num_trials, desc="trials"),
        engine=config.engine,
    )
    out.log(f"feature power <|x|^2> = {feature_power:.1f}; mean rate "
            f"{record.population_rate_hz.mean():.2f} Hz over {session.num_trials} trials")
    analysis = analyse(config, task, session, record)
    plot_all(out, config, task, session, record, analysis)
    metrics = dict(analysis.metrics)
    metrics["feature_power"] = feature_power
    return metrics
