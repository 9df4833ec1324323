"""gpu_check, part 2: timings of our kernels beside their peers (see ``gpu_check``).

GLA forward and forward+backward (ours, the naive chunked reference, torch SDPA, fla's
``chunk_gla``), the spiking population step (eager and CUDA graph; realtime factor and
synaptic events per second), the three-factor step, and whether the library paths
(bridges' GLA, the reservoir step) reach the kernels.
"""
from __future__ import annotations

import functools
import math
import os
import statistics
import time
from typing import TYPE_CHECKING

import torch

from experiments._gpu_check_verify import _gla_inputs, _relative_rms, _step_args, build_network
from experiments.store import RunDir

if TYPE_CHECKING:
    from experiments.gpu_check import Config


def _say(out: RunDir, message: str) -> None:
    """Log and print at once (a lease's output tail shows progress even if it is cut)."""
    out.log(message)
    print(message, flush=True)


def _timer(device: str):
    def median_ms(fn, repeats: int, warmup: int = 2) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            if device == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(times)
    return median_ms


def _fla_chunk_gla():
    try:
        from fla.ops.gla import chunk_gla as fla_chunk_gla
        return fla_chunk_gla, ""
    except Exception as error:  # noqa: BLE001 - optional peer: absent, or broken here
        return None, f"{type(error).__name__}: {error}"[:200]


def time_gla(config: Config, device: str, out: RunDir, implementations: tuple[str, ...]
             ) -> tuple[list[dict], dict]:
    """Median ms of forward and forward+backward per shape for the named implementations
    ("ours", "naive", "sdpa_causal", "fla_chunk_gla")."""
    from kernels.gla import chunk_gla
    from kernels.gla.naive import naive_chunk_gla
    median_ms = _timer(device)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    rows, metrics = [], {}
    fla_op = None
    if "fla_chunk_gla" in implementations:
        fla_op, fla_error = (None, "CPU run") if device != "cuda" else _fla_chunk_gla()
        metrics["fla_available"] = fla_op is not None
        if fla_op is None:
            _say(out, f"fla chunk_gla not timed: {fla_error}")
            return rows, metrics
    for shape in config.gla_shapes:
        batch, length, heads, dim = (int(x) for x in shape.lower().split("x"))
        inputs = _gla_inputs(batch, length, heads, dim, dtype, device, seed=0, grad=True)
        grad_out = torch.randn(batch, length, heads, dim, device=device, dtype=dtype)
        qt, kt, vt = (x.detach().transpose(1, 2).contiguous().requires_grad_() for x in inputs[:3])
        # Each timed function binds this shape's tensors now (default argument or partial).
        functions = {
            "ours": (lambda inputs=inputs: chunk_gla(*inputs)[0], config.repeats),
            "naive": (lambda inputs=inputs: naive_chunk_gla(*inputs)[0], config.naive_repeats),
            "sdpa_causal": (functools.partial(torch.nn.functional.scaled_dot_product_attention,
                                              qt, kt, vt, is_causal=True), config.repeats),
            "fla_chunk_gla": (lambda inputs=inputs: fla_op(*inputs)[0], config.repeats),
        }
        key = shape.replace("x", "_")
        for name in implementations:
            fn, repeats = functions[name]
            grad = grad_out.transpose(1, 2) if name == "sdpa_causal" else grad_out
            try:
                with torch.no_grad():
                    fwd = median_ms(fn, repeats)
                fwd_bwd = median_ms(lambda fn=fn, grad=grad: fn().backward(grad), repeats)
            except Exception as error:  # noqa: BLE001 - any failure (OOM, fla) is a NaN timing
                _say(out, f"GLA {shape} {name}: {type(error).__name__}: {error}"[:300])
                fwd = fwd_bwd = float("nan")
            for x in inputs + [qt, kt, vt]:
                x.grad = None
            row = {"shape": shape, "dtype": str(dtype).replace("torch.", ""),
                   "implementation": name, "forward_ms": fwd, "forward_backward_ms": fwd_bwd}
            rows.append(row)
            _say(out, f"GLA timing {row}")
            metrics[f"gla_{key}_{name}_fwd_ms"] = fwd
            metrics[f"gla_{key}_{name}_fwd_bwd_ms"] = fwd_bwd
        if fla_op is not None:
            try:
                with torch.no_grad():
                    metrics[f"gla_{key}_ours_vs_fla_rel_rms"] = _relative_rms(
                        chunk_gla(*inputs)[0], fla_op(*inputs)[0])
            except Exception as error:  # noqa: BLE001 - logged; the timings go on
                _say(out, f"GLA {shape} ours vs fla: {type(error).__name__}: {error}"[:300])
        functions.clear()  # drop this shape's closures (and their tensors) before the next
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows, metrics


