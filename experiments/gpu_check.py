"""GPU check: verify every Triton kernel against its reference and time them beside peers.

Run whenever a GPU is lent (never required by CI): ``neuro run gpu_check --device cuda``, or
``PYTHONPATH=. python experiments/gpu_check.py --out DIR`` (writes metrics.json, report.html
and the tables flat into DIR). Needs only torch, triton, numpy, pyyaml (no brian2, nothing
from a package registry); flash-linear-attention's ``chunk_gla`` is timed when importable.

1. Verification, float32 and bfloat16: chunked GLA outputs and gradients (dq dk dv dg dh0)
   and the fused recurrent form vs the float64 recurrent reference (incl. a varlen batch
   with an empty sequence); the three-factor step vs its torch reference; the Izhikevich
   step vs its torch reference (raster of 500 neurons x 200 steps, float32; one step bf16).
2. GLA timings in bf16 at (B, T, H, D) in ``gla_shapes``: forward and forward+backward of
   ours, our naive chunked reference, torch SDPA (causal softmax attention) and fla.
3. Spiking step timings: Izhikevich 2003 population, fixed in-degree, dt 0.5 ms, ~10 Hz
   (weights calibrated on CPU), for each N in ``spiking_sizes`` and for a batch of
   networks; realtime factor (simulated / wall time) and synaptic events per second,
   eager launches vs a CUDA graph. Also a high-rate run for the events/s ceiling.
On a CPU with ``TRITON_INTERPRET=1`` it runs the same code at tiny sizes (a smoke test).
"""
from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from experiments.store import RunDir

_SHAPE_HELP = "GLA timing shapes as 'BxTxHxD' strings"


@dataclass(frozen=True)
class Config:
    gla_shapes: tuple[str, ...] = field(default=("8x1024x8x64", "4x2048x16x128"),
                                        metadata={"help": _SHAPE_HELP})
    verify_length: int = field(default=300, metadata={"min": 1, "help": "T of the GLA checks"})
    verify_dim: int = field(default=64, metadata={"min": 1, "max": 256, "help": "head dim"})
    repeats: int = field(default=20, metadata={"min": 1, "help": "timed repeats (median)"})
    naive_repeats: int = field(default=3, metadata={"min": 1, "help": "repeats of the naive"})
    spiking_sizes: tuple[int, ...] = field(default=(1024, 16384, 262144, 1048576),
                                           metadata={"min": 16, "help": "N per network"})
    batch_networks: int = field(default=256, metadata={"min": 1, "help": "networks in batch"})
    batch_network_size: int = field(default=4096, metadata={"min": 16, "help": "N each"})
    in_degree: int = field(default=100, metadata={"min": 1, "help": "synapses per neuron"})
    dt_ms: float = field(default=0.5, metadata={"min": 0.01, "max": 1.0, "help": "step"})
    simulated_ms: float = field(default=1000.0, metadata={"min": 1.0, "help": "timed biology"})
    warmup_ms: float = field(default=100.0, metadata={"min": 0.0, "help": "untimed transient"})
    excitatory_weight: float = field(default=4.0, metadata={"help": "mV, times U(0,1)"})
    inhibitory_weight: float = field(default=8.0, metadata={"help": "mV, times U(0,1)"})
    noise_mv: float = field(default=5.0, metadata={"min": 0.0, "help": "E noise (I: 0.4x)"})
    high_rate_weights: tuple[float, ...] = field(default=(6.0, 6.0, 8.0),
                                                 metadata={"help": "E, I weight, noise"})
    steps_per_graph: int = field(default=50, metadata={"min": 1, "help": "steps per graph"})
    raster_neurons: int = field(default=500, metadata={"min": 10, "help": "raster check N"})
    raster_steps: int = field(default=200, metadata={"min": 1, "help": "raster check steps"})
    readout_shape: tuple[int, ...] = field(default=(256, 4, 4096),
                                           metadata={"help": "three-factor B, M, D"})
    gla_implementations: tuple[str, ...] = field(
        default=("ours", "naive", "sdpa_causal", "fla_chunk_gla"),
        metadata={"help": "GLA contenders timed (fla last: its first call autotunes)"})


