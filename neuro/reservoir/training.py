"""Online training loop: reservoir + readouts + what/when task, trial by trial.

Per trial i of a sampled ``TaskSession``:
  1. the task gives inputs [T, C], targets, ideal targets and the gate [T, R];
  2. the reservoir runs the trial on its fast path (``simulate``, per-step traces r);
  3. every learner steps through the same T steps online: features x_t = [r_t, 1]
     (the constant 1 is a bias feature, our choice; ``bias=False`` drops it), target
     y_t and gate g_t; the readout output z_t is recorded;
  4. trial end: three-factor learners consolidate their offline ("what") rows
     (``consolidate``, or ``replay`` of the trial for ``consolidation="replay"``).
At the first trial of every block after the first, learners with ``reset_on_block``
(FORCE with reset) get P <- I / alpha. After each trial every learner's state is checked
(one pass over W, and P's diagonal): ``ReadoutDiverged`` names the learner, trial and
network whose weights are no longer finite, or whose P is no longer finite with a positive
diagonal (the readouts themselves never read tensor values).
The readouts do not feed back into the reservoir (as in Yamada & Chao, arXiv
2510.14382, where only readouts learn), so simulating the trial first and then
stepping the readouts through it is identical to interleaving the two step by step,
and every learner sees exactly the same spikes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from neuro.reservoir._checks import check_dt, check_flag, check_real, check_tensor, torch_generator
from neuro.reservoir.force import FORCEReadout, FORCEState
from neuro.reservoir.simulation import SpikeRecord, simulate
from neuro.reservoir.step import ReservoirParams, ReservoirState
from neuro.reservoir.task import TaskSession, WhatWhenTask
from neuro.reservoir.three_factor import ThreeFactorReadout, ThreeFactorState

__all__ = ["Learner", "ReadoutDiverged", "SessionRecord", "readout_features", "run_session",
           "spike_counts_from_trace", "steps_per_bin"]


class ReadoutDiverged(RuntimeError):
    """A learner's readout broke down during a trial of ``run_session``: ``what`` says how
    (non-finite weights; for FORCE a non-finite P or a non-positive diagonal entry of P,
    which a positive definite P cannot have), ``advice`` what to change."""

    def __init__(self, learner: str, trial: int, batch_index: int, what: str, advice: str):
        self.learner, self.trial, self.batch_index, self.what, self.advice = learner, trial, batch_index, what, advice
        super().__init__(f"learner {learner!r} diverged in trial {trial}: network (batch index) {batch_index} "
                         f"has {what}; {advice}")

    def __reduce__(self):  # picklable (a process-pool or Dask worker sends it back)
        return type(self), (self.learner, self.trial, self.batch_index, self.what, self.advice)


class Learner(NamedTuple):
    """A named readout with its state; ``reset_on_block``: FORCE's explicit reset of P
    at each block switch (ignored by three-factor readouts)."""

    name: str
    readout: ThreeFactorReadout | FORCEReadout
    state: tuple
    reset_on_block: bool = False


class SessionRecord(NamedTuple):
    """What a session leaves, binned in ``bin_ms`` bins (num_bins = trial_ms / bin_ms).

    outputs: name -> [trials, B, bins, R] readout outputs during learning (bin means);
    probe_outputs: name -> [trials, B, bins, R] outputs of the weights as they were at the
    trial's start on the same spikes (a probe trial without learning: no leak of the
    trial's own targets into its outputs through online updates);
    target, ideal, gate: [trials, bins, R]; population_rate_hz: [trials, B, bins];
    spikes: trial index -> SpikeRecord (steps counted from the trial start) for the
    trials in ``record_spikes``; weights: name -> [trials, B, R, D] float32 snapshots at
    the end of each trial; learners: the final learners; reservoir: final state.
    """

    outputs: dict
    probe_outputs: dict
    target: np.ndarray
    ideal: np.ndarray
    gate: np.ndarray
    population_rate_hz: np.ndarray
    spikes: dict
    weights: dict
    learners: tuple
    reservoir: ReservoirState
    bin_ms: float


def readout_features(trace: Tensor, bias: bool = True, offset: Tensor | None = None,
                     scale: Tensor | None = None, clip: float | None = None) -> Tensor:
    """[..., N] traces r -> features [..., N + 1]: (r - offset) / scale, clamped to
    [-clip, clip] when ``clip`` is given, and a trailing 1.

    ``offset`` and ``scale`` broadcast against r (e.g. each neuron's mean and spread of its
    trace [B, 1, N]); standardising the features is our choice: it removes the common
    mean direction and the spread of firing rates that would otherwise dominate the
    input correlation and slow a Hebbian/LMS rule. The clamp (a saturating presynaptic
    efficacy, also our choice) bounds |x|^2 during population bursts such as the cue
    response, which would otherwise make a fixed-step LMS rule overshoot.
    ``bias=False`` drops the 1."""
    _check_feature_options(trace, bias, offset, scale, clip)
    if offset is not None:
        trace = trace - offset
    if scale is not None:
        trace = trace / scale
    if clip is not None:
        trace = trace.clamp(-clip, clip)
    if not bias:
        return trace
    return torch.cat([trace, torch.ones_like(trace[..., :1])], dim=-1)


def _check_feature_options(trace, bias, offset, scale, clip) -> None:
    """Types and broadcast shapes of ``readout_features``' arguments (no tensor values read)."""
    check_tensor("trace", trace, floating=True)
    check_flag("bias", bias)
    if clip is not None:
        check_real("clip", clip, 0.0, low_open=True)
    for name, value in (("offset", offset), ("scale", scale)):
        if value is None:
            continue
        check_tensor(name, value)
        try:
            shape = torch.broadcast_shapes(value.shape, trace.shape)
        except RuntimeError:
            shape = None
        if shape != trace.shape:
            raise ValueError(f"{name} has shape {list(value.shape)}, which does not broadcast against "
                             f"trace {list(trace.shape)}")


