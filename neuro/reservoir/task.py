"""The what/when prediction task (after Yamada & Chao, arXiv 2510.14382).

Each trial: a cue at ``cue_onset_ms``; ``latency_ms`` after the cue onset one of M
stimulus identities appears with probabilities p_1..p_M, or none with probability
1 - sum(p). A session is a sequence of blocks; a block fixes the latency and the
probabilities, so a new block switches the timing and/or the probabilities.

Per trial the task provides (time step dt, T = trial_ms / dt steps):
  inputs  [T, C]      input channel 0: the cue; channel 1 + k: stimulus k; each a
                      rectangular pulse of ``input_amplitude``. With
                      ``cue_trace_tau_ms`` > 0 a last channel (C = 2 + M, else 1 + M)
                      carries a memory trace of the cue, input_amplitude *
                      exp(-(t - cue onset) / cue_trace_tau_ms) from the cue onset on
                      (a stimulus trace in the sense of Ludvig, Sutton & Kehoe 2008;
                      a random spiking reservoir alone forgets a brief cue within
                      ~100-200 ms, too soon to time latencies of several hundred ms).
  target  [T, 1 + M]  readout 0 ("when"): a Gaussian pulse of height 1 centred on the
                      expected stimulus onset (every trial, also when no stimulus comes).
                      readouts 1 + k ("what", anticipatory): a Gaussian bump centred
                      ``anticipation_ms`` before the expected onset and cut to zero from
                      the onset on (so it cannot be read off the stimulus response), of
                      height 1 if stimulus k occurred in this trial and 0 otherwise
                      (``what_target="outcome"``: a learner that averages outcomes ends
                      at amplitude p_k) or of height p_k (``"probability"``).
  ideal   [T, 1 + M]  the expected-value target (what heights p_k), for evaluation.
  gate    [T, 1 + M]  attention gate g(t) in [0, 1]: 1 inside the window from
                      ``gate_before_ms`` before to ``gate_after_ms`` after the expected
                      onset, ``gate_floor`` elsewhere (same gate for every readout).
The paper does not publish its trial timing, target shapes or gate; all of the above
are OUR choices.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from neuro.reservoir._checks import check_dt, check_float_dtype, check_index
from neuro.seeding import numpy_generator

__all__ = ["Block", "TaskSession", "TrialArrays", "WhatWhenTask", "as_numpy_generator"]


as_numpy_generator = numpy_generator  # int | np.random.Generator | torch.Generator


def _check_positive(name: str, value, allow_zero: bool = False) -> None:
    """A finite real number (numpy scalars too) > 0, or >= 0 with ``allow_zero``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")


@dataclass(frozen=True)
class Block:
    """num_trials (>= 1) trials with one latency (ms after cue onset) and probabilities."""

    num_trials: int
    latency_ms: float
    probabilities: tuple[float, ...]

    def __post_init__(self) -> None:
        if isinstance(self.num_trials, bool) or not isinstance(self.num_trials, numbers.Integral):
            raise TypeError(f"num_trials must be an int, got {self.num_trials!r}")
        if self.num_trials < 1:
            raise ValueError(f"num_trials must be >= 1, got {self.num_trials}")
        _check_positive("latency_ms", self.latency_ms)
        object.__setattr__(self, "num_trials", int(self.num_trials))  # numpy scalars as Python numbers
        object.__setattr__(self, "latency_ms", float(self.latency_ms))
        if not isinstance(self.probabilities, (tuple, list, np.ndarray)):
            raise TypeError(f"probabilities={self.probabilities!r} must be a sequence of floats in [0, 1], "
                            "one per stimulus identity")
        probabilities = tuple(self.probabilities)
        if len(probabilities) < 1:
            raise ValueError("probabilities must name at least one stimulus identity")
        for p in probabilities:
            if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
                raise ValueError(f"probabilities must lie in [0, 1], got {probabilities}")
        if sum(probabilities) > 1 + 1e-9:
            raise ValueError(
                f"probabilities must sum to <= 1 (the rest is 'no stimulus'), "
                f"got {probabilities} summing to {sum(probabilities):.6g}"
            )
        object.__setattr__(self, "probabilities", tuple(float(p) for p in probabilities))


class TaskSession(NamedTuple):
    """A sampled session: one entry per trial (numpy arrays of length num_trials).

    block [int], latency_ms [float], identity [int, -1 = none], probabilities [trials, M].
    """

    block: np.ndarray
    latency_ms: np.ndarray
    identity: np.ndarray
    probabilities: np.ndarray

    @property
    def num_trials(self) -> int:
        return int(self.block.shape[0])


class TrialArrays(NamedTuple):
    """inputs [T, C] (C = 1 + M, or 2 + M with ``cue_trace_tau_ms`` > 0); target, ideal, gate
    [T, 1 + M] (column 0 = when, 1 + k = what k)."""

    inputs: torch.Tensor
    target: torch.Tensor
    ideal: torch.Tensor
    gate: torch.Tensor


