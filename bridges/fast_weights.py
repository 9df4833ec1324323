"""An online fast-weight memory written during a stream (test-time memorisation, Titans style).

A memory S [B, K, V] maps keys to values. It is read and written one *write group*
(e.g. one trial) at a time, so a prediction never sees the target it is scored on:

    read:   z_t = q_t S                                  (q_t [K], z_t [V])
    write:  for each step t of the group, in order,
              S <- a_t S                                 (a_t = exp(g_t) in (0, 1]; 1: no decay)
              e_t = v_t - S^T k_t                        (prediction error of the memory)
              S <- S + beta_t k_t e_t^T                  (error-driven write of strength beta_t)

The write is the delta rule (Widrow-Hoff; DeltaNet, Schlag et al. 2021, arXiv:2102.11174),
which is one step of gradient descent on the associative loss 0.5 ||S^T k_t - v_t||^2 with
step size beta_t (for unit keys) -- the inner-loop update of Titans (Behrouz et al.,
arXiv:2501.00663) without momentum; with a decay it is the gated delta rule (Yang et al.,
arXiv:2412.06464), Titans' forgetting gate. The sequential write of a whole group runs
through :func:`bridges.delta_rule.delta_rule` / :func:`bridges.gated_delta_rule.gated_delta_rule`
(chunked, differentiable), so the same code serves meta-training (gradients flow into the
keys, values and write strengths) and the online test stream.

Layout: one head; keys [B, T, K], values [B, T, V], write strengths [B, T], log decays
[B, T] (<= 0). Splitting a write group into consecutive pieces gives the same memory as
writing it at once (the update is sequential).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from bridges._validation import (
    check_device,
    check_dtype,
    check_int,
    check_log_decay,
    check_same_dtype,
    check_tensor,
)

__all__ = ["FastWeightState", "initial_memory", "read", "write", "write_reference"]


class FastWeightState(NamedTuple):
    """memory [B, K, V]; writes: number of (key, value) steps written so far."""

    memory: Tensor
    writes: int = 0


def initial_memory(batch_size: int, key_dim: int, value_dim: int, *,
                   device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                   ) -> FastWeightState:
    """An empty memory (S = 0); ``dtype`` a floating dtype."""
    shape = [check_int(name, value) for name, value in
             (("batch_size", batch_size), ("key_dim", key_dim), ("value_dim", value_dim))]
    check_dtype("dtype", dtype)
    check_device("device", device)
    return FastWeightState(torch.zeros(*shape, device=device, dtype=dtype), 0)


def _dims(state: FastWeightState) -> tuple[int, int, int]:
    if not isinstance(state, FastWeightState):
        raise TypeError(f"state must be a FastWeightState (from initial_memory), "
                        f"got {type(state).__name__}")
    return tuple(state.memory.shape)


def _check(name: str, x: Tensor, batch: int, last: int, memory: Tensor) -> None:
    check_tensor(name, x, ndim=3, layout=f"[B, T, {last}]")
    if x.shape[0] != batch or x.shape[2] != last:
        raise ValueError(f"{name} must have shape [B={batch}, T, {last}], got {tuple(x.shape)}")
    _check_device(name, x, memory)


def _check_device(name: str, x: Tensor, memory: Tensor) -> None:
    if x.device != memory.device:
        raise ValueError(f"{name} must be on the memory's device {memory.device}, got {x.device}")


def _check_write(state, keys, values, write_strength, log_decay) -> None:
    batch, key_dim, value_dim = _dims(state)
    _check("keys", keys, batch, key_dim, state.memory)
    _check("values", values, batch, value_dim, state.memory)
    check_same_dtype(memory=state.memory, keys=keys, values=values)
    length = keys.shape[1]
    if values.shape[1] != length:
        raise ValueError(f"values must have T={length} steps like keys, got {values.shape[1]}")
    steps = tuple(keys.shape[:2])
    for name, x in (("write_strength", write_strength), ("log_decay", log_decay)):
        if x is None and name == "log_decay":
            continue
        allowed = f"{'None or ' if name == 'log_decay' else ''}a tensor of shape {steps} [B, T]"
        if not isinstance(x, Tensor):   # a float was reported as "got ()", a shape it lacks
            raise TypeError(f"{name} must be {allowed}, got {type(x).__name__}")
        if tuple(x.shape) != steps:
            raise ValueError(f"{name} must be {allowed}, got {tuple(x.shape)}")
        _check_device(name, x, state.memory)


def read(state: FastWeightState, queries: Tensor) -> Tensor:
    """z = q S: queries [B, T, K] (the memory's dtype, as :func:`write` asks of keys and
    values; no silent cast) -> [B, T, V] (the memory is not changed)."""
    batch, key_dim, _ = _dims(state)
    _check("queries", queries, batch, key_dim, state.memory)
    if queries.dtype != state.memory.dtype:
        raise ValueError(f"queries must have the memory's dtype {state.memory.dtype}, "
                         f"got {queries.dtype}")
    return queries @ state.memory


def write(state: FastWeightState, keys: Tensor, values: Tensor, write_strength: Tensor,
          log_decay: Tensor | None = None, *, chunk_size: int = 64) -> FastWeightState:
    """Write the steps of one group in order (module docstring) and return the new state.

    keys [B, T, K] (usually unit norm), values [B, T, V] (the memory's dtype), write_strength beta
    [B, T], log_decay g [B, T] <= 0 or None (no decay); a bad g is reported under the name
    ``g`` of :func:`bridges.gated_delta_rule.gated_delta_rule`."""
    from bridges.delta_rule import delta_rule
    from bridges.gated_delta_rule import gated_delta_rule

    _check_write(state, keys, values, write_strength, log_decay)
    length = keys.shape[1]
    if length == 0:
        return state
    k, v = keys.unsqueeze(2), values.unsqueeze(2)                       # [B, T, 1, D]
    beta = write_strength.unsqueeze(2).to(keys.dtype)                   # [B, T, 1]
    initial = state.memory.unsqueeze(1)                                 # [B, 1, K, V]
    if log_decay is None:
        _, final = delta_rule(k, k, v, beta, 1.0, initial_state=initial, output_final_state=True,
                              chunk_size=chunk_size)
    else:
        _, final = gated_delta_rule(k, k, v, log_decay.unsqueeze(2).to(keys.dtype), beta, 1.0,
                                    initial_state=initial, output_final_state=True,
                                    chunk_size=chunk_size)
    # the delta rules return a float32 state for half-precision inputs: the memory keeps its dtype
    return FastWeightState(final.squeeze(1).to(state.memory.dtype), state.writes + length)


def write_reference(state: FastWeightState, keys: Tensor, values: Tensor, write_strength: Tensor,
                    log_decay: Tensor | None = None) -> FastWeightState:
    """The same write as an explicit loop over steps (readable reference, test oracle).

    Checked as :func:`write` checks (a bad log_decay is reported under its own name); like
    :func:`write`, it converts write_strength and log_decay to the memory's dtype."""
    _check_write(state, keys, values, write_strength, log_decay)
    if log_decay is not None:
        log_decay = check_log_decay("log_decay", log_decay).to(keys.dtype)
    write_strength = write_strength.to(keys.dtype)
    memory = state.memory.clone()
    for t in range(keys.shape[1]):
        if log_decay is not None:
            memory = torch.exp(log_decay[:, t])[:, None, None] * memory
        k, v = keys[:, t], values[:, t]
        error = v - torch.einsum("bk,bkv->bv", k, memory)
        memory = memory + write_strength[:, t, None, None] * k.unsqueeze(-1) * error.unsqueeze(-2)
    return FastWeightState(memory, state.writes + keys.shape[1])