# ----------------------------------------------------------------------------- helpers
def _relative_rms(actual: torch.Tensor, expected: torch.Tensor, absolute: float = 0.0) -> float:
    diff = (actual.double() - expected.double()).pow(2).mean().sqrt().item()
    if diff <= absolute:
        return 0.0
    scale = expected.double().pow(2).mean().sqrt().item()
    return diff / scale if scale > 0 else float("inf")


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


def _gla_inputs(batch, length, heads, dim, dtype, device, seed, grad=False):
    gen = torch.Generator(device=device).manual_seed(seed)
    q = torch.randn(batch, length, heads, dim, generator=gen, device=device)
    k = torch.randn(batch, length, heads, dim, generator=gen, device=device) / math.sqrt(dim)
    v = torch.randn(batch, length, heads, dim, generator=gen, device=device)
    g = torch.nn.functional.logsigmoid(torch.randn(batch, length, heads, dim, generator=gen,
                                                   device=device) + 2.0)
    return [x.to(dtype).requires_grad_(grad) for x in (q, k, v, g)]


# ----------------------------------------------------------------------------- verification
def verify_gla(config: Config, device: str, out: RunDir) -> list[dict]:
    from kernels.gla import chunk_gla, fused_recurrent_gla
    from kernels.gla.naive import naive_recurrent_gla
    rows = []
    length, dim = config.verify_length, config.verify_dim
    # bf16 arithmetic is wrong under the CPU interpreter: a CPU smoke run checks fp16 instead.
    half = torch.bfloat16 if device == "cuda" else torch.float16
    cases = [("chunk", torch.float32, None), ("chunk", half, None),
             ("chunk-varlen", torch.float32, "varlen"), ("recurrent", torch.float32, None),
             ("recurrent", half, None)]
    for form, dtype, variant in cases:
        batch, heads = (1, 2) if variant else (2, 4)
        total = 3 * length if variant else length
        q, k, v, g = _gla_inputs(batch, total, heads, dim, dtype, device, seed=len(rows))
        cu = None
        if variant:
            cu = torch.tensor([0, length // 3, length // 3, total - 1, total], device=device)
        num_states = batch if cu is None else cu.numel() - 1
        h0 = torch.randn(num_states, heads, dim, dim, device=device)
        leaves = [x.detach().clone().requires_grad_(form != "recurrent") for x in (q, k, v, g, h0)]
        op = chunk_gla if form.startswith("chunk") else fused_recurrent_gla
        o, ht = op(*leaves[:4], initial_state=leaves[4], output_final_state=True, cu_seqlens=cu)
        ref = [x.detach().double().requires_grad_(form != "recurrent") for x in (q, k, v, g, h0)]
        ro, rht = naive_recurrent_gla(*ref[:4], initial_state=ref[4], output_final_state=True,
                                      cu_seqlens=cu)
        errors = {"o": _relative_rms(o, ro), "final_state": _relative_rms(ht, rht)}
        if form != "recurrent":
            w = torch.randn_like(ro)
            ((o.double() * w).sum() + ht.double().sum()).backward()
            ((ro * w).sum() + rht.sum()).backward()
            for name, a, b in zip(("dq", "dk", "dv", "dg", "dh0"), leaves, ref):
                errors[name] = _relative_rms(a.grad, b.grad, 1e-7)
        # fp32: IEEE dots, fp32 accumulation -> 1e-5; bf16: operands rounded to 8 bits ->
        # 5e-3 on outputs (fla's bound), 1e-2 on gradients (q dq - k dk cancels in dg).
        bound = 1e-5 if dtype == torch.float32 else 5e-3
        for name, err in errors.items():
            limit = bound if (name in ("o", "final_state") or dtype == torch.float32) else 1e-2
            rows.append({"kernel": f"gla-{form}", "dtype": str(dtype).replace("torch.", ""),
                         "quantity": name, "rel_rms_error": err, "bound": limit,
                         "pass": bool(err <= limit and math.isfinite(err))})
    return rows


def verify_three_factor(config: Config, device: str) -> list[dict]:
    from kernels.three_factor import naive_three_factor_step, three_factor_step
    rows = []
    batch, readouts, dim = 8, 4, 4096
    gen = torch.Generator(device=device).manual_seed(0)
    base = [torch.randn(*s, generator=gen, device=device) for s in
            ((batch, readouts, dim), (batch, readouts, dim), (batch, dim), (batch, dim),
             (batch, readouts), (batch, readouts))]
    base[2], base[3], base[5] = base[2].abs(), base[3].abs(), base[5].sigmoid()
    online = torch.arange(readouts, device=device) % 2 == 0
    for dtype in (torch.float32, torch.bfloat16 if device == "cuda" else torch.float16):
        args = [x.to(dtype) for x in base]
        got = three_factor_step(*args, 0.05, 0.9, online)
        expected = naive_three_factor_step(*(a.float() for a in args), 0.05, 0.9, online)
        bound = 1e-5 if dtype == torch.float32 else 1e-2  # bf16: one rounding per output
        for name, a, b in zip(("z", "error", "eligibility", "weights", "pending"), got, expected):
            err = _relative_rms(a, b, 1e-6)
            rows.append({"kernel": "three_factor", "dtype": str(dtype).replace("torch.", ""),
                         "quantity": name, "rel_rms_error": err, "bound": bound,
                         "pass": bool(err <= bound)})
    return rows


def build_network(batch, num_neurons, in_degree, excitatory_weight, inhibitory_weight, seed,
                  device, dtype=torch.float32):
    """Izhikevich 2003 population (80/20 E/I) with fixed in-degree (multapses allowed; no
    autapses) as the event table of ``kernels/izhikevich/naive.py``, built on ``device``."""
    n = num_neurons
    gen = torch.Generator(device=device).manual_seed(seed)
    excitatory = torch.arange(n, device=device) < int(0.8 * n)
    r = torch.rand(batch, n, generator=gen, device=device)
    a = torch.where(excitatory, 0.02, 0.02 + 0.08 * r)
    b = torch.where(excitatory, 0.2, 0.25 - 0.05 * r)
    c = torch.where(excitatory, -65 + 15 * r ** 2, -65.0)
    d = torch.where(excitatory, 8 - 6 * r ** 2, 2.0)
    slots = 3 * n + 1
    num_synapses = batch * n * in_degree
    post = torch.arange(n, device=device).repeat_interleave(in_degree).repeat(batch)
    network = torch.arange(batch, device=device).repeat_interleave(n * in_degree)
    pre = torch.randint(0, n - 1, (num_synapses,), generator=gen, device=device)
    pre += (pre >= post).long()
    weight = torch.rand(num_synapses, generator=gen, device=device)
    weight = torch.where(excitatory[pre], excitatory_weight * weight, -inhibitory_weight * weight)
    row, order = torch.sort(network * n + pre, stable=True)
    slot = (network * slots + post)[order]
    weight = weight[order]
    del pre, post, network, order
    counts = torch.bincount(row, minlength=batch * n)
    width = int(counts.max()) + 1
    column = torch.arange(num_synapses, device=device) - (torch.cumsum(counts, 0) - counts)[row]
    row_network = torch.arange(batch * n, device=device) // n
    targets = (row_network * slots + 3 * n).unsqueeze(1).expand(batch * n, width).contiguous()
    weights = torch.zeros(batch * n, width, dtype=dtype, device=device)
    targets[row, column] = slot
    weights[row, column] = weight.to(dtype)
    own = torch.arange(batch * n, device=device)
    targets[:, -1] = row_network * slots + n + own % n
    weights[:, -1] = d.reshape(-1).to(dtype)
    state = torch.zeros(batch, slots, dtype=dtype, device=device)
    state[:, :n] = -65.0
    state[:, n:2 * n] = (b * -65.0).to(dtype)
    return dict(state=state, targets=targets, weights=weights, excitatory=excitatory,
                a=a, b=b, c=c.to(dtype))


def _step_args(net, dt_ms, dtype=torch.float32, tensors=True):
    """Step constants of the split-Euler scheme; scalars as 0-dim tensors of the state dtype
    (the reference's fast path) or Python floats."""
    a, b = net["a"], net["b"]
    scalar = ((lambda x: torch.tensor(x, dtype=dtype, device=a.device)) if tensors
              else float)
    return dict(half_step_ms=scalar(dt_ms / 2), k1=scalar(0.04 * dt_ms / 2),
                k2=scalar(1 + 5 * dt_ms / 2), u_decay=(1 - a * dt_ms).to(dtype),
                u_v_gain=(a * b * dt_ms).to(dtype), v_reset=net["c"].to(dtype),
                v_peak_mv=scalar(30.0))


def verify_izhikevich(config: Config, device: str) -> list[dict]:
    from kernels.izhikevich import izhikevich_network_step_, naive_izhikevich_network_step_
    rows = []
    n, steps = config.raster_neurons, config.raster_steps
    net = build_network(1, n, min(100, n - 1), config.excitatory_weight,
                        config.inhibitory_weight, 0, device)
    gen = torch.Generator(device=device).manual_seed(1)
    std = torch.where(net["excitatory"], config.noise_mv, 0.4 * config.noise_mv)
    drives = 140.0 + std / math.sqrt(config.dt_ms) * torch.randn(steps, 1, n, generator=gen,
                                                                   device=device)
    rasters = []
    for step in (izhikevich_network_step_, naive_izhikevich_network_step_):
        state = net["state"].clone()
        spikes = torch.empty(1, n, dtype=torch.bool, device=device)
        scratch = [torch.empty(1, n, device=device) for _ in range(2)]
        raster = []
        for drive in drives:
            step(state, state[:, :n], state[:, n:2 * n], None, drive, spikes, *scratch,
                 net["targets"], net["weights"], **_step_args(net, config.dt_ms))
            raster.append(spikes.clone())
        rasters.append(torch.stack(raster))
    differs = (rasters[0] != rasters[1]).flatten(1).any(1)
    first = int(differs.nonzero()[0]) if bool(differs.any()) else steps
    rows.append({"kernel": "izhikevich", "dtype": "float32",
                 "quantity": "first_raster_divergence_step",
                 "rel_rms_error": float(first), "bound": float(steps),
                 "pass": bool(first == steps)})
    rows.append({"kernel": "izhikevich", "dtype": "float32", "quantity": "reference_spikes",
                 "rel_rms_error": float(rasters[1].sum()), "bound": float("nan"),
                 "pass": bool(rasters[1].sum() > 0)})
    return rows


def verify_izhikevich_bf16(config: Config, device: str) -> list[dict]:
    from kernels.izhikevich import izhikevich_network_step_, naive_izhikevich_network_step_
    rows = []
    n = config.raster_neurons
    net = build_network(1, n, min(100, n - 1), config.excitatory_weight,
                        config.inhibitory_weight, 0, device)
    gen = torch.Generator(device=device).manual_seed(2)
    drive = 140.0 + 5.0 * torch.randn(1, n, generator=gen, device=device)
    # bf16 state: one step from the same random state, Triton (fp32 arithmetic, one final
    # rounding) vs the reference's bf16 op-by-op arithmetic: within a few bf16 ulps.
    state0 = net["state"].clone()
    state0[:, :n] = -70 + 20 * torch.rand(1, n, generator=gen, device=device)
    results = []
    for step in (izhikevich_network_step_, naive_izhikevich_network_step_):
        state = state0.to(torch.bfloat16)
        spikes = torch.empty(1, n, dtype=torch.bool, device=device)
        scratch = [torch.empty(1, n, device=device, dtype=torch.bfloat16) for _ in range(2)]
        step(state, state[:, :n], state[:, n:2 * n], None, drive.to(torch.bfloat16), spikes,
             *scratch, net["targets"], net["weights"].to(torch.bfloat16),
             **_step_args(net, config.dt_ms, torch.bfloat16))
        results.append(state[:, :2 * n].float())
    err = _relative_rms(results[0], results[1])
    rows.append({"kernel": "izhikevich", "dtype": "bfloat16", "quantity": "v_u_one_step",
                 "rel_rms_error": err, "bound": 2e-2, "pass": bool(err <= 2e-2)})
    return rows


# ----------------------------------------------------------------------------- timings
def _fla_chunk_gla():
    try:
        from fla.ops.gla import chunk_gla as fla_chunk_gla
        return fla_chunk_gla, ""
    except Exception as error:  # not installed, or incompatible with this torch/triton
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
        functions = {
            "ours": (lambda: chunk_gla(*inputs)[0], config.repeats),
            "naive": (lambda: naive_chunk_gla(*inputs)[0], config.naive_repeats),
            "sdpa_causal": (lambda: torch.nn.functional.scaled_dot_product_attention(
                qt, kt, vt, is_causal=True), config.repeats),
            "fla_chunk_gla": (lambda: fla_op(*inputs)[0], config.repeats),
        }
        key = shape.replace("x", "_")
        for name in implementations:
            fn, repeats = functions[name]
            grad = grad_out.transpose(1, 2) if name == "sdpa_causal" else grad_out
            try:
                with torch.no_grad():
                    fwd = median_ms(fn, repeats)
                fwd_bwd = median_ms(lambda: fn().backward(grad), repeats)
            except Exception as error:  # e.g. fla incompatible with this triton, or OOM
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
            except Exception as error:
                _say(out, f"GLA {shape} ours vs fla: {type(error).__name__}: {error}"[:300])
        functions.clear()  # drop this shape's closures (and their tensors) before the next
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows, metrics


def _gla_ratios(config: Config, metrics: dict) -> dict:
    ratios = {}
    for shape in config.gla_shapes:
        key = shape.replace("x", "_")
        get = lambda name, kind: metrics.get(f"gla_{key}_{name}_{kind}_ms", float("nan"))  # noqa
        for kind in ("fwd", "fwd_bwd"):
            ratios[f"gla_{key}_naive_over_ours_{kind}"] = get("naive", kind) / get("ours", kind)
            ours = get("ours", kind)
            ratios[f"gla_{key}_ours_over_fla_{kind}"] = ours / get("fla_chunk_gla", kind)
            ratios[f"gla_{key}_ours_over_sdpa_{kind}"] = ours / get("sdpa_causal", kind)
    return ratios


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

        def drive_fn(t):
            torch.randn(batch, n, device=device, out=noise_buffer[t])
            torch.addcmul(base, std, noise_buffer[t], out=drive_buffer[t])
            return drive_buffer[t]

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
                def advance():
                    for t in range(block):
                        izhikevich_step_no_sync_(state, drive_fn(t), spikes, *step_args)
                        counts.add_(spikes.sum(dim=1))
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
    except Exception as error:
        out.log(f"wiring bridges GLA: {type(error).__name__}: {error}"[:300])
    try:
        from neuro.reservoir.build import make_reservoir
        from neuro.reservoir.simulation import simulate
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
    except Exception as error:
        out.log(f"wiring reservoir: {type(error).__name__}: {error}"[:300])
    finally:
        os.environ["NEUROBRIDGE_KERNELS"] = "auto" if device == "cuda" else "triton"
    metrics["wiring_brian2_imported"] = "brian2" in __import__("sys").modules
    return metrics


# ----------------------------------------------------------------------------- run
def _say(out: RunDir, message: str) -> None:
    """Log and print at once (a lease's output tail shows progress even if it is cut)."""
    out.log(message)
    print(message, flush=True)


def _guarded(section, out: RunDir, fallback):
    """Run one section; on an exception log the traceback and go on (one GPU lease is
    precious: a failing section must not lose the others' figures)."""
    import traceback
    try:
        return section()
    except Exception:
        out.log("section failed:\n" + traceback.format_exc()[-3000:])
        print(traceback.format_exc()[-3000:], flush=True)
        return fallback


def run(config: Config, out: RunDir) -> dict[str, float]:
    previous = os.environ.get("NEUROBRIDGE_KERNELS")
    try:
        return _run(config, out)
    finally:  # the CPU smoke run forces the Triton path; leave the environment as found
        if previous is None:
            os.environ.pop("NEUROBRIDGE_KERNELS", None)
        else:
            os.environ["NEUROBRIDGE_KERNELS"] = previous


def _run(config: Config, out: RunDir) -> dict[str, float]:
    device = out.device
    if device != "cuda":
        from kernels.dispatch import interpreter_enabled
        if not interpreter_enabled():
            raise RuntimeError("gpu_check needs --device cuda (or TRITON_INTERPRET=1 and tiny "
                               "sizes for a CPU smoke run)")
        os.environ["NEUROBRIDGE_KERNELS"] = "triton"
    torch.manual_seed(out.seed)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (Triton interpreter)"
    import triton
    facts = {"gpu": name, "torch": torch.__version__, "triton": triton.__version__,
             "config": asdict(config)}
    out.save_json("device", facts)
    _say(out, f"device: {name}; torch {torch.__version__}; triton {triton.__version__}")
    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    verification = []
    for check in (lambda: verify_gla(config, device, out),
                  lambda: verify_three_factor(config, device),
                  lambda: verify_izhikevich(config, device),
                  lambda: verify_izhikevich_bf16(config, device) if device == "cuda" else []):
        verification += _guarded(check, out, [{"kernel": "error", "dtype": "", "quantity": "",
                                               "rel_rms_error": float("nan"), "bound": 0.0,
                                               "pass": False}])
    out.save_table("verification", verification,
                   caption=f"Kernels vs references on {name} (relative RMS error)")
    metrics["verify_all_pass"] = all(r["pass"] for r in verification)
    metrics["verify_failures"] = sum(not r["pass"] for r in verification)
    for row in verification:
        if not row["pass"]:
            _say(out, f"verification FAILED: {row}")
    _say(out, f"verification done in {time.perf_counter() - t0:.1f} s: "
              f"{len(verification) - metrics['verify_failures']}/{len(verification)} pass")
    spiking_rows, spiking_metrics = _guarded(lambda: time_spiking(config, device, out), out,
                                             ([], {}))
    out.save_table("spiking_timings", spiking_rows,
                   caption=f"Izhikevich population step on {name}: dt {config.dt_ms} ms, "
                           f"in-degree {config.in_degree}")
    metrics.update(spiking_metrics)
    _say(out, f"spiking timings done at {time.perf_counter() - t0:.1f} s")
    metrics.update(_guarded(lambda: time_three_factor(config, device), out, {}))
    metrics.update(_guarded(lambda: check_wiring(device, out), out, {}))
    so_far = {k: v for k, v in metrics.items() if k.startswith(("three", "wiring"))}
    _say(out, f"three-factor and wiring: {so_far}")
    out.save_json("partial_metrics", metrics)
    gla_rows = []
    caption = f"GLA forward / forward+backward, median ms, on {name}"
    ours_and_references = tuple(i for i in config.gla_implementations if i != "fla_chunk_gla")
    peers = tuple(i for i in config.gla_implementations if i == "fla_chunk_gla")
    for implementations in (ours_and_references, peers):
        if not implementations:
            continue
        rows, gla_metrics = _guarded(lambda: time_gla(config, device, out, implementations),
                                     out, ([], {}))
        gla_rows += rows
        metrics.update(gla_metrics)
        out.save_table("gla_timings", gla_rows, caption=caption)
        out.save_json("partial_metrics", metrics)
        _say(out, f"GLA timings {implementations} done at {time.perf_counter() - t0:.1f} s")
    metrics.update(_gla_ratios(config, metrics))
    metrics["seconds_total"] = time.perf_counter() - t0
    return metrics


def main(argv=None) -> int:
    import argparse
    import sys
    import tempfile
    from pathlib import Path

    from experiments.runner import run_experiment
    from experiments.store import atomic_write_bytes
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for metrics.json, report, tables")
    parser.add_argument("--set", action="append", default=[], help="config override a=b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` -> copy what exists
    with tempfile.TemporaryDirectory() as root:
        try:
            result = run_experiment("gpu_check", overrides=args.set, out_root=root,
                                    device=args.device, quiet=True)
            print({k: v for k, v in result.metrics.items()})
        finally:
            os.makedirs(args.out, exist_ok=True)
            for run_dir in Path(root).glob("gpu_check/*"):
                for name in ("metrics.json", "report.html", "verification.csv",
                             "gla_timings.csv", "spiking_timings.csv", "partial_metrics.json",
                             "run.log"):
                    if (run_dir / name).exists():
                        atomic_write_bytes(Path(args.out) / name, (run_dir / name).read_bytes())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