def _check_learners(learners, params: ReservoirParams, task: WhatWhenTask, num_features: int) -> None:
    """Each learner is a Learner whose readout and state fit B networks, R readouts, D features."""
    expected = (params.batch_size, task.num_readouts, num_features)
    for learner in learners:
        readout = learner.readout
        if not isinstance(readout, (ThreeFactorReadout, FORCEReadout)):
            raise TypeError(f"learner {learner.name!r} has readout of type {type(readout).__name__}; "
                            "allowed: ThreeFactorReadout, FORCEReadout")
        if (readout.num_readouts, readout.num_features) != expected[1:]:
            raise ValueError(f"learner {learner.name!r} has a readout of num_readouts={readout.num_readouts}, "
                             f"num_features={readout.num_features}; expected {expected[1]} and {expected[2]} "
                             "(task readouts, neurons + bias)")
        state_type = ThreeFactorState if isinstance(readout, ThreeFactorReadout) else FORCEState
        if not isinstance(learner.state, state_type):
            raise TypeError(f"learner {learner.name!r} has a {type(readout).__name__} but a state of type "
                            f"{type(learner.state).__name__}; expected {state_type.__name__} (readout.initial_state)")
        weights = learner.state.weights
        if tuple(weights.shape) != expected:
            raise ValueError(f"learner {learner.name!r} has weights of shape {tuple(weights.shape)}, "
                             f"expected {expected} (B, readouts, neurons + bias)")


def _check_feature_tensor(name: str, value, params: ReservoirParams, positive: bool) -> None:
    """feature_offset / feature_scale: finite [B or 1, N] (scale > 0); read once per session."""
    check_tensor(name, value, floating=True)
    b, n = params.batch_size, params.num_neurons
    if value.dim() != 2 or value.shape[0] not in (1, b) or value.shape[1] != n:
        expected = f"[{b}, {n}]" if b == 1 else f"[{b}, {n}] (or [1, {n}])"
        raise ValueError(f"{name} has shape {list(value.shape)}; expected {expected}")
    bad = ~torch.isfinite(value) | (value <= 0) if positive else ~torch.isfinite(value)
    if bool(bad.any()):
        raise ValueError(f"{name} has {int(bad.sum())} entries that are not finite"
                         + (" and > 0" if positive else ""))


def _fill_features(buffer: Tensor, trace: Tensor, bias: bool, offset: Tensor | None,
                   scale: Tensor | None, clip: float | None) -> Tensor:
    """``readout_features`` written in place into a persistent buffer [B, T, N (+1)] (large
    per-trial temporaries fragment the glibc heap: resident memory grew ~30 MB per trial)."""
    n = trace.shape[-1]
    core = buffer[..., :n]
    core.copy_(trace)
    if offset is not None:
        core.sub_(offset)
    if scale is not None:
        core.div_(scale)
    if clip is not None:
        core.clamp_(-clip, clip)
    if bias:
        buffer[..., n].fill_(1.0)
    return buffer


