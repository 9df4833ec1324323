"""The same reservoir in Brian2 (runtime numpy / cython targets, and cpp_standalone).

The network of ``ReservoirParams`` is rebuilt as one NeuronGroup of B*N neurons (the B
networks side by side, block-diagonal synapses created in the table's order), float64.
The neuron update is written as Brian code executed by ``run_regularly`` in the
``groups`` slot, one binary operation per statement, in exactly the order of
``kernels.izhikevich`` (sympy cannot reorder a single binary operation); Brian's
threshold, synapse (``v_post += w`` or ``I_syn_post += w``) and reset slots then follow
in the same order as our step. With ``noise_source="injected"`` the per-step drive
``external_drive(params, inputs, noise)`` reaches Brian through a 2-D ``TimedArray``
(one value per step and neuron), so the numpy target reproduces our float64 rasters bit
for bit. With ``noise_source="brian2"`` Brian draws the noise itself (``randn()``), which
avoids writing a [T, B*N] array to disk in standalone mode; runs then agree in
statistics (firing rates), not spike by spike. The drive array (injected noise, or any
input) is sized against ``memory_limit_bytes`` before it is drawn (a long run is several
sessions, each continuing from the last ``result.state``).

Readout learning: in runtime mode ``on_step(step, spikes)`` is called after every step
(a Brian ``network_operation``), which is where an online readout can learn. In
``cpp_standalone`` mode Brian never calls a ``network_operation`` (the simulation runs
as compiled C++), so ``on_step`` is refused with a ValueError there: use a runtime
target (or our torch backend) for readout learning.

A run whose final v or u is not finite raises ``SimulationDiverged`` (as the torch backend
does), naming the run's last step: Brian2 has no per-step check, so the first bad step is
not known.

brian2 is imported lazily (it takes 1-2 s). Brian2's device and preferences are global;
they are set for the duration of a build/run and restored afterwards.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from neuro.reservoir._checks import (
    Seed,
    check_count,
    check_dt,
    check_real_finite,
    check_shape,
    check_tensor,
    torch_generator,
)
from neuro.reservoir.izhikevich import IzhikevichState, refractory_countdown_ms, step_coefficients
from neuro.reservoir.simulation import SpikeRecord
from neuro.reservoir.step import (
    ReservoirParams,
    ReservoirState,
    SimulationDiverged,
    check_params,
    draw_noise,
    external_drive,
)

__all__ = ["BRIAN2_TARGETS", "NOISE_SOURCES", "Brian2Result", "Brian2Session", "simulate_brian2"]

BRIAN2_TARGETS = ("numpy", "cython", "cpp_standalone")
NOISE_SOURCES = ("injected", "brian2")


class Brian2Result(NamedTuple):
    """state: final ReservoirState (float64, CPU); spikes: SpikeRecord; num_spikes;
    timings: seconds for setup (objects), compile (code generation / compilation),
    loop (the simulation itself) and total."""

    state: ReservoirState
    spikes: SpikeRecord
    num_spikes: int
    timings: dict


def _neuron_code(exponential: bool, refractory: bool, injected: bool, has_input: bool) -> str:
    """Brian code of one neuron update, one binary operation per line (see module doc)."""
    if injected:
        lines = ["g_tmp = drive_array(t, i)"]
    elif has_input:
        lines = ["g_tmp = drive_array(t, i)", "n_tmp = randn()", "n_tmp = n_tmp * noise_scale",
                 "g_tmp = n_tmp + g_tmp"]
    else:
        lines = ["n_tmp = randn()", "n_tmp = n_tmp * noise_scale", "g_tmp = n_tmp + 140.0"]
    if exponential:
        lines.append("g_tmp = g_tmp + I_syn")
    lines += ["g_tmp = g_tmp - u", "g_tmp = g_tmp * half_step"]
    for _ in range(2):
        lines += ["t_tmp = v * k1", "t_tmp = t_tmp + k2", "t_tmp = t_tmp * v", "v = t_tmp + g_tmp"]
    lines += ["t_tmp = v * u_v_gain", "u = u * u_decay", "u = u + t_tmp"]
    if exponential:
        lines.append("I_syn = I_syn * synapse_decay")
    if refractory:
        lines += ["v = v * int(ref_left <= half_step) + c * int(ref_left > half_step)",
                  "ref_left = clip(ref_left - dt_ms, 0, inf)"]
    return "\n".join(lines)


class Brian2Session:
    """A reservoir built once in Brian2 and run one or more times.

    ``run()`` simulates ``num_steps`` steps from ``state``; in cpp_standalone mode the
    first call compiles, later calls (``run(params=...)`` with new weights, neuron
    constants or noise std, same wiring) re-run the compiled binary with ``run_args``.
    The per-step drive array is made here, once: a re-run keeps its ``input_weights`` and,
    for injected noise drawn from ``noise_std``, its ``noise_std`` (see ``run``).

    Noise across re-runs: injected noise is the same array every run; with
    ``noise_source='brian2'`` the runtime targets reseed Brian2 with seed + run index (fresh
    noise each run), while cpp_standalone seeds once, in the compiled code, so each re-run of
    its binary repeats the first run's noise (Brian2 cannot reseed a built project).
    """

    def __init__(self, params: ReservoirParams, state: ReservoirState | None = None,
                 inputs: torch.Tensor | None = None, dt_ms: float = 0.5, *, num_steps: int | None = None,
                 noise: torch.Tensor | None = None, seed: Seed | None = None, target: str = "numpy",
                 noise_source: str = "injected", directory: str | None = None,
                 on_step: Callable[[int, torch.Tensor], None] | None = None):
        if target not in BRIAN2_TARGETS:
            raise ValueError(f"target={target!r}; allowed: {', '.join(BRIAN2_TARGETS)}")
        if noise_source not in NOISE_SOURCES:
            raise ValueError(f"noise_source={noise_source!r}; allowed: {', '.join(NOISE_SOURCES)}")
        if on_step is not None and target == "cpp_standalone":
            raise ValueError(
                "on_step (readout learning) is not available with target='cpp_standalone': Brian2's "
                "standalone mode never calls a network_operation; use target='numpy' or 'cython', "
                "or the torch backend"
            )
        check_params(params)
        self.dt_ms = check_dt(dt_ms)
        b, n, m = params.batch_size, params.num_neurons, params.num_inputs
        if inputs is None:
            if num_steps is None and isinstance(noise, torch.Tensor) and noise.dim() == 3:
                num_steps = noise.shape[1]  # the noise fixes T
            if num_steps is None:
                raise ValueError("give inputs [B, T, M], noise [B, T, N] or num_steps (all are None)")
            num_steps = check_count("num_steps", num_steps, minimum=1)
            inputs = torch.zeros(b, num_steps, m, dtype=torch.float64)
            has_input = False
        else:
            check_tensor("inputs", inputs)
            check_shape("inputs", inputs, (b, None, m))
            check_real_finite("inputs", inputs)  # a NaN would surface only as a diverged final state
            num_steps = check_count("num_steps (inputs' T)", inputs.shape[1], minimum=1)
            has_input = m > 0 and bool((inputs != 0).any())
        self.num_steps, self.target, self.noise_source, self.on_step = num_steps, target, noise_source, on_step
        self.params = params
        state = state if state is not None else _initial(params)
        _check_state_type(state)
        check_shape("state.neurons.v_mv", state.neurons.v_mv, (b, n))
        self.state = state
        params64 = self._params64 = _to_float64(params)
        injected = noise_source == "injected"
        self._drawn_noise = injected and noise is None  # the drive holds noise_std's draws (or none)
        if has_input or (injected and (noise is not None or bool((params.noise_std != 0).any()))):
            _check_drive_memory(params, num_steps, injected)
        if injected:
            if noise is None and bool((params.noise_std != 0).any()):
                if seed is None:
                    raise ValueError("noise_std > 0 needs seed= or an explicit noise= array")
                noise = draw_noise(params64, (b, num_steps, n), self.dt_ms, torch_generator(seed, "cpu"))
            elif noise is not None:
                check_tensor("noise", noise)
                check_shape("noise", noise, (b, num_steps, n))
                check_real_finite("noise", noise)
            drive = external_drive(params64, inputs.to(torch.float64), None if noise is None else noise.double())
        else:
            if noise is not None:
                raise ValueError("noise= is an injected array; it needs noise_source='injected'")
            if seed is None and bool((params.noise_std != 0).any()):
                raise ValueError("noise_source='brian2' with noise_std > 0 needs seed= (Brian2's own "
                                 "generator would run unseeded)")
            drive = external_drive(params64, inputs.to(torch.float64), None) if has_input else None
        self._drive = drive
        self._injected, self._has_input = injected, has_input
        # Brian2's own RNG (noise_source="brian2"): seeded from ``seed`` (required when noisy).
        self._brian_seed = None
        if not injected and seed is not None:
            self._brian_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=torch_generator(seed, "cpu")))
        self.directory = directory
        self._temporary: str | None = None
        self._built = False
        self._runs = 0

    # -- building -------------------------------------------------------------------
    def _build(self) -> float:
        import brian2 as b2

        t0 = time.perf_counter()
        params = self._params64
        b, n = params.batch_size, params.num_neurons
        exponential = params.synapse == "exponential"
        refractory = params.neurons.refractory_ms > 0
        dt = self.dt_ms * b2.ms
        namespace = _constants(params, self.dt_ms)
        model = """v : 1
