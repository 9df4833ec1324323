"""A recurrent reservoir of heterogeneous Izhikevich neurons: parameters, state, one step.

Per neuron i of network b (Izhikevich 2003 neurons, see ``izhikevich.py``)::

    I_i(t)   = sum_k W_in[b, i, k] x_k(t) + xi_i(t) + I_syn,i(t)     (input, noise, synapses)
    delta:        v_i += sum_{j spiking} W[b, i, j]                   (a jump of W mV)
    exponential:  tau dI_syn,i/dt = -I_syn,i,  I_syn,i += sum_{j spiking} W[b, i, j]
    trace:        r_i <- r_i exp(-dt / trace_tau) + s_i                (readouts read r)

Noise (our choice, dt-invariant): xi_i is a current held over one step, Gaussian with
std ``noise_std_i / sqrt(dt_ms)``, so the noise moves v by ``noise_std_i`` (mV) rms per
ms whatever dt is; with dt = 1 ms and noise_std 5 (excitatory) / 2 (inhibitory) this is
Izhikevich 2003's thalamic input (``make_reservoir``'s default, 5 for every neuron, is our
choice).
Input weights (our choice): W_in[b, i, k] = input_scale * N(0, 1).
Update order within a step (matches the Brian2 backend): neurons (from old values),
synaptic decay, threshold, delivery of the spikes' synapses, reset (v <- c; u += d).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from kernels.izhikevich import (
    izhikevich_network_step_,
    izhikevich_neuron_update_,
    naive_izhikevich_network_step_,
    propagate_spikes_,
)
from neuro.reservoir._checks import (
    check_dt,
    check_float_dtype,
    check_real_finite,
    check_shape,
    check_tensor,
)
from neuro.reservoir.connectivity import (
    EventTable,
    SynapseList,
    build_event_table,
    checked_synapses,
)
from neuro.reservoir.izhikevich import (
    IzhikevichParams,
    IzhikevichState,
    refractory_countdown_ms,
    step_coefficients,
)

__all__ = [
    "SYNAPSE_KINDS",
    "ReservoirParams",
    "ReservoirState",
    "SimulationDiverged",
    "Stepper",
    "check_finite",
    "check_params",
    "check_state",
    "draw_noise",
    "external_drive",
    "initial_state",
    "input_projection",
    "reservoir_step",
    "state_to",
]

SYNAPSE_KINDS = ("delta", "exponential")


class SimulationDiverged(RuntimeError):
    """A membrane value became non-finite; names the step, batch index and neuron.
    ``exact_step=False``: it was found only at ``step`` (the Brian2 backend checks the final
    state), so it diverged at or before that step."""

    def __init__(self, step: int, batch_index: int, neuron: int, value: float, exact_step: bool = True):
        self.step, self.batch_index, self.neuron, self.value = step, batch_index, neuron, value
        self.exact_step = exact_step
        when = f"at step {step}" if exact_step else f"at or before step {step}"
        super().__init__(
            f"simulation diverged {when}: network (batch index) {batch_index}, neuron "
            f"{neuron} has a non-finite state ({value}); lower dt_ms, the weights or the input"
        )

    def __reduce__(self):  # picklable (a process-pool or Dask worker sends it back)
        return type(self), (self.step, self.batch_index, self.neuron, self.value, self.exact_step)


@dataclass(frozen=True)
class ReservoirParams:
    """Everything constant about B reservoirs of N neurons with M input channels.

    neurons: Izhikevich a, b, c, d [B or 1, N]; is_excitatory: bool [N];
    synapses: the recurrent wiring (``SynapseList``, W[b, post, pre] = weight);
    input_weights: [B, N, M]; noise_std: [1 or B, N] (mV rms per ms, see module doc);
    synapse: "delta" | "exponential"; synapse_tau_ms: decay of exponential synapses;
    trace_tau_ms: time constant of the spike traces r. ``event_table`` is derived.
    """

    neurons: IzhikevichParams
    is_excitatory: Tensor
    synapses: SynapseList
    input_weights: Tensor
    noise_std: Tensor
    synapse: str = "delta"
    synapse_tau_ms: float = 5.0
    trace_tau_ms: float = 20.0
    memory_limit_bytes: int = 4 * 2**30
    event_table: EventTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.synapse not in SYNAPSE_KINDS:
            raise ValueError(f"synapse={self.synapse!r}; allowed: {', '.join(SYNAPSE_KINDS)}")
        for name in ("synapse_tau_ms", "trace_tau_ms"):
            value = getattr(self, name)
            # numbers.Real: numpy scalars too (e.g. from np.linspace or a float32 config array)
            if isinstance(value, bool) or not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a finite number > 0 (ms)")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.neurons, IzhikevichParams):
            raise TypeError(f"neurons must be an IzhikevichParams, got {type(self.neurons).__name__}")
        for name in ("a", "b", "c", "d"):
            check_tensor(f"neurons.{name}", getattr(self.neurons, name))
        check_tensor("input_weights", self.input_weights)
        check_tensor("noise_std", self.noise_std)
        n = self.num_neurons
        if self.input_weights.dim() != 3 or self.input_weights.shape[1] != n:
            raise ValueError(f"input_weights has shape {list(self.input_weights.shape)}; expected [B, {n}, M]")
        b = self.batch_size
        # [1 or B, N] each: another shape failed later, deep in a step, or (noise_std of one
        # value repeated, e.g. [N + 1] or [B + 1, N]) was accepted and used as if right
        for name, value in (*((f"neurons.{k}", getattr(self.neurons, k)) for k in "abcd"),
                            ("noise_std", self.noise_std)):
            if value.dim() != 2 or value.shape[0] not in (1, b) or value.shape[1] != n:
                raise ValueError(f"{name} has shape {list(value.shape)}; expected [1 or {b}, {n}] "
                                 f"(batch_size {b} from input_weights, num_neurons {n} from neurons.a)")
        object.__setattr__(self, "synapses", checked_synapses(self.synapses, n, self.batch_size))
        offset = 0 if self.synapse == "delta" else 2 * n
        table = build_event_table(self.synapses, n, self.batch_size, offset, self.neurons.d,
                                  self.memory_limit_bytes)
        object.__setattr__(self, "event_table", table)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> ReservoirParams:
        """A copy on ``device`` and/or in ``dtype`` (same wiring; the event table is rebuilt)."""
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else check_float_dtype("dtype", dtype)
        move = lambda x: x.to(device=device, dtype=dtype)
        neurons = self.neurons._replace(a=move(self.neurons.a), b=move(self.neurons.b), c=move(self.neurons.c),
                                        d=move(self.neurons.d))
        syn = self.synapses
        synapses = SynapseList(syn.batch_index.to(device), syn.pre_index.to(device), syn.post_index.to(device),
                               move(syn.weight))
        return dataclasses.replace(self, neurons=neurons, is_excitatory=self.is_excitatory.to(device),
                                   synapses=synapses, input_weights=move(self.input_weights),
                                   noise_std=move(self.noise_std))

    @property
    def has_noise(self) -> bool:
        """Whether any noise_std is non-zero (computed once)."""
        cached = self.__dict__.get("_has_noise")
        if cached is None:
            cached = bool((self.noise_std != 0).any())
            object.__setattr__(self, "_has_noise", cached)
        return cached

    @property
    def uniform_noise_std(self) -> bool:
        """Whether every neuron of every network has the same noise_std (computed once)."""
        cached = self.__dict__.get("_uniform_noise_std")
        if cached is None:
            std = self.noise_std.reshape(-1)
            cached = bool(std.numel() > 0 and (std == std[0]).all())
            object.__setattr__(self, "_uniform_noise_std", cached)
        return cached

    @property
    def num_neurons(self) -> int:
        return self.neurons.a.shape[-1]

    @property
    def batch_size(self) -> int:
        return self.input_weights.shape[0]

    @property
    def num_inputs(self) -> int:
        return self.input_weights.shape[2]

    @property
    def dtype(self) -> torch.dtype:
        return self.neurons.a.dtype

    @property
    def device(self) -> torch.device:
        return self.neurons.a.device


class ReservoirState(NamedTuple):
    """neurons: v_mv, u [B, N]; synaptic_current [B, N] (zero for delta synapses);
    trace [B, N] (exponentially filtered spikes r); step: number of steps taken."""

    neurons: IzhikevichState
    synaptic_current: Tensor
    trace: Tensor
    step: int = 0


def state_to(state: ReservoirState, device: str | torch.device | None = None,
             dtype: torch.dtype | None = None) -> ReservoirState:
    """A copy of ``state`` on ``device`` and/or in ``dtype``."""
    if dtype is not None:
        check_float_dtype("dtype", dtype)
    move = lambda x: None if x is None else x.to(device=device, dtype=dtype)
    neurons = IzhikevichState(move(state.neurons.v_mv), move(state.neurons.u), move(state.neurons.refractory_left_ms))
    return ReservoirState(neurons, move(state.synaptic_current), move(state.trace), state.step)


def initial_state(params: ReservoirParams) -> ReservoirState:
    """v = -65 mV, u = b v, no synaptic current, zero traces, step 0."""
    check_params(params)
    shape = (params.batch_size, params.num_neurons)
    v = torch.full(shape, -65.0, dtype=params.dtype, device=params.device)
    u = (params.neurons.b * v).expand(shape).clone()
    refractory = torch.zeros_like(v) if params.neurons.refractory_ms > 0 else None
    return ReservoirState(IzhikevichState(v, u, refractory), torch.zeros_like(v), torch.zeros_like(v), 0)


def check_params(params) -> None:
    """TypeError unless ``params`` is a ReservoirParams."""
    if not isinstance(params, ReservoirParams):
        raise TypeError(f"params must be a ReservoirParams (from make_reservoir), got {type(params).__name__}")


def check_state(state, params: ReservoirParams) -> None:
    """Shapes and dtypes of ``state`` against ``params`` (no tensor values are read)."""
    if not isinstance(state, ReservoirState):
        raise TypeError(f"state must be a ReservoirState (from make_reservoir / initial_state), "
                        f"got {type(state).__name__}")
    shape = (params.batch_size, params.num_neurons)
    fields = (("state.neurons.v_mv", state.neurons.v_mv), ("state.neurons.u", state.neurons.u),
              ("state.synaptic_current", state.synaptic_current), ("state.trace", state.trace),
              ("state.neurons.refractory_left_ms", state.neurons.refractory_left_ms))
    for name, tensor in fields:
        if tensor is None and name.endswith("refractory_left_ms"):
            continue
        check_tensor(name, tensor)
        check_shape(name, tensor, shape)
        if tensor.dtype != params.dtype:
            raise TypeError(f"{name} has dtype {tensor.dtype}; expected the params' dtype {params.dtype} "
                            "(use state_to(state, dtype=...))")
    if isinstance(state.step, bool) or not isinstance(state.step, int):
        raise TypeError(f"state.step={state.step!r} must be an int")


EXPLICIT_PROJECTION_MAX_INPUTS = 16


def input_projection(input_signal: Tensor, input_weights: Tensor) -> Tensor:
    """``input_signal [B, T, M] @ W_in^T`` -> [B, T, N], W_in [B, N, M].

    For M <= 16 the sum is written out channel by channel (x_0 w_0 + x_1 w_1 + ...), so
    its rounding does not depend on T: one step and a block of steps give identical bits
    (a BLAS matmul picks different kernels, with or without FMA, for different T).
    """
    num_inputs = input_weights.shape[2]
    if num_inputs > EXPLICIT_PROJECTION_MAX_INPUTS:
        return torch.matmul(input_signal, input_weights.transpose(1, 2))
    out = torch.zeros(input_signal.shape[:2] + (input_weights.shape[1],), dtype=input_weights.dtype,
                      device=input_weights.device)
    for k in range(num_inputs):
        out += input_signal[:, :, k : k + 1] * input_weights[:, None, :, k]
    return out


def external_drive(params: ReservoirParams, input_signal: Tensor, noise: Tensor | None) -> Tensor:
    """The per-step current that is not recurrent, plus Izhikevich's constant 140:
    ``(noise [B, T, N] + input_projection(input_signal [B, T, M])) + 140`` -> [B, T, N].
    (Both backends and both torch paths compute exactly this.)"""
    drive = input_projection(input_signal, params.input_weights)
    if noise is not None:
        drive = noise + drive
    return drive + 140.0


def _state_buffer(state: ReservoirState, params: ReservoirParams) -> Tensor:
    n = params.num_neurons
    sink = torch.zeros(params.batch_size, 1, dtype=params.dtype, device=params.device)
    buffer = torch.cat([state.neurons.v_mv, state.neurons.u, state.synaptic_current, sink], dim=1)
    check_shape("state buffer", buffer, (params.batch_size, 3 * n + 1))
    return buffer


def check_finite(buffer: Tensor, num_neurons: int, step: int) -> None:
    """Raise SimulationDiverged for the first non-finite v or u in ``buffer`` [B, 3N+1].

    Fast test first: the sum of v and u is finite unless one of them is not (or, in
    theory, unless finite values overflow the sum, which the exact test then rules out)."""
    core = buffer[:, : 2 * num_neurons]
    if bool(torch.isfinite(core.sum())):
        return
    bad = ~torch.isfinite(core)
    if bool(bad.any()):
        batch_index, slot = (int(x) for x in bad.nonzero()[0])
        raise SimulationDiverged(step, batch_index, slot % num_neurons, float(core[batch_index, slot]))


def reservoir_step(
    state: ReservoirState,
    params: ReservoirParams,
    input_signal: Tensor,
    dt_ms: float,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[ReservoirState, Tensor]:
    """One step of B reservoirs. Pure (returns new tensors).

    input_signal: [B, M]. noise: the noise current itself [B, N] (``noise_std`` ignored),
    or None to draw it from ``generator`` (required when any noise_std > 0).
    Returns (new state, spikes bool [B, N]). Raises SimulationDiverged on non-finite v/u;
    a NaN or inf in ``input_signal`` or ``noise`` is a ValueError naming it (not a divergence).
    """
    dt_ms = check_dt(dt_ms)
    check_params(params)
    b, n, m = params.batch_size, params.num_neurons, params.num_inputs
    check_tensor("input_signal", input_signal)
    check_shape("input_signal", input_signal, (b, m))
    check_real_finite("input_signal", input_signal)
    check_state(state, params)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator={generator!r} must be a torch.Generator or None")
    if noise is None:
        noise = draw_noise(params, (b, n), dt_ms, generator)
    else:
        check_tensor("noise", noise)
        check_shape("noise", noise, (b, n))
        check_real_finite("noise", noise)
    drive = external_drive(params, input_signal.unsqueeze(1), None if noise is None else noise.unsqueeze(1))[:, 0]
    buffer = _state_buffer(state, params)
    stepper = Stepper(params, buffer, dt_ms, state.neurons.refractory_left_ms, bind=False)  # one step
    stepper.step(drive)
    spikes, refractory, new_buffer = stepper.spikes, stepper.refractory, buffer
    check_finite(new_buffer, n, state.step)
    decay = math.exp(-dt_ms / params.trace_tau_ms)
    trace = state.trace * decay + spikes
    neurons = IzhikevichState(new_buffer[:, :n], new_buffer[:, n : 2 * n], refractory)
    return ReservoirState(neurons, new_buffer[:, 2 * n : 3 * n], trace, state.step + 1), spikes


def draw_noise(params: ReservoirParams, shape: tuple, dt_ms: float,
               generator: torch.Generator | None, out: Tensor | None = None) -> Tensor | None:
    """Gaussian noise current with std noise_std / sqrt(dt_ms); None when noise_std is 0.
    ``shape`` ends in N; ``out`` (same shape) is filled in place when given."""
    if not params.has_noise:
        return None
    if generator is None:
        raise ValueError("noise_std > 0 needs a generator= (or seed=) or explicit noise=; got neither")
    if out is None:
        out = torch.empty(shape, dtype=params.dtype, device=params.device)
    scale = params.noise_std / math.sqrt(dt_ms)  # [1 or B, N], rounded to the model dtype
    if params.uniform_noise_std and out.is_contiguous() and out.numel() >= 16:
        # one std for every neuron: normal_ scales its draws itself, z * std + 0.0, the same
        # rounded values as a separate z * std pass (torch's contiguous fill; checked by a test)
        return out.normal_(0.0, float(scale.view(-1)[0]), generator=generator)
    out.normal_(generator=generator)
    return out.mul_(scale)


def _resolve_network_steps(buffer: Tensor, table: EventTable):
    """(network step, flag step or None) for a whole simulation: ``kernels.izhikevich``
    dispatches and checks its inputs on every call (~13 us on a CPU); here the rule
    (``kernels.dispatch.use_triton``) is applied once, and the Stepper's own buffers need no
    checks. The flag step (``izhikevich_step_no_sync_``) exists on the Triton path only."""
    import kernels.izhikevich as kernel

    naive = getattr(kernel, "naive_izhikevich_network_step_", None)
    if naive is None:
        return izhikevich_network_step_, None
    from kernels.dispatch import use_triton

    # targets share the weights' device (reading them would build a shared wiring's table)
    if use_triton(buffer, table.weights, float32_kernel=True):
        from kernels.izhikevich.triton import (
            izhikevich_step_no_sync_,
            triton_izhikevich_network_step_,
        )
        return triton_izhikevich_network_step_, izhikevich_step_no_sync_
    return naive, None


class Stepper:
    """Advances one state buffer [B, 3N+1] in place, one step per ``step(drive)`` call.

    Built once per simulation: slices the buffer into its v / u / I_syn views, turns the
    scalar constants into 0-dim tensors of the model dtype and allocates the scratch
    tensors, so that a step is only the ~20 ops of ``kernels.izhikevich``. With ``bind``
    (default) and the torch reference as the kernel, ``step`` is a bound step with the
    reference's values (``kernels.izhikevich.naive.network_stepper``); ``bind=False`` keeps
    the reference step. ``fill_spikes=False`` lets the batched bound step (B * N >= 4096)
    skip filling ``self.spikes`` (the returned indices are the spikes).
    """

    def __init__(self, params: ReservoirParams, buffer: Tensor, dt_ms: float, refractory: Tensor | None,
                 bind: bool = True, fill_spikes: bool = True):
        n, b = params.num_neurons, params.batch_size
        as_scalar = lambda x: torch.tensor(x, dtype=params.dtype, device=params.device)
        coef = step_coefficients(params.neurons, dt_ms)
        self.params, self.buffer, self.dt_ms = params, buffer, dt_ms
        self.v, self.u = buffer[:, :n], buffer[:, n : 2 * n]
        exponential = params.synapse == "exponential"
        self.synaptic_current = buffer[:, 2 * n : 3 * n] if exponential else None
        self.synapse_decay = as_scalar(math.exp(-dt_ms / params.synapse_tau_ms)) if exponential else None
        self.half_step, self.k1, self.k2 = (as_scalar(x) for x in (coef.half_step_ms, coef.k1, coef.k2))
        self.u_decay, self.u_v_gain = coef.u_decay, coef.u_v_gain
        self.v_peak = as_scalar(params.neurons.v_peak_mv)
        self.spikes = torch.empty(b, n, dtype=torch.bool, device=params.device)
        self.scratch_hc = torch.empty(b, n, dtype=params.dtype, device=params.device)
        self.scratch_t = torch.empty_like(self.scratch_hc)
        self.refractory = refractory
        if params.neurons.refractory_ms > 0 and refractory is None:
            self.refractory = torch.zeros_like(self.scratch_hc)
        self._network_step, flag_step = _resolve_network_steps(buffer, params.event_table)
        self._flag_step = flag_step if self.refractory is None else None
        reference = self._reference = self._network_step is naive_izhikevich_network_step_
        if bind and self.refractory is None and reference:
            # torch reference on this device: bind everything once (same values, fewer and
            # cheaper ops; building it costs a few tables, worth it for a loop of steps); the
            # Triton step is never replaced by it
            from kernels.izhikevich.naive import SPARSE_RESET_MIN_NEURONS, network_stepper

            table = params.event_table
            # a batch reads a shared wiring's N rows (the B*N-row table is never built)
            shared = table.shared_targets if b * n >= SPARSE_RESET_MIN_NEURONS else None
            self.step = network_stepper(  # shadows the method below for this instance
                buffer, self.v, self.u, self.synaptic_current, self.spikes, self.scratch_hc, self.scratch_t,
                table.targets if shared is None else None, table.weights, self.half_step, self.k1, self.k2,
                self.u_decay, self.u_v_gain, params.neurons.c, self.v_peak, self.synapse_decay,
                shared_targets=shared, fill_spikes=fill_spikes,
            )

    @property
    def kernel(self) -> str:
        """Which step ``step`` runs: "triton", "torch" (the reference, bound or not) or
        "torch+refractory" (the reference with the refractory clamp)."""
        if self.refractory is not None:
            return "torch+refractory"
        return "torch" if self._reference else "triton"

    @property
    def steps_without_sync(self) -> bool:
        """Whether ``step_flags`` is available: the Triton step (CUDA, or forced under the
        interpreter) without a refractory clamp."""
        return self._flag_step is not None

    def step_flags(self, drive: Tensor, spikes: Tensor) -> None:
        """One step that writes its spike flags into ``spikes`` [B, N] bool (e.g. a slice of
        a block's [T, B, N] record) and returns nothing. No host synchronisation: where
        ``step`` returns spike indices (a ``nonzero``, which waits for the GPU), a loop of
        ``step_flags`` only queues kernels. Needs ``steps_without_sync``."""
        if self._flag_step is None:
            raise RuntimeError("step_flags needs the Triton step without a refractory clamp "
                               "(see steps_without_sync); use step")
        table, neurons = self.params.event_table, self.params.neurons
        self._flag_step(self.buffer, drive, spikes, table.targets, table.weights, self.half_step, self.k1,
                        self.k2, self.u_decay, self.u_v_gain, neurons.c, self.v_peak, self.synapse_decay)

    def step(self, drive: Tensor) -> Tensor:
        """One step driven by ``drive`` [B, N] (external current + 140); returns the flat
        spike indices b * N + j, ascending, as [S] or (the bound CPU step) [S, 1], the same
        shape in every step of one stepper; ``self.spikes`` holds the [B, N] spikes until
        the next step."""
        table, neurons = self.params.event_table, self.params.neurons
        if self.refractory is None:
            return self._network_step(
                self.buffer, self.v, self.u, self.synaptic_current, drive, self.spikes, self.scratch_hc,
                self.scratch_t, table.targets, table.weights, self.half_step, self.k1, self.k2,
                self.u_decay, self.u_v_gain, neurons.c, self.v_peak, self.synapse_decay,
            )
        # Refractory clamp (our addition): v held at c while refractory_left > dt / 2 (see
        # ``izhikevich.py``), applied after the update and before the threshold.
        izhikevich_neuron_update_(
            self.v, self.u, drive, self.scratch_hc, self.scratch_t, self.half_step, self.k1, self.k2,
            self.u_decay, self.u_v_gain, self.synaptic_current, self.synapse_decay,
        )
        torch.where(self.refractory > 0.5 * self.dt_ms, neurons.c, self.v, out=self.v)
        torch.ge(self.v, self.v_peak, out=self.spikes)
        spike_index = propagate_spikes_(self.buffer, self.spikes, table.targets, table.weights)
        torch.where(self.spikes, neurons.c, self.v, out=self.v)
        self.refractory = torch.where(
            self.spikes, torch.full_like(self.refractory, refractory_countdown_ms(neurons.refractory_ms, self.dt_ms)),
            (self.refractory - self.dt_ms).clamp(min=0.0),
        )
        return spike_index