@dataclass(frozen=True)
class WhatWhenTask:
    """Trial structure and blocks of the what/when task (see the module docstring)."""

    blocks: tuple[Block, ...]
    trial_ms: float = 1000.0
    cue_onset_ms: float = 100.0
    cue_ms: float = 50.0
    stimulus_ms: float = 50.0
    input_amplitude: float = 1.0
    target_width_ms: float = 25.0
    anticipation_ms: float = 50.0
    gate_before_ms: float = 150.0
    gate_after_ms: float = 75.0
    gate_floor: float = 0.1
    what_target: str = "outcome"
    cue_trace_tau_ms: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.blocks, (tuple, list)):
            raise TypeError(f"blocks must be a non-empty sequence of Block, got {type(self.blocks).__name__}")
        blocks = tuple(self.blocks)
        if not blocks or not all(isinstance(b, Block) for b in blocks):
            raise ValueError(f"blocks must be a non-empty sequence of Block, got {self.blocks!r}")
        object.__setattr__(self, "blocks", blocks)
        sizes = {len(b.probabilities) for b in blocks}
        if len(sizes) != 1:
            raise ValueError(
                f"every block must give the same number of probabilities, got sizes {sorted(sizes)}"
            )
        for name in ("trial_ms", "cue_ms", "stimulus_ms", "target_width_ms"):
            _check_positive(name, getattr(self, name))
        for name in ("cue_onset_ms", "input_amplitude", "anticipation_ms",
                     "gate_before_ms", "gate_after_ms", "cue_trace_tau_ms"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        _check_positive("gate_floor", self.gate_floor, allow_zero=True)
        if not 0 <= self.gate_floor <= 1:
            raise ValueError(f"gate_floor must lie in [0, 1], got {self.gate_floor!r}")
        for name in ("trial_ms", "cue_ms", "stimulus_ms", "target_width_ms", "cue_onset_ms", "input_amplitude",
                     "anticipation_ms", "gate_before_ms", "gate_after_ms", "cue_trace_tau_ms", "gate_floor"):
            object.__setattr__(self, name, float(getattr(self, name)))  # numpy scalars as Python floats
        if self.what_target not in ("outcome", "probability"):
            raise ValueError(
                f"what_target must be 'outcome' or 'probability', got {self.what_target!r}"
            )
        for index, block in enumerate(blocks):
            end = self.cue_onset_ms + block.latency_ms + self.stimulus_ms
            if end > self.trial_ms:
                raise ValueError(
                    f"block {index}: cue_onset_ms + latency_ms + stimulus_ms = {end} ms exceeds "
                    f"trial_ms = {self.trial_ms}"
                )
            if block.latency_ms < self.cue_ms:
                raise ValueError(
                    f"block {index}: latency_ms = {block.latency_ms} must be >= cue_ms = {self.cue_ms}"
                )

    @property
    def num_identities(self) -> int:
        return len(self.blocks[0].probabilities)

    @property
    def num_inputs(self) -> int:
        return 1 + self.num_identities + int(self.cue_trace_tau_ms > 0)

    @property
    def num_readouts(self) -> int:
        return 1 + self.num_identities

    @property
    def num_trials(self) -> int:
        return sum(b.num_trials for b in self.blocks)

    def block_starts(self) -> list[int]:
        """Index of the first trial of each block."""
        return [int(x) for x in np.cumsum([0] + [b.num_trials for b in self.blocks])[:-1]]

    def sample(self, seed=0) -> TaskSession:
        """Draw each trial's identity (categorical over p_1..p_M and none), seeded."""
        rng = as_numpy_generator(seed)
        block_index, latency, identity, probabilities = [], [], [], []
        for index, block in enumerate(self.blocks):
            p = np.asarray(block.probabilities, dtype=np.float64)
            p_all = np.append(p, max(0.0, 1.0 - p.sum()))
            draws = rng.choice(len(p_all), size=block.num_trials, p=p_all / p_all.sum())
            identity.append(np.where(draws == len(p), -1, draws))
            block_index.append(np.full(block.num_trials, index))
            latency.append(np.full(block.num_trials, float(block.latency_ms)))
            probabilities.append(np.tile(p, (block.num_trials, 1)))
        return TaskSession(
            block=np.concatenate(block_index),
            latency_ms=np.concatenate(latency),
            identity=np.concatenate(identity).astype(np.int64),
            probabilities=np.concatenate(probabilities),
        )

    def check_session(self, session: TaskSession) -> None:
        """``session`` is one of this task's, or its first trials: a TaskSession whose block
        index changes exactly at ``block_starts()`` (where run_session's resets fall), with
        identities in [-1, M), probabilities [trials, M] and stimuli that fit the trial."""
        if not isinstance(session, TaskSession):
            raise TypeError(f"session must be a TaskSession (from task.sample), got {type(session).__name__}")
        sizes = [b.num_trials for b in self.blocks]
        block = np.asarray(session.block)
        if block.ndim != 1 or block.dtype.kind not in "iu":
            raise ValueError(f"session.block must be a 1-D integer array, got {block.dtype} of shape {block.shape}")
        expected = np.repeat(np.arange(len(sizes)), sizes)[:block.size]
        if not 1 <= block.size <= self.num_trials or not np.array_equal(block, expected):
            runs = np.unique(block, return_counts=True)[1].tolist()
            raise ValueError(f"session has blocks of {runs} trials (block index {block.tolist()[:8]}...); "
                             f"the task's blocks have {sizes} (sample the session from this task)")
        for name in ("latency_ms", "identity"):
            if np.shape(getattr(session, name)) != expected.shape:
                raise ValueError(f"session.{name} must have one entry per trial ({expected.size}), "
                                 f"got shape {np.shape(getattr(session, name))}")
        if np.shape(session.probabilities) != (expected.size, self.num_identities):
            raise ValueError(f"session.probabilities must have shape {(expected.size, self.num_identities)}, "
                             f"got {np.shape(session.probabilities)}")
        for trial in range(expected.size):
            self._check_trial_entry(session, trial)

    def _check_trial_entry(self, session: TaskSession, trial: int) -> None:
        identity, latency = session.identity[trial], float(session.latency_ms[trial])
        if not -1 <= identity < self.num_identities:
            raise ValueError(f"session.identity[{trial}]={identity}; allowed: -1 (none) .. "
                             f"{self.num_identities - 1}")
        if not (math.isfinite(latency) and latency >= 0
                and self.cue_onset_ms + latency + self.stimulus_ms <= self.trial_ms):
            raise ValueError(f"session.latency_ms[{trial}]={latency}: the stimulus (cue onset "
                             f"{self.cue_onset_ms} + latency + {self.stimulus_ms} ms) must end within "
                             f"the {self.trial_ms} ms trial")

    def num_steps(self, dt_ms: float) -> int:
        dt_ms = check_dt(dt_ms)
        return round(self.trial_ms / dt_ms)

    def trial(
        self, session: TaskSession, trial_index: int, dt_ms: float,
        device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
    ) -> TrialArrays:
        """Inputs, targets, ideal targets and gate of one trial (see the module docstring)."""
        num_steps = self.num_steps(dt_ms)
        check_index("trial_index", trial_index, session.num_trials)
        check_float_dtype("dtype", dtype)
        m = self.num_identities
        if np.ndim(session.probabilities) != 2 or session.probabilities.shape[1] != m:
            raise ValueError(
                f"session.probabilities must be [trials, {m}] (the task's identities), got shape "
                f"{np.shape(session.probabilities)}"
            )
        self._check_trial_entry(session, trial_index)
        time_ms = np.arange(num_steps) * dt_ms
        onset = self.cue_onset_ms + float(session.latency_ms[trial_index])
        identity = int(session.identity[trial_index])
        p = session.probabilities[trial_index]

        inputs = np.zeros((num_steps, self.num_inputs))
        cue = (time_ms >= self.cue_onset_ms) & (time_ms < self.cue_onset_ms + self.cue_ms)
        inputs[cue, 0] = self.input_amplitude
        if identity >= 0:
            stimulus = (time_ms >= onset) & (time_ms < onset + self.stimulus_ms)
            inputs[stimulus, 1 + identity] = self.input_amplitude
        if self.cue_trace_tau_ms > 0:
            since_cue = time_ms - self.cue_onset_ms
            inputs[:, 1 + m] = np.where(
                since_cue >= 0,
                self.input_amplitude * np.exp(-np.maximum(since_cue, 0) / self.cue_trace_tau_ms), 0.0)

        width = self.target_width_ms
        when = np.exp(-0.5 * ((time_ms - onset) / width) ** 2)
        bump = np.exp(-0.5 * ((time_ms - onset + self.anticipation_ms) / width) ** 2)
        bump[time_ms >= onset] = 0.0
        ideal = np.zeros((num_steps, 1 + m))
        ideal[:, 0] = when
        ideal[:, 1:] = bump[:, None] * p[None, :]
        target = ideal.copy()
        if self.what_target == "outcome":
            heights = np.zeros(m)
            if identity >= 0:
                heights[identity] = 1.0
            target[:, 1:] = bump[:, None] * heights[None, :]

        window = (time_ms >= onset - self.gate_before_ms) & (time_ms <= onset + self.gate_after_ms)
        gate = np.where(window, 1.0, self.gate_floor)[:, None].repeat(1 + m, axis=1)

        def tensor(a):
            return torch.as_tensor(a, dtype=dtype, device=device)

        return TrialArrays(tensor(inputs), tensor(target), tensor(ideal), tensor(gate))