def _gla_ratios(config: Config, metrics: dict) -> dict:
    def get(key, name, kind):
        return metrics.get(f"gla_{key}_{name}_{kind}_ms", float("nan"))

    ratios = {}
    for shape in config.gla_shapes:
        key = shape.replace("x", "_")
        for kind in ("fwd", "fwd_bwd"):
            ours = get(key, "ours", kind)
            ratios[f"gla_{key}_naive_over_ours_{kind}"] = get(key, "naive", kind) / ours
            ratios[f"gla_{key}_ours_over_fla_{kind}"] = ours / get(key, "fla_chunk_gla", kind)
            ratios[f"gla_{key}_ours_over_sdpa_{kind}"] = ours / get(key, "sdpa_causal", kind)
    return ratios


def _noisy_drive(base, std, noise_buffer, drive_buffer):
    """``drive_fn(t)``: ``base + std * N(0, 1)`` with fresh noise, written into the fixed
    buffers' slot ``t`` (fixed addresses, so a CUDA graph can capture it)."""
    def drive_fn(t):
        torch.randn(*noise_buffer.shape[1:], device=noise_buffer.device, out=noise_buffer[t])
        torch.addcmul(base, std, noise_buffer[t], out=drive_buffer[t])
        return drive_buffer[t]
    return drive_fn


def _eager_advance(step, state, drive_fn, spikes, step_args, counts, block):
    """``advance()``: ``block`` eager population steps, each step's spikes added to counts."""
    def advance():
        for t in range(block):
            step(state, drive_fn(t), spikes, *step_args)
            counts.add_(spikes.sum(dim=1))
    return advance