u : 1
I_syn : 1
u_decay : 1 (constant)
u_v_gain : 1 (constant)
c : 1 (constant)
d : 1 (constant)
noise_scale : 1 (constant)
"""
        if refractory:
            model += "ref_left : 1\n"
        reset = "v = c\nu = u + d" + ("\nref_left = refractory_ms" if refractory else "")
        if self._drive is not None:
            values = self._drive.permute(1, 0, 2).reshape(self.num_steps, b * n).numpy()
            namespace["drive_array"] = b2.TimedArray(np.ascontiguousarray(values), dt=dt, name="drive_array")
        group = b2.NeuronGroup(b * n, model, threshold="v >= v_peak", reset=reset, dt=dt,
                               namespace=namespace, name="reservoir_neurons")
        code = _neuron_code(exponential, refractory, self._injected, self._has_input)
        updater = group.run_regularly(code, when="groups", dt=dt, name="reservoir_update")
        syn = params.synapses
        pre = (syn.batch_index * n + syn.pre_index).numpy()
        post = (syn.batch_index * n + syn.post_index).numpy()
        synapses = None  # Brian2 refuses a Synapses object without synapses (e.g. in_degree=0)
        if pre.size:
            synapses = b2.Synapses(group, group, "w : 1",
                                   on_pre=("I_syn_post += w" if exponential else "v_post += w"),
                                   dt=dt, name="reservoir_synapses")
            synapses.connect(i=pre, j=post)
        monitor = b2.SpikeMonitor(group, name="reservoir_spikes")
        objects = [group, updater, monitor] + ([synapses] if synapses is not None else [])
        self._calls_on_step = self.on_step is not None
        if self._calls_on_step:
            objects.append(self._network_operation(b2, group, b, n, dt))
        self._b2, self._group, self._synapses, self._monitor = b2, group, synapses, monitor
        self._set_values(params, self.state)
        self._net = b2.Network(*objects)
        return time.perf_counter() - t0

    def _network_operation(self, b2, group, b, n, dt):
        counter = self._on_step_counter = {"step": 0}  # reset by every run: steps count from 0

        def call_on_step():
            spikes = torch.zeros(b * n, dtype=torch.bool)
            spikes[torch.as_tensor(np.asarray(group.spikes[:], dtype=np.int64))] = True
            self.on_step(counter["step"], spikes.view(b, n))
            counter["step"] += 1

        return b2.NetworkOperation(call_on_step, dt=dt, when="end", name="reservoir_on_step")

    def _set_values(self, params: ReservoirParams, state: ReservoirState) -> None:
        values = _group_values(params, state, self.dt_ms)
        for name, value in values.items():
            setattr(self._group, name, value)
        if params.synapses.weight.numel():
            self._synapses.w = params.synapses.weight.double().numpy()

    # -- running --------------------------------------------------------------------
    def run(self, params: ReservoirParams | None = None, state: ReservoirState | None = None) -> Brian2Result:
        """Simulate ``num_steps`` steps; ``params``/``state`` replace weights, neuron constants,
        noise std and initial state for this run (the wiring must be unchanged). The drive
        array is the session's: with inputs, ``input_weights`` must be unchanged, and with
        injected noise drawn from ``noise_std`` (no ``noise=``), ``noise_std`` too (ValueError)."""
        if params is not None:
            check_params(params)
            _check_same_wiring(self.params, params)
            self._check_same_drive(params)
            if not self._injected and self._brian_seed is None and bool((params.noise_std != 0).any()):
                raise ValueError("noise_source='brian2' with noise_std > 0 needs seed= (Brian2's own "
                                 "generator would run unseeded): this session was created without one")
        if state is not None:
            _check_state_type(state)
        params = _to_float64(params) if params is not None else self._params64
        state = state if state is not None else self.state
        if self.target == "cpp_standalone":
            return self._run_standalone(params, state)
        return self._run_runtime(params, state)

    def _check_same_drive(self, params: ReservoirParams) -> None:
        """The drive array (inputs through input_weights, injected noise drawn with noise_std)
        is made once, with the session: re-run params must keep what it was made from."""
        old = self._params64
        changed = []
        if self._has_input and not torch.equal(params.input_weights.to("cpu", torch.float64), old.input_weights):
            changed.append("input_weights")
        shape = (old.batch_size, old.num_neurons)
        if self._drawn_noise and not torch.equal(params.noise_std.to("cpu", torch.float64).expand(shape),
                                                 old.noise_std.expand(shape)):
            changed.append("noise_std")
        if changed:
            raise ValueError(
                f"params for a re-run change {' and '.join(changed)}, but this session's per-step drive "
                "(inputs x input_weights, plus the injected noise drawn with noise_std) was made when it "
                "was created and would be reused unchanged; build a new Brian2Session for them"
                + (" (or use noise_source='brian2', whose noise follows noise_std)"
                   if "noise_std" in changed else ""))

    def _run_runtime(self, params, state) -> Brian2Result:
        import brian2 as b2

        if b2.get_device().__class__.__name__ != "RuntimeDevice":
            raise RuntimeError(
                "Brian2's active device is cpp_standalone (another Brian2Session is open in standalone "
                "mode); close that session before running a runtime target"
            )
        old_target = b2.prefs.codegen.target
        b2.prefs.codegen.target = self.target
        try:
            setup_s = 0.0
            if not self._built:
                setup_s = self._build()
                self._net.store("initial")
                self._built = True
            else:
                self._net.restore("initial")
            self._set_values(params, state)
            if (self.on_step is not None) != self._calls_on_step:
                raise ValueError(
                    f"on_step was {'set' if self.on_step is not None else 'cleared'} after this "
                    "session's network was built (it is built with or without the per-step call); "
                    "give on_step when creating the Brian2Session, or create a new one")
            if self.on_step is not None:
                self._on_step_counter["step"] = 0
            if self._brian_seed is not None:
                b2.seed(self._brian_seed + self._runs)
            t0 = time.perf_counter()
            self._net.run(self.num_steps * self.dt_ms * b2.ms)
            wall_s = time.perf_counter() - t0
            # Brian2 times its own loop; the rest of the call is code generation/compilation.
            loop_s = float(getattr(b2.get_device(), "_last_run_time", wall_s))
            compile_s = max(wall_s - loop_s, 0.0)
        finally:
            b2.prefs.codegen.target = old_target
        result = self._collect(params, state, setup_s, compile_s, loop_s)
        self._runs += 1
        return result

    def _run_standalone(self, params, state) -> Brian2Result:
        import brian2 as b2

        if not self._built:
            if self.directory is None:  # our own temporary project, deleted by close()
                self.directory = self._temporary = tempfile.mkdtemp(prefix="neuro_brian2_standalone_")
            directory = self.directory
            b2.set_device("cpp_standalone", directory=directory, build_on_run=False)
            try:
                setup_s = self._build()
                if self._brian_seed is not None:
                    b2.seed(self._brian_seed)
                self._net.run(self.num_steps * self.dt_ms * b2.ms)
                t0 = time.perf_counter()
                b2.device.build(directory=directory, compile=True, run=False)
                compile_s = time.perf_counter() - t0
            except BaseException:
                _leave_standalone(b2)
                raise
            self._built = True
        else:
            setup_s = compile_s = 0.0
        run_args = {}
        if self._runs > 0 or params is not self._params64 or state is not self.state:
            for name, value in _group_values(params, state, self.dt_ms).items():
                run_args[getattr(self._group, name)] = value
            if params.synapses.weight.numel():
                run_args[self._synapses.w] = params.synapses.weight.double().numpy()
        t0 = time.perf_counter()
        b2.device.run(run_args=run_args or None)
        run_total = time.perf_counter() - t0
        loop_s = float(getattr(b2.device, "_last_run_time", run_total))
        result = self._collect(params, state, setup_s, compile_s, loop_s, total_extra=run_total - loop_s)
        self._runs += 1
        return result

    def close(self) -> None:
        """Leave Brian2's standalone device and delete the temporary project directory that
        the session created (a ``directory`` given by the caller is kept)."""
        if self.target == "cpp_standalone" and self._built:
            _leave_standalone(self._b2)
            self._built = False
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _collect(self, params, state, setup_s, compile_s, loop_s, total_extra=0.0) -> Brian2Result:
        """The run's result; ``state`` is the state it started from (its trace and step)."""
        b, n = params.batch_size, params.num_neurons
        spike_i = np.asarray(self._monitor.i[:], dtype=np.int64)
        spike_t = np.asarray(self._monitor.t_[:], dtype=np.float64)
        step = np.rint(spike_t / (self.dt_ms * 1e-3)).astype(np.int64)
        order = np.lexsort((spike_i, step))
        step, spike_i = torch.as_tensor(step[order]), torch.as_tensor(spike_i[order])
        spikes = SpikeRecord(step, spike_i // n, spike_i % n)
        view = lambda name: torch.as_tensor(np.asarray(getattr(self._group, name)[:], dtype=np.float64)).view(b, n)
        refractory = view("ref_left") if params.neurons.refractory_ms > 0 else None
        v, u, current = view("v"), view("u"), view("I_syn")
        _check_finite_state(v, u, state.step + self.num_steps - 1)
        trace = _trace_from_spikes(spikes, b, n, self.num_steps, self.dt_ms, params.trace_tau_ms,
                                   state.trace.double().cpu())
        final = ReservoirState(IzhikevichState(v, u, refractory), current, trace, state.step + self.num_steps)
        total = setup_s + compile_s + loop_s + total_extra
        timings = {"setup_s": setup_s, "compile_s": compile_s, "loop_s": loop_s, "total_s": total}
        return Brian2Result(final, spikes, int(step.numel()), timings)


DRIVE_COPIES = 3  # measured: ~2.9 [T, B*N] float64 arrays at the peak of building the drive


def _check_drive_memory(params: ReservoirParams, num_steps: int, injected: bool) -> None:
    """ValueError, before anything is drawn, when the per-step drive array that reaches Brian
    as a TimedArray ([T, B*N] float64, about ``DRIVE_COPIES`` copies of it at the peak: the
    drawn noise, the sum, the transposed copy) exceeds ``params.memory_limit_bytes``."""
    b, n = params.batch_size, params.num_neurons
    need = DRIVE_COPIES * 8 * b * num_steps * n
    limit = params.memory_limit_bytes
    if need > limit:
        hint = "; or noise_source='brian2' (Brian draws the noise, no array) when there is no input" if injected else ""
        raise ValueError(
            f"the Brian2 backend's per-step drive for num_steps={num_steps} x batch {b} x {n} neurons "
            f"([T, B*N] float64, ~{DRIVE_COPIES} copies while it is built) needs about {need / 2**30:.2f} GiB, "
            f"above memory_limit_bytes={limit} ({limit / 2**30:.2f} GiB, set in make_reservoir); run fewer "
            f"steps per session (continue from result.state){hint}, or raise memory_limit_bytes")


def simulate_brian2(params: ReservoirParams, state: ReservoirState | None = None,
                    inputs: torch.Tensor | None = None, dt_ms: float = 0.5, **kwargs) -> Brian2Result:
    """One Brian2 run of the reservoir (see ``Brian2Session`` for the arguments)."""
    session = Brian2Session(params, state, inputs, dt_ms, **kwargs)
    try:
        return session.run()
    finally:
        session.close()


# -- helpers -----------------------------------------------------------------------------
def _check_state_type(state) -> None:
    if not isinstance(state, ReservoirState):
        raise TypeError(f"state must be a ReservoirState (from make_reservoir / initial_state) or None, "
                        f"got {type(state).__name__}")


def _check_finite_state(v: torch.Tensor, u: torch.Tensor, last_step: int) -> None:
    """SimulationDiverged for the first non-finite v or u of the final state [B, N]: Brian2
    gives no per-step check, so the step named is the run's last (it diverged by then)."""
    bad = ~(torch.isfinite(v) & torch.isfinite(u))
    if bool(bad.any()):
        batch_index, neuron = (int(x) for x in bad.nonzero()[0])
        value = float(v[batch_index, neuron])
        value = value if not math.isfinite(value) else float(u[batch_index, neuron])
        raise SimulationDiverged(last_step, batch_index, neuron, value, exact_step=False)


def _leave_standalone(b2) -> None:
    b2.device.reinit()
    b2.device.activate()
    b2.set_device("runtime")


def _initial(params: ReservoirParams) -> ReservoirState:
    from neuro.reservoir.step import initial_state

    return initial_state(params)


def _to_float64(params: ReservoirParams) -> ReservoirParams:
    """Brian2 runs in float64 on the CPU."""
    if params.dtype == torch.float64 and params.device.type == "cpu":
        return params
    return params.to("cpu", torch.float64)


def _constants(params: ReservoirParams, dt_ms: float) -> dict:
    coef = step_coefficients(params.neurons, dt_ms)
    constants = {"half_step": coef.half_step_ms, "k1": coef.k1, "k2": coef.k2,
                 "v_peak": params.neurons.v_peak_mv, "dt_ms": dt_ms,
                 "refractory_ms": refractory_countdown_ms(params.neurons.refractory_ms, dt_ms)}
    if params.synapse == "exponential":
        constants["synapse_decay"] = math.exp(-dt_ms / params.synapse_tau_ms)
    return constants


def _group_values(params: ReservoirParams, state: ReservoirState, dt_ms: float) -> dict:
    """Per-neuron arrays [B*N] for the Brian group (float64, in our arithmetic)."""
    b, n = params.batch_size, params.num_neurons
    coef = step_coefficients(params.neurons, dt_ms)
    flat = lambda x: x.double().cpu().expand(b, n).reshape(-1).numpy().copy()
    values = {
        "u_decay": flat(coef.u_decay), "u_v_gain": flat(coef.u_v_gain),
        "c": flat(params.neurons.c), "d": flat(params.neurons.d),
        "noise_scale": flat(params.noise_std / math.sqrt(dt_ms)),
        "v": flat(state.neurons.v_mv), "u": flat(state.neurons.u), "I_syn": flat(state.synaptic_current),
    }
    if params.neurons.refractory_ms > 0:
        left = state.neurons.refractory_left_ms
        values["ref_left"] = flat(left) if left is not None else np.zeros(b * n)
    return values


def _check_same_wiring(old: ReservoirParams, new: ReservoirParams) -> None:
    same = (old.batch_size == new.batch_size and old.num_neurons == new.num_neurons
            and old.synapse == new.synapse
            and torch.equal(old.synapses.pre_index.cpu(), new.synapses.pre_index.cpu())
            and torch.equal(old.synapses.post_index.cpu(), new.synapses.post_index.cpu())
            and torch.equal(old.synapses.batch_index.cpu(), new.synapses.batch_index.cpu()))
    if not same:
        raise ValueError("params for a re-run must keep the wiring (sizes, synapse kind, pre/post indices); "
                         "build a new Brian2Session for a new network")


def _trace_from_spikes(spikes: SpikeRecord, b: int, n: int, num_steps: int, dt_ms: float, tau_ms: float,
                       initial: torch.Tensor):
    """r_T = r_0 d^T + sum_t d^(T-1-t) s_t, d = exp(-dt / tau) (as ``simulate`` forms it)."""
    decay = math.exp(-dt_ms / tau_ms)
    trace = (initial * decay**num_steps).reshape(-1).clone()
    weights = torch.pow(torch.tensor(decay, dtype=torch.float64), (num_steps - 1 - spikes.step).double())
    trace.index_add_(0, spikes.batch_index * n + spikes.neuron, weights)
    return trace.view(b, n)

