"""``simulate(..., engine="compiled")``: the whole loop of steps in C (``kernels.izhikevich.compiled``).

Same model, same update order and the same rounded operations as the eager engine
(``simulation.py``): given the same ``noise=`` array both engines return bit-identical
states and rasters, in float32 and float64. With drawn noise the engine draws
z ~ N(0, 1) itself (ziggurat on xoshiro256**, seeded by one 64-bit integer taken from
``seed``) and uses the current ``z * (noise_std / sqrt(dt_ms))``, rounded to the model
dtype, then ``(noise + input) + 140`` as the eager engine does: the same distribution
as the eager engine's torch ``normal_`` draws, another stream. Inputs, if any, are
projected in blocks of ``block_steps`` steps with ``input_projection`` (same bits).

Not supported (ValueError naming the argument): a non-CPU device, a refractory clamp
(``refractory_ms > 0``). No C compiler:
``kernels.izhikevich.compiled.CompilerNotFoundError``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from neuro.reservoir.step import (
    ReservoirParams,
    ReservoirState,
    SimulationDiverged,
    _state_buffer,
    input_projection,
)
from neuro.seeding import int_seed

__all__ = ["engine_seed", "simulate_compiled"]

CALL_NEURON_STEPS = 50_000_000


def engine_seed(seed) -> int:
    """One 64-bit seed for the engine's generator: an int >= 0 as is; a numpy or torch
    Generator is consumed for one 63-bit integer (see ``neuro.seeding``)."""
    if isinstance(seed, torch.Generator):
        return int(torch.randint(0, 2**62, (1,), generator=seed, device=seed.device))
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    return int_seed(seed)


def _check_supported(params: ReservoirParams) -> None:
    if params.device.type != "cpu":
        raise ValueError(f"engine='compiled' runs on the CPU; the params are on {params.device} "
                         "(use engine='eager' there)")
    if params.neurons.refractory_ms > 0:
        raise ValueError(f"engine='compiled' has no refractory clamp (refractory_ms="
                         f"{params.neurons.refractory_ms}); use engine='eager'")


def simulate_compiled(params: ReservoirParams, state: ReservoirState, inputs: Tensor | None, dt_ms: float,
                      num_steps: int, noise: Tensor | None, seed, record: str, record_trace: bool,
                      block_steps: int):
    """The compiled engine behind ``simulate`` (arguments already checked there; ``seed``
    is None unless the engine draws noise)."""
    from kernels.izhikevich.compiled import CompiledRun, rng_state
    from neuro.reservoir.izhikevich import step_coefficients
    from neuro.reservoir.simulation import FinalTrace, _fill_drive, assemble_result

    _check_supported(params)
    b, n = params.batch_size, params.num_neurons
    buffer = _state_buffer(state, params)
    coef = step_coefficients(params.neurons, dt_ms)
    table = params.event_table
    shared = table.shared_targets is not None
    exponential = params.synapse == "exponential"
    run = CompiledRun(buffer, coef.half_step_ms, coef.k1, coef.k2, coef.u_decay, coef.u_v_gain, params.neurons.c,
                      params.neurons.v_peak_mv, math.exp(-dt_ms / params.synapse_tau_ms) if exponential else None,
                      table.shared_targets if shared else table.targets, table.weights, shared)
    with_inputs = inputs is not None and params.num_inputs > 0
    draws = seed is not None
    noise_scale = params.noise_std / math.sqrt(dt_ms) if draws else None  # as draw_noise rounds it
    rng = rng_state(engine_seed(seed), params.dtype) if draws else None
    chunks: list[Tensor] = []
    counts: list[Tensor] = []
    trace_decay = math.exp(-dt_ms / params.trace_tau_ms)
    trace = state.trace.to(params.dtype).contiguous().clone() if record_trace else None
    final_trace = None if record_trace else FinalTrace(state.trace, trace_decay, num_steps)
    keep_spikes = record != "none"  # else a call's indices only feed final_trace, then go
    num_spikes = 0
    traces = torch.empty(b, num_steps, n, dtype=params.dtype) if record_trace else None
    # blocks of drive for explicit noise or inputs; else calls of up to CALL_NEURON_STEPS
    # neuron-steps (~0.1 s each: Ctrl-C is honoured between calls)
    given_drive = with_inputs or noise is not None
    block = block_steps if given_drive else max(1, min(num_steps, CALL_NEURON_STEPS // (b * n)))
    drive = torch.empty(min(block, max(num_steps, 1)), b, n, dtype=params.dtype) if given_drive else None
    for start in range(0, num_steps, block):
        steps = min(block, num_steps - start)
        block_drive = None
        if noise is not None:  # the eager engine's drive, complete
            block_drive = drive[:steps]
            _fill_drive(block_drive, params, inputs, noise, start, steps, dt_ms, None)
        elif with_inputs:  # the input projection; the engine adds its noise and 140
            block_drive = drive[:steps]
            block_drive.copy_(input_projection(inputs[:, start : start + steps],
                                               params.input_weights).transpose(0, 1))
        step_chunks, step_counts, diverged = run.run(
            steps, block_drive, noise is not None, noise_scale, rng, state.step + start,
            trace, trace_decay, None if traces is None else traces[:, start:])
        if final_trace is not None:
            flat = torch.cat(step_chunks) if step_chunks else torch.zeros(0, dtype=torch.long)
            final_trace.add(flat, torch.repeat_interleave(torch.arange(step_counts.numel()), step_counts),
                            start, step_counts.numel())
        num_spikes += int(step_counts.sum())
        if keep_spikes:
            chunks.extend(step_chunks)
            counts.append(step_counts)
        if diverged is not None:
            step, network, neuron, is_v = diverged
            value = float(buffer[network, neuron if is_v else n + neuron])
            raise SimulationDiverged(step, network, neuron, value)
    flat = counts_all = None  # record="none": nothing per spike was kept
    if keep_spikes:
        flat = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.long)
        counts_all = torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)
    return assemble_result(params, state, buffer, flat, counts_all, num_steps, num_spikes, record, None,
                           trace if record_trace else final_trace.trace, traces)
