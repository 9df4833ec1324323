"""Error-modulated, attention-gated three-factor Hebbian readout.

Follows the generic form named in Yamada & Chao, arXiv 2510.14382 ("readouts trained
by an error-modulated, attention-gated three-factor Hebbian rule"; "online learning of
'when', offline consolidation of 'what'"). The paper does not publish its equations or
constants: the rule below is OUR choice (three-factor framework of Fremaux & Gerstner
2016):

    tau_e dE/dt = -E + x          eligibility trace of each presynaptic feature x
    z = W x                       linear readout, x = filtered spike traces r (+ bias)
    e = y - z                     error against the target y
    dW = eta * g(t) * e outer E   gate g(t) in [0, 1] (attention window from the task)

dW is the change per time step: eta is a rate per step, not per ms, so the same eta
learns 1 / dt_ms times as much per ms (halving dt_ms doubles the change per ms; our
choice; ``kernels/three_factor/naive.py`` writes this as dW/dt, but its discrete update
has no factor dt).

Online readouts ("when") apply dW at every step. Offline readouts ("what") keep W
frozen during a trial (their output is the prediction of the consolidated weights)
and learn between trials, in one of two ways (``consolidation``, our choice):
  "accumulate": the gated changes are summed in ``pending`` during the trial and
      applied once in ``consolidate``: W <- W + A, A <- 0 (one batch gradient step per
      trial; stable only for small eta, since the error is not re-evaluated);
  "replay": ``replay`` runs the stored trial (features, targets, gate) once more
      through the same rule with the offline rows learning online, starting from the
      eligibility at the trial's start (an offline replay, as in sleep consolidation);
      online rows are untouched (their learning rate is zero in the replay).
The exact per-step
order (E first, then z with the old W, then the write) is documented in
``kernels/three_factor/naive.py``; it is a gated delta-rule write with query x, key E,
value y and beta = eta * g.

Stability: with tau_e = 0 an online row is the LMS / gated delta rule, whose error along x
contracts only while eta * g * |x|^2 < 2; above that the weights grow geometrically to inf
and NaN (measured: |x|^2 ~ 40, eta 0.06 blew up, 0.04 did not; a longer eligibility trace
tolerates somewhat more). ``step`` reads no tensor values; ``run_session`` checks the
weights after every trial and raises ``ReadoutDiverged``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from kernels.three_factor import three_factor_step_unchecked
from neuro.reservoir._checks import check_dt, check_real, check_tensor, initial_readout_weights

__all__ = ["ThreeFactorReadout", "ThreeFactorState"]


class ThreeFactorState(NamedTuple):
    """State of B networks x M three-factor readouts over D features.

    weights: [B, M, D]; eligibility: [B, D]; pending: [B, M, D] (offline rows'
    change accumulated since the last consolidation, zero for online rows).
    """

    weights: Tensor
    eligibility: Tensor
    pending: Tensor


def _per_readout(value, num_readouts: int, name: str, kind: type) -> tuple:
    values = tuple(value) if isinstance(value, (tuple, list, np.ndarray)) else (value,) * num_readouts
    if len(values) != num_readouts:
        raise ValueError(
            f"{name} has {len(values)} entries but num_readouts={num_readouts}; "
            f"give one value or one per readout"
        )
    for v in values:
        if kind is bool and not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{name} entries must be bool, got {v!r}")
    return values


@dataclass(frozen=True)
class ThreeFactorReadout:
    """Hyperparameters of M gated three-factor readouts (see the module docstring).

    num_readouts: M; num_features: D; learning_rate: eta (>= 0, per step, see the module
    docstring), one value or one per readout; eligibility_tau_ms: tau_e (0 makes E = x, the plain gated delta rule);
    dt_ms: step in (0, 1]; online: True (learn every step) or False (frozen during the
    trial, learn between trials), one value or one per readout; consolidation: how the
    offline rows learn between trials, "accumulate" (``consolidate``) or "replay"
    (``replay``), see the module docstring.
    """

    num_readouts: int
    num_features: int
    learning_rate: float | tuple[float, ...] = 1e-4
    eligibility_tau_ms: float = 50.0
    dt_ms: float = 0.5
    online: bool | tuple[bool, ...] = True
    consolidation: str = "accumulate"

    def __post_init__(self) -> None:
        if self.consolidation not in ("accumulate", "replay"):
            raise ValueError(
                f"consolidation must be 'accumulate' or 'replay', got {self.consolidation!r}"
            )
        # numbers.Integral / numbers.Real / np.bool_: numpy scalars and arrays too, stored as
        # Python int / float / bool (a tuple for per-readout values)
        for name in ("num_readouts", "num_features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
            object.__setattr__(self, name, int(value))
        rates = _per_readout(self.learning_rate, self.num_readouts, "learning_rate", float)
        for rate in rates:
            if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
                raise TypeError(f"learning_rate entries must be real numbers, got {rate!r}")
            if not math.isfinite(float(rate)) or float(rate) < 0:
                raise ValueError(f"learning_rate must be finite and >= 0, got {rate!r}")
        flags = _per_readout(self.online, self.num_readouts, "online", bool)
        for name, values, kind in (("learning_rate", rates, float), ("online", flags, bool)):
            given = getattr(self, name)
            per_readout = isinstance(given, (tuple, list, np.ndarray))
            object.__setattr__(self, name, tuple(kind(v) for v in values) if per_readout else kind(given))
        check_real("eligibility_tau_ms", self.eligibility_tau_ms, 0.0)
        check_dt(self.dt_ms)

    @property
    def eligibility_decay(self) -> float:
        """a = exp(-dt / tau_e); 0 when tau_e = 0."""
        if self.eligibility_tau_ms == 0:
            return 0.0
        return math.exp(-self.dt_ms / self.eligibility_tau_ms)

    def initial_state(
        self,
        batch_size: int = 1,
        *,
        weights: Tensor | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> ThreeFactorState:
        """Zero eligibility and pending change; weights zero or a copy of ``weights`` [B, M, D]."""
        weights = initial_readout_weights(batch_size, self.num_readouts, self.num_features,
                                          weights, device, dtype)
        return ThreeFactorState(
            weights=weights,
            eligibility=torch.zeros(batch_size, self.num_features, device=device, dtype=dtype),
            pending=torch.zeros_like(weights),
        )

    def _constants(self, like: Tensor) -> tuple[Tensor, Tensor | bool]:
        key = (like.device, like.dtype)
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            rates = _per_readout(self.learning_rate, self.num_readouts, "learning_rate", float)
            flags = _per_readout(self.online, self.num_readouts, "online", bool)
            rate = torch.tensor([float(r) for r in rates], device=like.device, dtype=like.dtype)
            online: Tensor | bool = (
                flags[0] if len(set(flags)) == 1
                else torch.tensor(flags, device=like.device, dtype=torch.bool)
            )
            cache[key] = (rate, online)
        return cache[key]

    def step(
        self, state: ThreeFactorState, features: Tensor, target: Tensor, gate: Tensor
    ) -> tuple[ThreeFactorState, Tensor]:
        """Advance one step. features [B, D]; target, gate [B, M] (or [M], broadcast).

        Returns (new state, readout output z [B, M] computed with the old weights).
        """
        self.check_step(state, features, target, gate)
        return self.step_unchecked(state, features, target, gate)

    def check_step(self, state: ThreeFactorState, features: Tensor, target: Tensor,
                   gate: Tensor) -> None:
        """The checks of ``step`` (shapes and dtypes; no tensor values are read)."""
        _check_state(state)
        batch, readouts, num_features = state.weights.shape
        check_tensor("features", features, dtype=state.weights.dtype)
        if tuple(features.shape) != (batch, num_features):
            raise ValueError(
                f"features must have shape {(batch, num_features)}, got {tuple(features.shape)}"
            )
        for name, value in (("target", target), ("gate", gate)):
            check_tensor(name, value, dtype=state.weights.dtype)
            if value.shape not in ((batch, readouts), (readouts,)):
                raise ValueError(f"{name} must have shape {(batch, readouts)} or {(readouts,)}, "
                                 f"got {tuple(value.shape)}")

    def step_unchecked(self, state: ThreeFactorState, features: Tensor, target: Tensor,
                       gate: Tensor) -> tuple[ThreeFactorState, Tensor]:
        """``step`` for inputs that passed ``check_step`` (a loop checks its first step only)."""
        batch, readouts, _ = state.weights.shape
        rate, online = self._constants(state.weights)
        output, _, eligibility, weights, pending = three_factor_step_unchecked(
            state.weights, state.pending, state.eligibility, features,
            target.expand(batch, readouts), gate.expand(batch, readouts),
            rate, self.eligibility_decay, online,
        )
        return ThreeFactorState(weights, eligibility, pending), output

    def consolidate(self, state: ThreeFactorState, scale: float = 1.0) -> ThreeFactorState:
        """Offline consolidation between trials: W <- W + scale * A, A <- 0."""
        check_real("scale", scale, 0.0)
        return state._replace(
            weights=state.weights + scale * state.pending,
            pending=torch.zeros_like(state.pending),
        )

    def replay(
        self, state: ThreeFactorState, initial_eligibility: Tensor, features: Tensor,
        target: Tensor, gate: Tensor,
    ) -> ThreeFactorState:
        """Offline replay of one trial for the offline rows (``consolidation="replay"``).

        initial_eligibility [B, D] (E at the trial's start); features [B, T, D]; target,
        gate [T, M]. Runs the kernel's steps 1-6 for t = 1..T with the offline rows
        writing W online (learning rate eta_m) and the online rows frozen (rate 0).
        Returns the state with new weights and no pending change (the trial's deferred
        changes, which the replay supersedes, would otherwise pile up); eligibility unchanged.
        """
        batch, readouts, num_features = state.weights.shape
        _check_state(state)
        check_tensor("features", features, dtype=state.weights.dtype)
        check_tensor("initial_eligibility", initial_eligibility, dtype=state.weights.dtype)
        if tuple(initial_eligibility.shape) != (batch, num_features):
            raise ValueError(f"initial_eligibility must have shape {(batch, num_features)}, "
                             f"got {tuple(initial_eligibility.shape)}")
        if features.dim() != 3 or tuple(features.shape[::2]) != (batch, num_features):
            raise ValueError(f"features must have shape {(batch, 'T', num_features)}, "
                             f"got {tuple(features.shape)}")
        num_steps = features.shape[1]
        for name, value in (("target", target), ("gate", gate)):
            check_tensor(name, value, dtype=state.weights.dtype)
            if tuple(value.shape) != (num_steps, readouts):
                raise ValueError(f"{name} must have shape {(num_steps, readouts)}, got {tuple(value.shape)}")
        rate, online = self._constants(state.weights)
        offline = ~online if isinstance(online, Tensor) else torch.full(
            (readouts,), not online, dtype=torch.bool, device=rate.device)
        replay_rate = rate * offline.to(rate.dtype)
        weights, eligibility, pending = state.weights, initial_eligibility, state.pending
        decay = self.eligibility_decay
        for t in range(num_steps):
            _, _, eligibility, weights, _ = three_factor_step_unchecked(
                weights, pending, eligibility, features[:, t], target[t].expand(batch, readouts),
                gate[t].expand(batch, readouts), replay_rate, decay, True,
            )
        return state._replace(weights=weights, pending=torch.zeros_like(state.pending))

    def reset_eligibility(self, state: ThreeFactorState) -> ThreeFactorState:
        """Set E = 0 (e.g. at a session start); weights and pending are kept."""
        return state._replace(eligibility=torch.zeros_like(state.eligibility))


def _check_state(state: ThreeFactorState) -> None:
    """A ThreeFactorState whose eligibility [B, D] and pending [B, M, D] match its weights
    [B, M, D] (shapes, dtype)."""
    if not isinstance(state, ThreeFactorState):
        raise TypeError(f"state must be a ThreeFactorState (from initial_state), got {type(state).__name__}")
    batch, _, num_features = state.weights.shape
    for name, tensor, shape in (("state.eligibility", state.eligibility, (batch, num_features)),
                                ("state.pending", state.pending, tuple(state.weights.shape))):
        if tuple(tensor.shape) != shape or tensor.dtype != state.weights.dtype:
            raise ValueError(f"{name} is {tensor.dtype} {tuple(tensor.shape)}; expected "
                             f"{state.weights.dtype} {shape} (state.weights' dtype)")