def steps_per_bin(bin_ms: float, dt_ms: float, num_steps: int) -> int:
    """Steps in a recording bin of ``bin_ms``: a ValueError unless it is a whole number of
    steps of ``dt_ms`` dividing the trial's ``num_steps``."""
    bin_steps = round(bin_ms / dt_ms)
    if bin_steps < 1 or num_steps % bin_steps or abs(bin_steps * dt_ms - bin_ms) > 1e-9 * bin_ms:
        raise ValueError(f"bin_ms={bin_ms} must be a whole number of steps dividing the trial "
                         f"({num_steps} steps of {dt_ms} ms)")
    return bin_steps


def spike_counts_from_trace(trace: Tensor, previous: Tensor, decay: float) -> Tensor:
    """Population spike count per step from traces r_t = d r_{t-1} + s_t.

    trace [B, T, N], previous r before the first step [B, N] -> counts [B, T] (float)."""
    if trace.dim() != 3 or tuple(previous.shape) != (trace.shape[0], trace.shape[2]):
        raise ValueError(f"trace must be [B, T, N] and previous [B, N] of the same B and N, got "
                         f"{list(trace.shape)} and {list(previous.shape)}")
    totals = trace.sum(-1)
    shifted = torch.cat([previous.sum(-1, keepdim=True), totals[:, :-1]], dim=1)
    return totals - decay * shifted


def _bin(values: Tensor, bin_steps: int) -> np.ndarray:
    """[T, ...] -> [T // bin_steps, ...] bin means, as float64 numpy."""
    num_bins = values.shape[0] // bin_steps
    trimmed = values[: num_bins * bin_steps]
    return trimmed.reshape(num_bins, bin_steps, *values.shape[1:]).double().mean(1).cpu().numpy()


def _step_learner(learner: Learner, features: Tensor, target: Tensor, gate: Tensor) -> tuple[Learner, Tensor]:
    """Run one learner through a trial: features [B, T, D], target/gate [T, R] -> outputs [T, B, R]."""
    readout, state = learner.readout, learner.state
    num_steps = features.shape[1]
    outputs = torch.empty(num_steps, features.shape[0], target.shape[1],
                          dtype=features.dtype, device=features.device)
    if isinstance(readout, ThreeFactorReadout):
        initial_eligibility = state.eligibility
        if num_steps:  # every step has the first one's shapes and dtypes: checked once
            readout.check_step(state, features[:, 0], target[0], gate[0])
        for t in range(num_steps):
            state, outputs[t] = readout.step_unchecked(state, features[:, t], target[t], gate[t])
        if readout.consolidation == "replay":
            state = readout.replay(state, initial_eligibility, features, target, gate)
        else:
            state = readout.consolidate(state)
    else:
        # run_session owns this state (copied once at its start): in-place RLS, no
        # [B, D, D] allocation per update
        for t in range(num_steps):
            state, outputs[t] = readout.step(state, features[:, t], target[t], inplace=True)
    return learner._replace(state=state), outputs


def _first_bad_network(bad: Tensor) -> int | None:
    """Index of the first network with a True in ``bad`` [B, ...], or None."""
    flags = bad.reshape(bad.shape[0], -1).any(1)
    return int(flags.nonzero()[0]) if bool(flags.any()) else None


def _first_non_finite_network(values: Tensor) -> int | None:
    """Index of the first network with a NaN or inf in ``values`` [B, ...], or None (a
    finite sum clears all of them without a mask the size of ``values``)."""
    if bool(torch.isfinite(values.sum())):
        return None
    return _first_bad_network(~torch.isfinite(values))


