"""``simulate``: run B reservoirs for T steps on the in-place fast path.

Same arithmetic as ``reservoir_step`` (bit-identical in every dtype for up to 16 input
channels, see ``input_projection``), but one state buffer is advanced in place
(``kernels.izhikevich``, with its arguments bound once), noise is drawn in blocks of
``block_steps`` steps (default: up to 100 steps, ~4M values) into a preallocated buffer,
the input projection is computed once per block, and finiteness is checked once per
block (on failure the block is replayed step by step from a snapshot so that
``SimulationDiverged`` names the exact step). The loop runs in ``torch.inference_mode``
(no autograd bookkeeping per op; nothing in it needs gradients, and what it returns is
made outside it). Spikes are recorded as indices (no per-step copy): per step on the torch
path (its event-driven delivery needs them anyway), and on the Triton path (CUDA) as flags
into a [T, B, N] block whose indices are taken once per block, so that the steps of a
block run without a host synchronisation (``Stepper.step_flags``); there, full blocks after
the first are one CUDA graph's replays (``_FlagBlocks``). The final trace
r_T = r_0 d^T + sum_t d^(T-1-t) s_t (d = exp(-dt/trace_tau)) is accumulated from them block
by block (``FinalTrace``) unless ``record_trace`` asks for the per-step traces; with
``record="none"`` a block's spike indices are then dropped, so a run of any length keeps
O(B N) memory (it kept ~60 bytes per spike: 10^6 steps of 5k neurons at 8 Hz, ~1 GB).

Chunked runs (measured): ``simulate(T1)`` then ``simulate(T2)`` from its ``result.state``,
with the same torch.Generator passed as ``seed`` to both (eager engine), continues the run:
v, u, synaptic currents and spikes equal those of one ``simulate(T1 + T2)`` bit for bit when
the drawn noise is the same, i.e. on a CPU generator when every noise draw but the last
holds a multiple of 16 values (torch draws normals in groups of 16 and redraws a partial
last group): B N block_steps and B N T1 multiples of 16 (e.g. B N itself one). Otherwise
the continued noise is another, equally distributed, stream. With ``noise=`` given
explicitly the continuation is always exact. The traces are bit-identical with
``record_trace=True`` (one recursion); without it each call forms its final trace in closed
form, equal to rounding (~1e-7 relative in float32). The compiled engine draws a fresh
engine seed from the generator in every call: a continued run is another stream. The
state holds no generator: save and restore it with ``generator.get_state()`` /
``set_state()``.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from neuro.reservoir._checks import (
    Seed,
    check_count,
    check_dt,
    check_flag,
    check_real_finite,
    check_shape,
    check_tensor,
    torch_generator,
)
from neuro.reservoir.izhikevich import IzhikevichState
from neuro.reservoir.step import (
    ReservoirParams,
    ReservoirState,
    SimulationDiverged,
    Stepper,
    _state_buffer,
    check_finite,
    check_params,
    check_state,
    draw_noise,
    input_projection,
)

__all__ = ["ENGINES", "RECORD_KINDS", "FinalTrace", "SimulationResult", "SpikeRecord", "check_recording_memory",
           "recording_bytes", "simulate"]

RECORD_KINDS = ("indices", "dense", "none")
ENGINES = ("eager", "compiled")


class SpikeRecord(NamedTuple):
    """Spikes as parallel int64 index arrays [S], sorted by (step, batch, neuron); ``step``
    counts from the start of this simulation (0 .. T-1)."""

    step: Tensor
    batch_index: Tensor
    neuron: Tensor

    def to_dense(self, batch_size: int, num_steps: int, num_neurons: int) -> Tensor:
        """Bool raster [B, T, N]."""
        raster = torch.zeros(batch_size * num_steps * num_neurons, dtype=torch.bool, device=self.step.device)
        raster[(self.batch_index * num_steps + self.step) * num_neurons + self.neuron] = True
        return raster.view(batch_size, num_steps, num_neurons)


class SimulationResult(NamedTuple):
    """state: final ReservoirState; spikes: SpikeRecord ("indices"), bool [B, T, N]
    ("dense") or None; num_spikes: total count; trace: [B, T, N] when recorded, else None."""

    state: ReservoirState
    spikes: SpikeRecord | Tensor | None
    num_spikes: int
    trace: Tensor | None = None


def simulate(
    params: ReservoirParams,
    state: ReservoirState,
    inputs: Tensor | None = None,
    dt_ms: float = 0.5,
    *,
    num_steps: int | None = None,
    noise: Tensor | None = None,
    seed: Seed | None = None,
    record: str = "indices",
    record_trace: bool = False,
    block_steps: int | None = None,
    engine: str = "eager",
) -> SimulationResult:
    """Run B reservoirs for T steps.

    inputs: [B, T, M] input signals (None: zero input for ``num_steps`` steps, or for the
    noise's T when ``noise`` is given).
    noise: [B, T, N] noise current (replaces the drawn noise), or None to draw it with
    std noise_std / sqrt(dt_ms) from ``seed`` (int | numpy/torch Generator; required when
    any noise_std > 0). A NaN or inf in ``inputs`` or ``noise`` is a ValueError naming the
    entry (the run would otherwise stop with SimulationDiverged, blaming dt or the weights);
    complex values are a TypeError. record: "indices" | "dense" | "none" (``"none"``
    keeps no per-spike memory: O(B N) for a run of any length).
    engine: "eager" (torch ops, the reference; the Brian2 bit-identity holds for it) or
    "compiled" (the whole loop in C, ``kernels.izhikevich.compiled``; CPU, no refractory
    clamp; needs a C compiler, built once per machine). Given the
    same ``noise=``, both engines give bit-identical results; with drawn noise the compiled
    engine uses its own N(0, 1) generator (a ziggurat, seeded from ``seed``): the same
    statistics, a different raster.
    """
    dt_ms = check_dt(dt_ms)
    check_params(params)
    record_trace = check_flag("record_trace", record_trace)
    if not isinstance(record, str) or record not in RECORD_KINDS:
        raise ValueError(f"record={record!r}; allowed: {', '.join(RECORD_KINDS)}")
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ValueError(f"engine={engine!r}; allowed: {', '.join(map(repr, ENGINES))}")
    if block_steps is None:  # ~4M drive values per block (16 MB in float32), at most 100 steps
        block_steps = max(1, min(100, 4_000_000 // (params.batch_size * params.num_neurons)))
    block_steps = check_count("block_steps", block_steps, minimum=1)
    b, n, m = params.batch_size, params.num_neurons, params.num_inputs
    if inputs is None:
        if num_steps is None and isinstance(noise, Tensor) and noise.dim() == 3:
            num_steps = noise.shape[1]  # the noise fixes T
        if num_steps is None:
            raise ValueError("give inputs [B, T, M], noise [B, T, N] or num_steps (all are None)")
        num_steps = check_count("num_steps", num_steps, minimum=0)
    else:
        check_tensor("inputs", inputs)
        if inputs.dim() != 3:
            raise ValueError(f"inputs has shape {list(inputs.shape)}; expected [{b}, T, {m}]")
        if num_steps is not None and check_count("num_steps", num_steps) != inputs.shape[1]:
            raise ValueError(f"num_steps={num_steps} but inputs has {inputs.shape[1]} steps")
        num_steps = inputs.shape[1]
        check_shape("inputs", inputs, (b, num_steps, m))
        check_real_finite("inputs", inputs)  # a NaN would surface as SimulationDiverged
        inputs = inputs.to(params.device, params.dtype)
    check_state(state, params)
    if not bool(torch.isfinite(state.trace).all()):  # v, u are checked per block; the trace is not
        raise ValueError("state.trace contains NaN or inf")
    if noise is not None:
        check_tensor("noise", noise)
        check_shape("noise", noise, (b, num_steps, n))
        check_real_finite("noise", noise)
        noise = noise.to(params.device, params.dtype)
    check_recording_memory(params, num_steps, record, record_trace)
    noisy = noise is None and params.has_noise
    if noisy and seed is None:
        raise ValueError("noise_std > 0 needs seed= (int or Generator) or an explicit noise= array")
    if engine == "compiled":
        from neuro.reservoir.simulation_compiled import simulate_compiled

        return simulate_compiled(params, state, inputs, dt_ms, num_steps, noise, seed if noisy else None,
                                 record, record_trace, block_steps)
    generator = torch_generator(seed, params.device) if noisy else None

    buffer = _state_buffer(state, params)
    stepper = Stepper(params, buffer, dt_ms, state.neurons.refractory_left_ms, fill_spikes=record_trace)
    drive = torch.empty(min(block_steps, max(num_steps, 1)), b, n, dtype=params.dtype, device=params.device)
    trace_decay = math.exp(-dt_ms / params.trace_tau_ms)
    traces = torch.empty(b, num_steps, n, dtype=params.dtype, device=params.device) if record_trace else None
    trace = state.trace.clone()
    final_trace = None if record_trace else FinalTrace(state.trace, trace_decay, num_steps)
    keep_spikes = record != "none"  # else a block's indices only feed final_trace, then go
    num_spikes = 0
    spike_chunks: list[Tensor] = []  # one [S] (or, Triton, [S, 2]) tensor per block: see below
    block_counts: list[Tensor] = []  # eager torch path: spikes per step, one [steps] tensor per block
    flag_blocks = (_FlagBlocks(stepper, drive, trace, trace_decay, record_trace, num_steps // block_steps)
                   if stepper.steps_without_sync else None)

    # inference mode: no autograd bookkeeping in the ~20 small ops of a step (~20% of a
    # step at N = 1k); everything created inside stays inside (the spike chunks are
    # concatenated below, outside, into ordinary tensors)
    with torch.inference_mode():
        step, append = stepper.step, spike_chunks.append
        for start in range(0, num_steps, block_steps):
            steps = min(block_steps, num_steps - start)
            block = drive[:steps]
            _fill_drive(block, params, inputs, noise, start, steps, dt_ms, generator)
            refractory = stepper.refractory
            snapshot = (buffer.clone(), None if refractory is None else refractory.clone())
            if flag_blocks is not None:
                pairs = flag_blocks.run(steps)  # [S, 2]: (step in block, b * N + j)
                num_spikes += pairs.shape[0]
                if final_trace is not None:
                    final_trace.add(pairs[:, 1], pairs[:, 0], start, steps)
                if keep_spikes:
                    pairs[:, 0] += start
                    append(pairs)
                if record_trace:
                    traces[:, start : start + steps] = flag_blocks.traces[:steps].transpose(0, 1)
            else:  # per step indices, joined once per block (one tensor per step kept ~0.7 kB
                # of bookkeeping each: a run of 10^7 steps grew by ~7 GB even with record="none")
                in_block: list[Tensor] = []
                if record_trace:
                    for t, drive_t in enumerate(block.unbind(0)):
                        in_block.append(stepper.step(drive_t))
                        trace.mul_(trace_decay).add_(stepper.spikes)
                        traces[:, start + t] = trace
                else:
                    keep = in_block.append
                    for drive_t in block.unbind(0):
                        keep(step(drive_t))
                counts = torch.tensor([len(c) for c in in_block], dtype=torch.long)
                flat = torch.cat(in_block).view(-1)
                num_spikes += flat.numel()
                if final_trace is not None:
                    step_in_block = torch.repeat_interleave(torch.arange(steps), counts).to(params.device)
                    final_trace.add(flat, step_in_block, start, steps)
                if keep_spikes:
                    block_counts.append(counts)
                    append(flat)
            try:
                check_finite(buffer, n, state.step + start + steps - 1)
            except SimulationDiverged:
                _replay_to_divergence(snapshot, block, params, dt_ms, state.step + start)
                raise

    flat = counts = None  # record="none": nothing per spike was kept
    if keep_spikes and flag_blocks is not None:
        pairs = torch.cat(spike_chunks) if spike_chunks else torch.zeros(0, 2, dtype=torch.long, device=params.device)
        counts, flat = torch.bincount(pairs[:, 0], minlength=num_steps), pairs[:, 1]
    elif keep_spikes:  # a step returns its spike indices as [S] or [S, 1]; joined per block in the loop
        counts = (torch.cat(block_counts).to(params.device) if block_counts
                  else torch.zeros(0, dtype=torch.long, device=params.device))
        flat = (torch.cat(spike_chunks) if spike_chunks
                else torch.zeros(0, dtype=torch.long, device=params.device))
    refractory = stepper.refractory
    if refractory is not None and refractory.is_inference():  # made in the loop: an ordinary copy
        refractory = refractory.clone()
    return assemble_result(params, state, buffer, flat, counts, num_steps, int(num_spikes), record, refractory,
                           final_trace.trace if final_trace is not None else trace, traces)


def recording_bytes(batch_size: int, num_steps: int, num_neurons: int, record: str, record_trace: bool,
                    dtype: torch.dtype) -> int:
    """Bytes of the per-step arrays ``simulate`` returns: the traces [B, T, N] (``record_trace``)
    and the bool raster [B, T, N] (``record="dense"``). The spike indices ("indices", and
    internally for "dense") grow with the number of spikes, not with B T N; ``record="none"``
    keeps none of them past their block."""
    cells = batch_size * num_steps * num_neurons
    itemsize = torch.empty(0, dtype=dtype).element_size()
    return cells * ((itemsize if record_trace else 0) + (1 if record == "dense" else 0))


def check_recording_memory(params: ReservoirParams, num_steps: int, record: str, record_trace: bool) -> None:
    """ValueError, before any step runs, when the recorded arrays exceed
    ``params.memory_limit_bytes`` (``make_reservoir``'s ``memory_limit_bytes``)."""
    b, n = params.batch_size, params.num_neurons
    need = recording_bytes(b, num_steps, n, record, record_trace, params.dtype)
    limit = params.memory_limit_bytes
    if need > limit:
        kept = " and ".join(what for what, on in (("record_trace=True (traces)", record_trace),
                                                   ('record="dense" (raster)', record == "dense")) if on)
        raise ValueError(
            f"simulate: {kept} for num_steps={num_steps} x batch {b} x {n} neurons needs about "
            f"{need / 2**30:.2f} GiB, above memory_limit_bytes={limit} ({limit / 2**30:.2f} GiB, set in "
            "make_reservoir); simulate fewer steps per call (pass result.state on to the next call), "
            'record="indices" or "none" with record_trace=False, or raise memory_limit_bytes')


class FinalTrace:
    """The final trace r_T = r_0 d^T + sum_t d^(T-1-t) s_t of a run of T steps
    (d = exp(-dt / trace_tau), s_t the spikes of step t), accumulated block by block.

    ``add`` takes one block's spikes (flat indices b * N + j in step order and their step
    within the block) and adds d^(T-1-t) for each: the powers are Python floats rounded
    once to the model dtype, and the spikes are added in step order, so the result does not
    depend on where the run's blocks or engine calls begin and end. Nothing per spike is
    kept between blocks.
    """

    def __init__(self, initial: Tensor, decay: float, num_steps: int):
        self.decay, self.num_steps = decay, num_steps
        self.trace = initial * decay**num_steps  # a new [B, N] tensor (the state's is not touched)

    def add(self, flat: Tensor, step_in_block: Tensor, start: int, steps: int) -> None:
        """Spikes of the ``steps`` steps from step ``start`` on: flat [S], step_in_block [S] (long)."""
        if flat.numel() == 0:
            return
        powers = torch.tensor([self.decay ** (self.num_steps - 1 - t) for t in range(start, start + steps)],
                              dtype=torch.float64)
        weights = powers.to(self.trace.device, self.trace.dtype)[step_in_block]
        self.trace.view(-1).index_add_(0, flat, weights)


def assemble_result(params: ReservoirParams, state: ReservoirState, buffer: Tensor, flat: Tensor | None,
                    counts: Tensor | None, num_steps: int, num_spikes: int, record: str,
                    refractory: Tensor | None, trace: Tensor, traces: Tensor | None = None) -> SimulationResult:
    """The ``SimulationResult`` of a run from its final buffer [B, 3N+1], the flat spike
    indices b * N + j of all steps (step-major, ascending within a step) and the spike
    counts per step [T] (both None for ``record="none"``), the final trace [B, N] and the
    per-step traces [B, T, N] when recorded."""
    b, n = params.batch_size, params.num_neurons
    spikes = None
    if record != "none":
        step_index = torch.repeat_interleave(torch.arange(num_steps, device=params.device), counts)
        spikes = SpikeRecord(step_index, flat // n, flat % n)
        if record == "dense":
            spikes = spikes.to_dense(b, num_steps, n)
    final = ReservoirState(
        IzhikevichState(buffer[:, :n], buffer[:, n : 2 * n], refractory),
        buffer[:, 2 * n : 3 * n], trace, state.step + num_steps,
    )
    return SimulationResult(final, spikes, num_spikes, traces)


MIN_FULL_BLOCKS_FOR_GRAPH = 3  # one eager (compiles), then at least two replays


def _use_cuda_graphs(device: torch.device) -> bool:
    return device.type == "cuda"


def _capture_block(body, device: torch.device):
    """``body`` (kernel launches only, on ``device``) captured as a CUDA graph; capturing runs
    nothing. Thread-local capture: CUDA work of other threads (e.g. a Dask worker's) is not
    an error during it."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.device(device), torch.cuda.graph(graph, capture_error_mode="thread_local"):
        body()
    return graph


class _FlagBlocks:
    """The Triton path's blocks of steps. Step t of a block writes its spike flags into
    ``flags[t]`` (and, with ``record_trace``, the trace into ``traces[t]``), reading the
    drive from ``drive[t]``: fixed buffers [T_block, B, N], so the indices are taken once per
    block (``run`` returns them) and a block is free of host synchronisation. On CUDA, when
    a run has at least ``MIN_FULL_BLOCKS_FOR_GRAPH`` full blocks, the second is captured
    once as a CUDA graph (the first compiled the kernels) and it and the later full blocks
    are replays: the ~5 launches per step then cost one replay per block, which is what
    keeps a small network from being launch-bound (Triton's launches cost tens of
    microseconds of Python each, far more than a 1k-neuron step's work). A capture costs
    about one eager block plus a device synchronisation, hence the minimum."""

    def __init__(self, stepper: Stepper, drive: Tensor, trace: Tensor, trace_decay: float, record_trace: bool,
                 num_full_blocks: int):
        self.stepper, self.drive, self.trace, self.trace_decay = stepper, drive, trace, trace_decay
        self.flags = torch.empty(drive.shape, dtype=torch.bool, device=drive.device)
        self.traces = torch.empty_like(drive) if record_trace else None
        self.use_graph = num_full_blocks >= MIN_FULL_BLOCKS_FOR_GRAPH and _use_cuda_graphs(drive.device)
        self.warm, self.graph = False, None

    def _steps(self, steps: int) -> None:
        """``steps`` steps; only kernel launches on fixed buffers (what a graph can replay)."""
        for t in range(steps):
            self.stepper.step_flags(self.drive[t], self.flags[t])
            if self.traces is not None:
                self.trace.mul_(self.trace_decay).add_(self.flags[t])
                self.traces[t].copy_(self.trace)

    def run(self, steps: int) -> Tensor:
        """Advance ``steps`` steps (``drive[:steps]`` filled); the spikes as [S, 2] (step in
        the block, flat index b * N + j), sorted."""
        full = steps == self.drive.shape[0]
        if full and self.use_graph and self.warm and self.graph is None:
            try:
                self.graph = _capture_block(lambda: self._steps(steps), self.drive.device)
            except RuntimeError as error:  # capturing runs nothing: the state is untouched
                warnings.warn(f"simulate: CUDA graph capture failed ({error}); the blocks run "
                              "without a graph (same results, more launch overhead)", RuntimeWarning,
                              stacklevel=3)
                self.use_graph = False
        if full and self.graph is not None:
            self.graph.replay()
        else:
            self._steps(steps)
            self.warm = True
        return self.flags[:steps].view(steps, -1).nonzero()


def _fill_drive(block, params, inputs, noise, start, steps, dt_ms, generator) -> None:
    """block [steps, B, N] <- (noise + W_in x) + 140, the ``external_drive`` arithmetic."""
    if noise is not None:
        block.copy_(noise[:, start : start + steps].transpose(0, 1))
    elif generator is not None:
        draw_noise(params, tuple(block.shape), dt_ms, generator, out=block)
    else:
        block.zero_()
    if inputs is not None and params.num_inputs > 0:
        block.add_(input_projection(inputs[:, start : start + steps], params.input_weights).transpose(0, 1))
    block.add_(140.0)


def _replay_to_divergence(snapshot, block, params, dt_ms, first_step) -> None:
    """Re-run a block from its snapshot one step at a time; raise at the first bad step."""
    buffer, refractory = snapshot
    stepper = Stepper(params, buffer, dt_ms, refractory)
    for t in range(block.shape[0]):
        stepper.step(block[t])
        check_finite(buffer, params.num_neurons, first_step + t)