def time_spiking(config: Config, device: str, out: RunDir) -> tuple[list[dict], dict]:
    from kernels.izhikevich.triton import CudaGraphStepper, izhikevich_step_no_sync_
    rows, metrics = [], {}
    dt = config.dt_ms
    steps = max(1, round(config.simulated_ms / dt))
    warm = round(config.warmup_ms / dt)
    cases = [(1, n, config.excitatory_weight, config.inhibitory_weight, config.noise_mv, "10Hz")
             for n in config.spiking_sizes]
    cases.append((config.batch_networks, config.batch_network_size, config.excitatory_weight,
                  config.inhibitory_weight, config.noise_mv, "10Hz"))
    high = config.high_rate_weights
    cases.append((1, max(config.spiking_sizes), high[0], high[1], high[2], "high-rate"))
    for batch, n, we, wi, noise, regime in cases:
        net = build_network(batch, n, config.in_degree, we, wi, seed=0, device=device)
        args = _step_args(net, dt, tensors=False)
        state, targets, weights = net["state"], net["targets"], net["weights"]
        spikes = torch.empty(batch, n, dtype=torch.bool, device=device)
        std = (torch.where(net["excitatory"], noise, 0.4 * noise) / math.sqrt(dt)).expand(batch, n)
        std = std.contiguous()
        block = min(config.steps_per_graph, steps)
        noise_buffer = torch.empty(block, batch, n, device=device)
        drive_buffer = torch.empty(block, batch, n, device=device)
        base = torch.full_like(std, 140.0)
        drive_fn = _noisy_drive(base, std, noise_buffer, drive_buffer)
        step_args = (targets, weights, args["half_step_ms"], args["k1"], args["k2"],
                     args["u_decay"], args["u_v_gain"], args["v_reset"], args["v_peak_mv"])
        modes = ["eager"] if device != "cuda" else (["eager", "graph"] if n * batch <= 16384
                                                     else ["graph"])
        for mode in modes:
            state.copy_(net["state"])
            counts = torch.zeros(batch, dtype=torch.int64, device=device)
            if mode == "graph":
                stepper = CudaGraphStepper(state, spikes, *step_args, drive_fn=drive_fn,
                                           steps_per_graph=block)
                advance = stepper.replay
            else:
                advance = _eager_advance(izhikevich_step_no_sync_, state, drive_fn, spikes,
                                         step_args, counts, block)
            for _ in range(max(1, warm // block)):
                advance()
            if device == "cuda":
                torch.cuda.synchronize()
            before = stepper.spike_counts.clone() if mode == "graph" else counts.clone()
            replays = max(1, steps // block)
            t0 = time.perf_counter()
            for _ in range(replays):
                advance()
            if device == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            after = stepper.spike_counts if mode == "graph" else counts
            num_spikes = int((after - before).sum())
            simulated_s = replays * block * dt / 1e3
            rate = num_spikes / (batch * n) / simulated_s
            events = num_spikes * config.in_degree
            row = {"networks": batch, "neurons_each": n, "regime": regime, "mode": mode,
                   "rate_hz": rate, "wall_s_per_sim_s": wall / simulated_s,
                   "realtime_factor": simulated_s / wall, "synaptic_events_per_s": events / wall,
                   "us_per_step": 1e6 * wall / (replays * block)}
            rows.append(row)
            key = f"spiking_{batch}x{n}_{regime.replace('-', '_')}_{mode}"
            metrics[f"{key}_realtime_factor"] = row["realtime_factor"]
            metrics[f"{key}_events_per_s"] = row["synaptic_events_per_s"]
            metrics[f"{key}_rate_hz"] = rate
            _say(out, f"spiking {key}: {row}")
        del net
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows, metrics


def time_three_factor(config: Config, device: str) -> dict:
    """Milliseconds per step of ours and of the torch reference, each timed as a loop of
    ``calls`` back-to-back steps (what a simulation loop sees: launch overhead included)."""
    from kernels.three_factor import naive_three_factor_step, three_factor_step
    batch, readouts, dim = config.readout_shape
    median_ms = _timer(device)
    args = [torch.randn(*s, device=device) for s in ((batch, readouts, dim), (batch, readouts, dim),
                                                    (batch, dim), (batch, dim), (batch, readouts),
                                                    (batch, readouts))]
    calls = 20

    def loop(step):
        for _ in range(calls):
            step(*args, 0.05, 0.9, True)

    ours = median_ms(lambda: loop(three_factor_step), config.repeats) / calls
    naive = median_ms(lambda: loop(naive_three_factor_step), config.repeats) / calls
    return {"three_factor_ours_ms": ours, "three_factor_naive_ms": naive,
            "three_factor_naive_over_ours": naive / ours}


def check_wiring(device: str, out: RunDir) -> dict:
    """The library paths (bridges GLA, reservoir step) reach the Triton kernels on CUDA."""
    metrics = {}
    try:
        from bridges.gated_linear_attention import gated_linear_attention
        from kernels.gla.naive import naive_recurrent_gla
        q, k, v, g = _gla_inputs(1, 130, 2, 32, torch.float32, device, seed=3)
        o = gated_linear_attention(q, k, v, g)
        o = o[0] if isinstance(o, tuple) else o
        ref = naive_recurrent_gla(q.double(), k.double(), v.double(), g.double())[0]
        metrics["wiring_bridges_gla_rel_rms"] = _relative_rms(o, ref)
    except Exception as error:  # noqa: BLE001 - a wiring check records any failure and goes on
        out.log(f"wiring bridges GLA: {type(error).__name__}: {error}"[:300])
    try:
        from neuro.reservoir.build import make_reservoir
        from neuro.reservoir.simulation import simulate
        from neuro.reservoir.step import Stepper, _state_buffer
        for mode in ("auto", "naive"):
            os.environ["NEUROBRIDGE_KERNELS"] = mode
            params, state = make_reservoir(4096, 1, device=device, seed=0)
            simulate(params, state, None, 0.5, num_steps=20, seed=0)  # compile / warm up
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            result = simulate(params, state, None, 0.5, num_steps=400, seed=0)
            if device == "cuda":
                torch.cuda.synchronize()
            metrics[f"wiring_reservoir_{mode}_seconds_400_steps"] = time.perf_counter() - t0
            metrics[f"wiring_reservoir_{mode}_num_spikes"] = int(result.num_spikes)
            stepper = Stepper(params, _state_buffer(state, params), 0.5, None)
            metrics[f"wiring_reservoir_{mode}_step_kernel"] = stepper.kernel
    except Exception as error:  # noqa: BLE001 - a wiring check records any failure and goes on
        out.log(f"wiring reservoir: {type(error).__name__}: {error}"[:300])
    finally:
        os.environ["NEUROBRIDGE_KERNELS"] = "auto" if device == "cuda" else "triton"
    metrics["wiring_brian2_imported"] = "brian2" in __import__("sys").modules
    return metrics