def _check_learner(learner: Learner, trial: int, features: Tensor) -> None:
    """ReadoutDiverged unless the learner's weights are finite and, for FORCE, P [B, D, D]
    is finite with a positive diagonal (P = (alpha I + sum x x^T)^-1 is positive definite;
    float32 rounding with a small alpha breaks that before anything becomes NaN)."""
    readout, state = learner.readout, learner.state
    network = _first_non_finite_network(state.weights)
    if network is not None:
        if isinstance(readout, ThreeFactorReadout):
            energy = float((features.double() ** 2).sum(-1).max())  # max_t |x_t|^2 of this trial
            advice = (f"lower learning_rate (now {readout.learning_rate}): the online rule is stable only "
                      f"while learning_rate * gate * |x|^2 stays below about 2 (exactly so for eligibility_tau_ms = 0; "
                      f"a longer eligibility trace tolerates somewhat more), and this trial's features reach "
                      f"|x|^2 = {energy:.4g} (learning_rate < ~{2 / max(energy, 1e-300):.3g}); "
                      "feature_scale / feature_clip in run_session shrink |x|^2")
        else:
            advice = (f"the RLS recursion broke down (alpha={readout.alpha}, dtype {state.weights.dtype}); "
                      "use dtype=torch.float64 in initial_state or a larger alpha")
        raise ReadoutDiverged(learner.name, trial, network, "non-finite weights", advice)
    if isinstance(readout, FORCEReadout):
        p = state.inverse_correlation
        diagonal = torch.diagonal(p, dim1=-2, dim2=-1)
        for what, network in (("a non-finite inverse correlation matrix P", _first_non_finite_network(p)),
                              ("a non-positive diagonal entry of P (P is no longer positive definite)",
                               _first_bad_network(~(diagonal > 0)))):
            if network is not None:
                raise ReadoutDiverged(
                    learner.name, trial, network, what,
                    f"the RLS update lost P's positive definiteness to rounding (alpha={readout.alpha}, "
                    f"dtype {p.dtype}: see FORCEReadout); use dtype=torch.float64 in initial_state or a "
                    "larger alpha")


