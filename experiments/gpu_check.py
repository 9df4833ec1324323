"""GPU check: verify every Triton kernel against its reference and time them beside peers.

Run whenever a GPU is lent (never required by CI): ``neuro run gpu_check --device cuda``, or
``PYTHONPATH=. python experiments/gpu_check.py --out DIR`` (writes metrics.json, report.html
and the tables flat into DIR). Needs only torch, triton, numpy, pyyaml (no brian2, nothing
from a package registry); flash-linear-attention's ``chunk_gla`` is timed when importable.

1. Verification, float32 and bfloat16: chunked GLA outputs and gradients (dq dk dv dg dh0)
   and the fused recurrent form vs the float64 recurrent reference (incl. a varlen batch
   with an empty sequence); the three-factor step vs its torch reference; the Izhikevich
   step vs its torch reference (raster of 500 neurons x 200 steps, float32; one step bf16);
   the HMM-GLM kernels (emission terms, scaled message scan) in float64 and float32.
2. GLA timings in bf16 at (B, T, H, D) in ``gla_shapes``: forward and forward+backward of
   ours, our naive chunked reference, torch SDPA (causal softmax attention) and fla.
3. Spiking step timings: Izhikevich 2003 population, fixed in-degree, dt 0.5 ms, ~10 Hz
   (weights calibrated on CPU), for each N in ``spiking_sizes`` and for a batch of
   networks; realtime factor (simulated / wall time) and synaptic events per second,
   eager launches vs a CUDA graph. Also a high-rate run for the events/s ceiling.
On a CPU with ``TRITON_INTERPRET=1`` it runs the same code at tiny sizes (a smoke test).
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass, field

import torch

from experiments._gpu_check_timing import (
    _gla_ratios,
    _say,
    check_wiring,
    time_gla,
    time_spiking,
    time_three_factor,
)
from experiments._gpu_check_verify import (
    verify_gla,
    verify_glm_terms,
    verify_hmm_scan,
    verify_izhikevich,
    verify_izhikevich_bf16,
    verify_three_factor,
)
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
# ----------------------------------------------------------------------------- run
def _guarded(section, out: RunDir, fallback):
    """Run one section; on an exception log the traceback and go on (one GPU lease is
    precious: a failing section must not lose the others' figures)."""
    import traceback
    try:
        return section()
    except Exception:  # noqa: BLE001 - by design: log any failure, keep the other sections
        out.log("section failed:\n" + traceback.format_exc()[-3000:])
        print(traceback.format_exc()[-3000:], flush=True)
        return fallback


def run(config: Config, out: RunDir) -> dict[str, float]:
    previous = os.environ.get("NEUROBRIDGE_KERNELS")
    try:
        return _run(config, out)
    finally:  # _run sets the kernel mode (Triton path); leave the environment as found
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
    # the dispatch rule's Triton path whatever NEUROBRIDGE_KERNELS says outside (a "naive"
    # left set for bisecting would verify and time the reference against itself as "ours")
    os.environ["NEUROBRIDGE_KERNELS"] = "triton" if device != "cuda" else "auto"
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
                  lambda: verify_izhikevich_bf16(config, device) if device == "cuda" else [],
                  lambda: verify_glm_terms(config, device),
                  lambda: verify_hmm_scan(config, device)):
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
        rows, gla_metrics = _guarded(functools.partial(time_gla, config, device, out,
                                                       implementations), out, ([], {}))
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
