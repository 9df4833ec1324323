"""FORCE readout: recursive least squares on the readout weights.

Nicola & Clopath 2017 (arXiv 1609.02545), after Sussillo & Abbott 2009. B networks,
M readouts sharing D input features x (filtered spike traces, optionally a bias), one
inverse correlation matrix P per network (shared by the M readouts, since they see
the same x):

    z_t = W_{t-1} x_t                                   every step
    on update steps (every ``update_every`` steps, counting from the first):
        k_t = P_{t-1} x_t / (1 + x_t^T P_{t-1} x_t)      gain, = P_t x_t
        P_t = P_{t-1} - k_t (P_{t-1} x_t)^T
        W_t = W_{t-1} - (z_t - y_t) k_t^T
    P_0 = I / alpha

After updates on samples x_1..x_T (weights starting at W_0) this is exactly ridge
regression with penalty alpha ||W - W_0||^2:
W_T = (alpha W_0 + sum_t y_t x_t^T)(alpha I + sum_t x_t x_t^T)^{-1}.
P only shrinks, so the effective learning rate anneals to zero and relearning after a
change in the task needs ``reset`` (P <- I / alpha), which the what/when study tests.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from neuro.reservoir._checks import check_count, check_tensor, initial_readout_weights
from neuro.reservoir.connectivity import DEFAULT_MEMORY_LIMIT_BYTES

__all__ = ["FORCEReadout", "FORCEState", "rls_update", "rls_update_"]


class FORCEState(NamedTuple):
    """weights [B, M, D]; inverse_correlation P [B, D, D]; step: steps taken so far."""

    weights: Tensor
    inverse_correlation: Tensor
    step: int


def rls_update(
    weights: Tensor, inverse_correlation: Tensor, features: Tensor, output: Tensor, target: Tensor
) -> tuple[Tensor, Tensor]:
    """One RLS update (see the module docstring). Returns (W_t [B, M, D], P_t [B, D, D]).

    weights [B, M, D]; inverse_correlation [B, D, D]; features x [B, D];
    output z = W_{t-1} x [B, M]; target y [B, M].
    """
    p_x = torch.bmm(inverse_correlation, features.unsqueeze(-1)).squeeze(-1)  # [B, D]
    denominator = 1.0 + (features * p_x).sum(-1, keepdim=True)  # [B, 1]
    gain = p_x / denominator  # [B, D]
    new_p = inverse_correlation - gain.unsqueeze(-1) * p_x.unsqueeze(-2)
    new_weights = weights - (output - target).unsqueeze(-1) * gain.unsqueeze(-2)
    return new_weights, new_p


def rls_update_(
    weights: Tensor, inverse_correlation: Tensor, features: Tensor, output: Tensor, target: Tensor
) -> None:
    """``rls_update`` in place on ``weights`` and ``inverse_correlation`` (same equations;
    rank-one ``addr_`` updates avoid allocating a new [D, D] matrix per update)."""
    p_x = torch.bmm(inverse_correlation, features.unsqueeze(-1)).squeeze(-1)
    denominator = 1.0 + (features * p_x).sum(-1, keepdim=True)
    gain = p_x / denominator
    error = output - target
    for b in range(weights.shape[0]):
        inverse_correlation[b].addr_(gain[b], p_x[b], alpha=-1.0)
        weights[b].addr_(error[b], gain[b], alpha=-1.0)


@dataclass(frozen=True)
class FORCEReadout:
    """Hyperparameters of M FORCE readouts over D features.

    alpha: regulariser, P_0 = I / alpha (> 0; Nicola & Clopath's Izhikevich runs use
    values around 0.5-2 in units where x ~ spike traces); update_every: RLS every n
    steps (Nicola & Clopath: 20 steps of 0.04 ms).

    Precision (measured, 200 neurons + bias, spike-trace features with |x|^2 ~ 23, 20k
    updates, against float64 ridge regression): the update P - k (P x)^T subtracts nearly
    equal numbers when s = x^T P x is large, losing about eps * s of P per update (eps =
    6e-8 in float32), and s starts at |x|^2 / alpha. float32 weights were off by 2e-5
    (alpha = 1), 6e-3 (1e-3), 7e-2 (1e-4, P no longer positive definite) and 23x (1e-6:
    garbage, silently); float64 stayed within 2e-8 at alpha = 1e-6. Keep eps |x|^2 / alpha
    well below 1e-3 in float32, else use float64 (the what/when study does).
    P also loses exact symmetry in float32 (||P - P^T|| / ||P|| = 5e-5 at alpha = 1 and 6e-3
    at alpha = 1e-2 after 20k updates, 201 features), without effect on the weights (2.3e-6
    from ridge either way); the symmetric form P - s s^T (s = P x / sqrt(1 + x^T P x)) was
    tried and dropped: ``addr_`` rounds (i, j) and (j, i) differently, so it stayed asymmetric
    (2e-3) at the same weight error.
    ``run_session`` checks P after every trial (``ReadoutDiverged``); ``step`` reads no
    tensor values.
    """

    num_readouts: int
    num_features: int
    alpha: float = 1.0
    update_every: int = 20

    def __post_init__(self) -> None:
        # numbers.Integral / numbers.Real: numpy scalars too (stored as int / float)
        for name in ("num_readouts", "num_features", "update_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
            object.__setattr__(self, name, int(value))
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real):
            raise TypeError(f"alpha must be a real number, got {self.alpha!r}")
        if not math.isfinite(self.alpha) or self.alpha <= 0:
            raise ValueError(f"alpha must be finite and > 0, got {self.alpha!r}")
        object.__setattr__(self, "alpha", float(self.alpha))

    def initial_state(
        self,
        batch_size: int = 1,
        *,
        weights: Tensor | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
    ) -> FORCEState:
        """P = I / alpha for every network; weights zero or a copy of ``weights`` [B, M, D].

        P is [B, D, D]: a ValueError before P is allocated when P and one update's
        [B, D, D] temporary (2 B D^2 elements) exceed ``memory_limit_bytes``."""
        memory_limit_bytes = check_count("memory_limit_bytes", memory_limit_bytes, minimum=1)
        weights = initial_readout_weights(batch_size, self.num_readouts, self.num_features,
                                          weights, device, dtype)  # checks batch_size, dtype
        batch_size = weights.shape[0]
        need = 2 * batch_size * self.num_features**2 * weights.element_size()
        if need > memory_limit_bytes:
            raise ValueError(
                f"FORCE's inverse correlation P [batch_size={batch_size}, {self.num_features}, "
                f"{self.num_features}] in {weights.dtype} needs about {need / 2**30:.2f} GiB with one "
                f"update's temporary, above memory_limit_bytes={memory_limit_bytes} "
                f"({memory_limit_bytes / 2**30:.2f} GiB); use fewer features or networks, or raise "
                "memory_limit_bytes")
        identity = torch.eye(self.num_features, device=device, dtype=dtype) / self.alpha
        return FORCEState(weights, identity.expand(batch_size, -1, -1).clone(), 0)

    def reset(self, state: FORCEState, networks: Tensor | None = None) -> FORCEState:
        """Explicit reset P <- I / alpha (all networks, or those where ``networks`` [B] is True)."""
        _check_state_type(state)
        batch, _, num_features = state.weights.shape
        p = state.inverse_correlation
        identity = torch.eye(num_features, device=p.device, dtype=p.dtype) / self.alpha
        if networks is None:
            return state._replace(inverse_correlation=identity.expand(batch, -1, -1).clone())
        if not isinstance(networks, Tensor):
            raise TypeError(f"networks must be a bool torch.Tensor of shape {(batch,)} or None, "
                            f"got {type(networks).__name__}")
        if networks.shape != (batch,) or networks.dtype != torch.bool:
            raise ValueError(
                f"networks must be a bool tensor of shape {(batch,)}, "
                f"got {networks.dtype} {tuple(networks.shape)}"
            )
        new_p = torch.where(networks.view(batch, 1, 1), identity, p)
        return state._replace(inverse_correlation=new_p)

    def step(
        self, state: FORCEState, features: Tensor, target: Tensor, *, inplace: bool = False
    ) -> tuple[FORCEState, Tensor]:
        """Advance one step. features [B, D]; target [B, M] or [M].

        Returns (new state, output z [B, M] computed with the weights before the update).
        ``inplace=True`` updates the weights and P tensors of ``state`` in place (the
        caller gives up the old state; same numbers, no [B, D, D] allocation per update).
        """
        _check_state_type(state)
        batch, readouts, num_features = state.weights.shape
        check_tensor("features", features, dtype=state.weights.dtype)
        if tuple(features.shape) != (batch, num_features):
            raise ValueError(
                f"features must have shape {(batch, num_features)}, got {tuple(features.shape)}"
            )
        p = state.inverse_correlation
        if tuple(p.shape) != (batch, num_features, num_features) or p.dtype != state.weights.dtype:
            raise ValueError(f"state.inverse_correlation is {p.dtype} {tuple(p.shape)}; expected "
                             f"{state.weights.dtype} {(batch, num_features, num_features)}")
        if isinstance(state.step, bool) or not isinstance(state.step, int):
            raise TypeError(f"state.step={state.step!r} must be an int")
        check_tensor("target", target, dtype=state.weights.dtype)
        if target.shape == (readouts,):
            target = target.expand(batch, readouts)
        elif target.shape != (batch, readouts):
            raise ValueError(
                f"target must have shape {(batch, readouts)} or {(readouts,)}, "
                f"got {tuple(target.shape)}"
            )
        output = torch.bmm(state.weights, features.unsqueeze(-1)).squeeze(-1)
        if state.step % self.update_every != 0:
            return state._replace(step=state.step + 1), output
        if inplace:
            rls_update_(state.weights, state.inverse_correlation, features, output, target)
            return state._replace(step=state.step + 1), output
        weights, p = rls_update(state.weights, state.inverse_correlation, features, output, target)
        return FORCEState(weights, p, state.step + 1), output


def _check_state_type(state) -> None:
    if not isinstance(state, FORCEState):
        raise TypeError(f"state must be a FORCEState (from initial_state), got {type(state).__name__}")