def run_session(
    task: WhatWhenTask,
    session: TaskSession,
    params: ReservoirParams,
    state: ReservoirState,
    learners: Sequence[Learner],
    dt_ms: float,
    *,
    seed=0,
    bias: bool = True,
    feature_offset: Tensor | None = None,
    feature_scale: Tensor | None = None,
    feature_clip: float | None = None,
    bin_ms: float = 5.0,
    record_spikes: Iterable[int] = (),
    progress: Callable[[Iterable], Iterable] | None = None,
    engine: str = "eager",
) -> SessionRecord:
    """Train ``learners`` online on every trial of ``session`` (see the module docstring).

    params/state: B reservoirs with ``task.num_inputs`` input channels; every network gets
    the same trial inputs. learners: readouts over D = N + bias features with
    ``task.num_readouts`` rows and B networks. seed: int | Generator for the noise.
    feature_offset, feature_scale: [B, N]; feature_clip: see ``readout_features``.
    engine: the reservoir's ``simulate`` engine, "eager" (default) or "compiled" (CPU; its
    own noise stream, so results differ from the eager engine's in the noise only).
    """
    if not isinstance(task, WhatWhenTask):
        raise TypeError(f"task must be a WhatWhenTask, got {type(task).__name__}")
    task.check_session(session)
    num_steps = task.num_steps(dt_ms)
    dt_ms = check_dt(dt_ms)
    bin_ms = check_real("bin_ms", bin_ms, 0.0, low_open=True)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable(iterable) -> iterable or None, got {progress!r}")
    bias = check_flag("bias", bias)
    if feature_clip is not None:
        check_real("feature_clip", feature_clip, 0.0, low_open=True)
    for name, value, positive in (("feature_offset", feature_offset, False), ("feature_scale", feature_scale, True)):
        if value is not None:
            _check_feature_tensor(name, value, params, positive)
    bin_steps = steps_per_bin(bin_ms, dt_ms, num_steps)
    if params.num_inputs != task.num_inputs:
        raise ValueError(f"the reservoir has {params.num_inputs} input channels, the task needs "
                         f"{task.num_inputs}")
    learners = list(learners)
    if any(not isinstance(learner, Learner) for learner in learners):
        raise TypeError(f"learners must hold Learner(name, readout, state) tuples, got {learners!r}")
    names = [learner.name for learner in learners]
    if len(set(names)) != len(names):
        raise ValueError(f"learner names must be unique, got {names}")
    num_features = params.num_neurons + int(bias)
    _check_learners(learners, params, task, num_features)
    generator = torch_generator(seed, params.device)
    if isinstance(record_spikes, (str, bytes)) or not isinstance(record_spikes, Iterable):
        raise TypeError(f"record_spikes={record_spikes!r} must be an iterable of int trial indices")
    record_spikes = set(record_spikes)
    if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in record_spikes):
        raise TypeError(f"record_spikes={sorted(record_spikes, key=repr)!r} must hold int trial indices")
    record_spikes = {int(i) for i in record_spikes}
    if any(not 0 <= i < session.num_trials for i in record_spikes):
        raise ValueError(f"record_spikes={sorted(record_spikes)} must hold trial indices in "
                         f"[0, {session.num_trials})")
    block_starts = set(task.block_starts()[1:])
    trace_decay = float(np.exp(-dt_ms / params.trace_tau_ms))
    batch = params.batch_size

    outputs = {name: [] for name in names}
    snapshots = {name: [] for name in names}
    probes = {name: [] for name in names}
    targets, ideals, gates, rates, spikes = [], [], [], [], {}
    # private copies of the FORCE states, which the loop then updates in place
    learners = [
        learner._replace(state=learner.state._replace(
            weights=learner.state.weights.clone(),
            inverse_correlation=learner.state.inverse_correlation.clone()))
        if isinstance(learner.readout, FORCEReadout) else learner
        for learner in learners
    ]
    buffers: dict = {}
    trials = range(session.num_trials)
    for trial in (progress(trials) if progress else trials):
        arrays = task.trial(session, trial, dt_ms, device=params.device, dtype=params.dtype)
        inputs = arrays.inputs.unsqueeze(0).expand(batch, -1, -1)
        previous_trace = state.trace
        result = simulate(params, state, inputs, dt_ms, seed=generator, record_trace=True, engine=engine,
                          record="indices" if trial in record_spikes else "none")
        state = result.state
        if trial in record_spikes:
            spikes[trial] = result.spikes
        counts = spike_counts_from_trace(result.trace, previous_trace, trace_decay)
        rates.append(_bin(counts.T, bin_steps).T / params.num_neurons / (dt_ms * 1e-3))
        shape = (batch, num_steps, num_features)
        for dtype in {learner.state.weights.dtype for learner in learners}:
            if dtype not in buffers or tuple(buffers[dtype].shape) != shape:
                buffers[dtype] = torch.empty(shape, dtype=dtype, device=params.device)
            _fill_features(buffers[dtype], result.trace, bias,
                           None if feature_offset is None else feature_offset.unsqueeze(1),
                           None if feature_scale is None else feature_scale.unsqueeze(1), feature_clip)
        if trial in block_starts:
            learners = [
                learner._replace(state=learner.readout.reset(learner.state))
                if learner.reset_on_block and isinstance(learner.readout, FORCEReadout) else learner
                for learner in learners
            ]
        for index, learner in enumerate(learners):
            dtype = learner.state.weights.dtype
            features = buffers[dtype]
            probe = torch.einsum("brd,btd->tbr", learner.state.weights, features)
            probes[learner.name].append(_bin(probe, bin_steps).transpose(1, 0, 2))
            learners[index], trial_outputs = _step_learner(
                learner, features, arrays.target.to(dtype), arrays.gate.to(dtype))
            _check_learner(learners[index], trial, features)
            outputs[learner.name].append(_bin(trial_outputs, bin_steps).transpose(1, 0, 2))
            snapshots[learner.name].append(
                learners[index].state.weights.detach().to("cpu", torch.float32).numpy().copy())
        targets.append(_bin(arrays.target, bin_steps))
        ideals.append(_bin(arrays.ideal, bin_steps))
        gates.append(_bin(arrays.gate, bin_steps))
    return SessionRecord(
        outputs={name: np.stack(values) for name, values in outputs.items()},
        probe_outputs={name: np.stack(values) for name, values in probes.items()},
        target=np.stack(targets), ideal=np.stack(ideals), gate=np.stack(gates),
        population_rate_hz=np.stack(rates), spikes=spikes,
        weights={name: np.stack(values) for name, values in snapshots.items()}, learners=tuple(learners),
        reservoir=state, bin_ms=bin_ms,
    )


def spike_record_trial(record: SpikeRecord, batch_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(step, neuron) arrays of one network from a trial's SpikeRecord."""
    keep = record.batch_index == batch_index
    return record.step[keep].cpu().numpy(), record.neuron[keep].cpu().numpy()
