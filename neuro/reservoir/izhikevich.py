"""Heterogeneous Izhikevich (2003) neurons: parameters, state and a batched functional step.

Model (Izhikevich 2003, "Simple model of spiking neurons", IEEE TNN 14:1569)::

    dv/dt = 0.04 v^2 + 5 v + 140 - u + I        (v in mV, t in ms)
    du/dt = a (b v - u)
    if v >= v_peak (30 mV):  v <- c,  u <- u + d

Heterogeneous population (his Fig. 3 network): r ~ U(0, 1) per neuron;
excitatory a = 0.02, b = 0.2, c = -65 + 15 r^2, d = 8 - 6 r^2;
inhibitory a = 0.02 + 0.08 r, b = 0.25 - 0.05 r, c = -65, d = 2.
The first round(excitatory_fraction * N) neurons are excitatory (his ordering).

Integration: forward Euler with the v update split into two half steps of dt/2 (his
"for numerical stability"); u is updated with the new v. Arithmetic order is that of
``kernels.izhikevich`` (one rounding per op), so this step, the reservoir step and the
Brian2 backend agree bit for bit in float64. Optional refractory clamp (our addition):
for ``refractory_ms`` after a spike, v is held at c (u keeps evolving): for the
n = ceil(refractory_ms / dt) steps after the spike step (a ratio within 1e-9 of an integer
counts as that integer). A spike starts the countdown ``refractory_left_ms`` at n * dt;
each step takes dt off it, and a neuron is clamped while more than dt / 2 is left, so
float rounding of the countdown (0.1 ms taken ten times from 1.0 ms leaves 1.4e-16, not
0) never adds a step (``refractory_countdown_ms``).
Euler's first-order error shows in the rates: one reservoir fired 9.1 / 8.3 / 7.4 Hz at
dt = 0.02 / 0.5 / 1.0 ms (measured), so compare runs at one dt.

Shapes: params a, b, c, d are [B or 1, N]; state v_mv, u are [B, N]; current [B, N].
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from kernels.izhikevich import izhikevich_neuron_update_
from neuro.reservoir._checks import (
    Seed,
    check_count,
    check_dt,
    check_float_dtype,
    check_fraction,
    check_real,
    check_tensor,
    torch_generator,
)

__all__ = [
    "IzhikevichParams",
    "IzhikevichState",
    "heterogeneous_izhikevich",
    "izhikevich_step",
    "refractory_countdown_ms",
    "resting_state",
    "step_coefficients",
]


class IzhikevichParams(NamedTuple):
    """Per-neuron constants, each a Tensor [B or 1, N]; ``v_peak_mv`` spike cut-off (mV);
    ``refractory_ms`` clamp length after a spike (0 = none)."""

    a: Tensor
    b: Tensor
    c: Tensor
    d: Tensor
    v_peak_mv: float = 30.0
    refractory_ms: float = 0.0


class IzhikevichState(NamedTuple):
    """Membrane potential ``v_mv`` and recovery ``u``, each [B, N]; ``refractory_left_ms``
    [B, N] or None (None = nobody refractory)."""

    v_mv: Tensor
    u: Tensor
    refractory_left_ms: Tensor | None = None


class StepCoefficients(NamedTuple):
    """Per-step constants of the split-Euler scheme (see ``kernels/izhikevich/naive.py``)."""

    half_step_ms: float
    k1: float  # 0.04 * h
    k2: float  # 1 + 5 * h
    u_decay: Tensor  # 1 - a dt, [B or 1, N]
    u_v_gain: Tensor  # a b dt, [B or 1, N]


def step_coefficients(params: IzhikevichParams, dt_ms: float) -> StepCoefficients:
    """Constants of one step of length ``dt_ms`` (computed once per simulation)."""
    half = dt_ms / 2.0
    a_dt = params.a * dt_ms
    return StepCoefficients(half, 0.04 * half, 1.0 + 5.0 * half, 1.0 - a_dt, a_dt * params.b)


def refractory_countdown_ms(refractory_ms: float, dt_ms: float) -> float:
    """The countdown a spike starts: ``refractory_ms`` rounded up to whole steps,
    ceil(refractory_ms / dt_ms) * dt_ms (ratios within 1e-9 of an integer count as that
    integer); 0 when there is no clamp. Clamped while the countdown exceeds dt_ms / 2."""
    if refractory_ms <= 0:
        return 0.0
    return math.ceil(refractory_ms / dt_ms - 1e-9) * dt_ms


def heterogeneous_izhikevich(
    num_neurons: int,
    excitatory_fraction: float = 0.8,
    seed: Seed = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    v_peak_mv: float = 30.0,
    refractory_ms: float = 0.0,
    is_excitatory: Tensor | None = None,
) -> tuple[IzhikevichParams, Tensor]:
    """Izhikevich 2003 heterogeneous E/I population.

    ``is_excitatory`` (bool [N]) replaces the first-``excitatory_fraction`` assignment (the
    same r draws; each neuron gets the a, b, c, d of its own type).
    Returns (params with a, b, c, d of shape [1, N], is_excitatory bool [N]).
    """
    num_neurons = check_count("num_neurons", num_neurons, minimum=1)
    excitatory_fraction = check_fraction("excitatory_fraction", excitatory_fraction)
    refractory_ms = check_real("refractory_ms", refractory_ms, 0.0)
    v_peak_mv = check_real("v_peak_mv", v_peak_mv)
    dtype = check_float_dtype("dtype", dtype)
    if is_excitatory is None:
        is_excitatory = torch.arange(num_neurons, device=device) < round(excitatory_fraction * num_neurons)
    else:
        check_tensor("is_excitatory", is_excitatory)
        if is_excitatory.dtype != torch.bool or tuple(is_excitatory.shape) != (num_neurons,):
            raise ValueError(f"is_excitatory has dtype {is_excitatory.dtype} and shape "
                             f"{list(is_excitatory.shape)}; expected a bool tensor [{num_neurons}]")
        is_excitatory = is_excitatory.to(device)
    generator = torch_generator(seed, device)
    r = torch.rand(num_neurons, generator=generator, device=device, dtype=torch.float64)
    r2 = r * r
    a = torch.where(is_excitatory, torch.full_like(r, 0.02), 0.02 + 0.08 * r)
    b = torch.where(is_excitatory, torch.full_like(r, 0.2), 0.25 - 0.05 * r)
    c = torch.where(is_excitatory, -65.0 + 15.0 * r2, torch.full_like(r, -65.0))
    d = torch.where(is_excitatory, 8.0 - 6.0 * r2, torch.full_like(r, 2.0))
    params = IzhikevichParams(
        *(x.to(dtype).unsqueeze(0) for x in (a, b, c, d)),
        v_peak_mv=float(v_peak_mv),
        refractory_ms=float(refractory_ms),
    )
    return params, is_excitatory


def resting_state(params: IzhikevichParams, batch_size: int = 1) -> IzhikevichState:
    """v = -65 mV, u = b v (Izhikevich's initial condition), broadcast to [B, N]."""
    batch_size = check_count("batch_size", batch_size, minimum=1)
    shape = (batch_size, params.b.shape[-1])
    v = torch.full(shape, -65.0, dtype=params.b.dtype, device=params.b.device)
    refractory = torch.zeros_like(v) if params.refractory_ms > 0 else None
    return IzhikevichState(v, (params.b * v).expand(shape).clone(), refractory)


def izhikevich_step(
    state: IzhikevichState, params: IzhikevichParams, current: Tensor, dt_ms: float
) -> tuple[IzhikevichState, Tensor]:
    """One split-Euler step of B x N neurons driven by ``current`` [B, N] (no synapses).

    Pure: inputs are not modified. Returns (new state, spikes bool [B, N]).
    """
    dt_ms = check_dt(dt_ms)
    v, u = state.v_mv, state.u
    check_tensor("state.v_mv", v, floating=True)
    check_tensor("current", current)
    if v.dim() != 2 or u.shape != v.shape:
        raise ValueError(f"state.v_mv {list(v.shape)} and state.u {list(u.shape)} must both be [B, N]")
    if current.shape != v.shape:
        raise ValueError(f"current has shape {list(current.shape)}; expected {list(v.shape)} (= state)")
    for name in ("a", "b", "c", "d"):
        p = getattr(params, name)
        if p.dim() != 2 or p.shape[1] != v.shape[1] or p.shape[0] not in (1, v.shape[0]):
            raise ValueError(f"params.{name} has shape {list(p.shape)}; expected [1 or {v.shape[0]}, {v.shape[1]}]")
        if p.dtype != v.dtype:  # float64 params turned a float32 state into float64 silently
            raise TypeError(f"params.{name} has dtype {p.dtype}; expected state.v_mv's dtype {v.dtype}")
    if u.dtype != v.dtype:
        raise TypeError(f"state.u has dtype {u.dtype}; expected {v.dtype} (state.v_mv's dtype)")
    refractory_left = state.refractory_left_ms
    if refractory_left is not None and refractory_left.shape != v.shape:
        raise ValueError(f"state.refractory_left_ms has shape {list(refractory_left.shape)}; expected "
                         f"{list(v.shape)} (= state.v_mv) or None")
    if not (isinstance(params.v_peak_mv, (int, float)) and math.isfinite(params.v_peak_mv)):
        raise ValueError(f"params.v_peak_mv={params.v_peak_mv!r} must be a finite number (mV)")
    coef = step_coefficients(params, dt_ms)
    v, u = v.clone(), u.clone()
    drive = current + 140.0
    izhikevich_neuron_update_(
        v, u, drive, torch.empty_like(v), torch.empty_like(v),
        coef.half_step_ms, coef.k1, coef.k2, coef.u_decay, coef.u_v_gain,
    )
    refractory = state.refractory_left_ms
    if params.refractory_ms > 0:
        if refractory is None:
            refractory = torch.zeros_like(v)
        clamped = refractory > 0.5 * dt_ms
        v = torch.where(clamped, params.c.expand_as(v), v)
    spikes = v >= params.v_peak_mv
    v = torch.where(spikes, params.c.expand_as(v), v)
    u = torch.where(spikes, u + params.d, u)
    if params.refractory_ms > 0:
        refractory = torch.where(
            spikes, torch.full_like(v, refractory_countdown_ms(params.refractory_ms, dt_ms)),
            (refractory - dt_ms).clamp_(min=0.0),
        )
    return IzhikevichState(v, u, refractory), spikes
