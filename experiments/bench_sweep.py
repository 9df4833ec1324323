"""Sweep runner speed: overhead per point, 2-worker efficiency, and --batch speed-up.

Three measurements on the local process pool (workers started once, before timing; one
compute thread per worker, as on a 2-core machine, whatever this machine has):

1. Overhead per point: ``overhead_points`` near-empty points (``reservoir_rate`` with 2
   neurons for 1 ms) through the sweep on one worker; overhead = (wall time - each run's
   status.json ``seconds``) / points. Those seconds are the experiment's ``run`` plus the
   run store's config.yaml, env.json and metrics.json writes (``begin_run`` to
   ``finish_run``; ~1 ms each with their fsync on this machine), which the overhead therefore
   leaves out. It splits into the rest of the foundation's run store (``run_experiment``
   around that span: status and report files) and the sweep's own dispatch + journal + table. The peer is a bare
   ``ProcessPoolExecutor.map`` of ``run_experiment`` over the same points (no sweep
   machinery). Median over ``repeats``. Target: < 50 ms per point.
2. Efficiency: ``long_points`` points of a ~1-second experiment (``reservoir_rate`` with
   N=1000, K=100, its duration calibrated in the pool so that one point takes
   ``point_seconds`` here) on 2 workers vs the ideal points x point_seconds / 2. Target:
   <= 1.2x. ``ratio_to_in_sweep_ideal`` uses the points' own measured times instead (the
   runner's own cost, robust to a shared machine whose load changes during the sweep).
3. Batching: ``batch_points`` reservoir points (N=200, K=20, 1 s simulated, drive swept)
   with and without ``--batch batch_size`` on 2 workers. Target: >= 3x faster batched.

The machine's load average is reported: on a shared machine the numbers are upper bounds.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from experiments._bench import load_average
from experiments.store import RunDir

NAME = "reservoir_rate"
EMPTY = {"num_neurons": 2, "in_degree": 0, "duration_ms": 1.0, "warmup_ms": 0.0, "noise_std": 0.0}


@dataclass(frozen=True)
class Config:
    overhead_points: int = field(default=64, metadata={"min": 2, "max": 10_000, "help": "points, part 1"})
    long_points: int = field(default=64, metadata={"min": 2, "max": 10_000, "help": "points, part 2"})
    point_seconds: float = field(default=1.0, metadata={"min": 0.05, "max": 60.0,
                                                        "help": "calibrated seconds per point, part 2"})
    batch_points: int = field(default=64, metadata={"min": 2, "max": 10_000, "help": "points, part 3"})
    batch_size: int = field(default=32, metadata={"min": 2, "max": 1024, "help": "--batch B, part 3"})
    workers: int = field(default=2, metadata={"min": 1, "max": 256, "help": "pool size, parts 2-3"})
    repeats: int = field(default=3, metadata={"min": 1, "max": 20, "help": "repeats of part 1 (median)"})


def _bare_point(args) -> float:
    """The peer: one point through run_experiment in a plain pool worker."""
    from experiments.runner import run_experiment
    from experiments.sweep.worker import prepare_process

    overrides, seed, root = args
    prepare_process(1)
    run_experiment(NAME, overrides=overrides, seed=seed, out_root=root)
    return 0.0


def _status_seconds(runs_root: Path) -> list[float]:
    """status.json ``seconds`` of every run under ``runs_root/<NAME>/``: its ``run`` plus the
    config.yaml, env.json and metrics.json writes around it."""
    return [json.loads(p.read_text())["seconds"] for p in (runs_root / NAME).glob("*/status.json")]


def _timed_sweep(spec, out: Path, pool, batch: int | None = None) -> tuple[float, object]:
    from experiments.sweep.runner import run_sweep

    start = time.perf_counter()
    result = run_sweep(spec, out=out, pool=pool, batch=batch, report=False)
    seconds = time.perf_counter() - start
    if result.counts["failed"] or result.counts["pending"]:
        raise RuntimeError(f"benchmark sweep did not complete: {result.counts}")
    return seconds, result


def _overhead(config: Config, out: RunDir, root: Path) -> dict[str, float]:
    """Part 1; ours and the bare pool alternate per repeat (so load drift hits both)."""
    import multiprocessing

    import pandas as pd

    from experiments.reservoir_rate import Config as PointConfig
    from experiments.sweep.executors import LocalPool
    from experiments.sweep.spec import build_spec

    sets = [f"{k}={v}" for k, v in EMPTY.items()]
    pool = LocalPool(workers=1, threads=1)
    bare_pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    ours, store, bare = [], [], []
    try:
        warm = build_spec(NAME, PointConfig, grid=["drive=0,1"], sets=sets, seed=10_000)
        _timed_sweep(warm, root / "warm", pool)  # imports torch etc. in the workers once
        list(bare_pool.map(_bare_point, [(EMPTY, 99, str(root / "bare-warm"))]))
        for repeat in range(config.repeats):
            spec = build_spec(NAME, PointConfig, grid=[f"drive=0:10:{config.overhead_points}"], sets=sets,
                              seed=repeat)
            seconds, result = _timed_sweep(spec, root / f"overhead-{repeat}", pool)
            inside_run = sum(_status_seconds(result.sweep_dir / "runs"))
            ours.append((seconds - inside_run) / config.overhead_points)
            frame = pd.read_parquet(result.sweep_dir / "sweep.parquet")
            store.append((frame["seconds"].sum() - inside_run) / config.overhead_points)

            args = [({**EMPTY, "drive": point.config.drive}, point.seed, str(root / f"bare-{repeat}"))
                    for point in _points(spec)]
            start = time.perf_counter()
            list(bare_pool.map(_bare_point, args))
            seconds = time.perf_counter() - start
            bare.append((seconds - sum(_status_seconds(root / f"bare-{repeat}"))) / config.overhead_points)
    finally:
        pool.close()
        bare_pool.shutdown()
    overhead, store_ms, bare_ms = (1000 * statistics.median(v) for v in (ours, store, bare))
    out.log(f"overhead per point: sweep {overhead:.1f} ms (run store {store_ms:.1f} ms), "
            f"bare pool {bare_ms:.1f} ms")
    return {"overhead_ms_per_point": overhead, "run_store_ms_per_point": store_ms,
            "sweep_dispatch_ms_per_point": overhead - store_ms, "bare_pool_overhead_ms_per_point": bare_ms,
            "overhead_vs_bare_pool": overhead / bare_ms if bare_ms > 0 else float("nan"),
            "overhead_target_met": overhead < 50.0}


def _points(spec):
    from experiments.reservoir_rate import Config as PointConfig
    from experiments.sweep.spec import expand

    return expand(spec, PointConfig)


def _efficiency(config: Config, out: RunDir, root: Path) -> dict[str, float]:
    """Part 2. The point duration is calibrated in the pool itself: 2 x workers probe points
    run side by side, as in the sweep, so contention is the same."""
    import pandas as pd

    from experiments.reservoir_rate import Config as PointConfig
    from experiments.sweep.executors import LocalPool
    from experiments.sweep.spec import build_spec

    size = ["num_neurons=1000", "in_degree=100", "warmup_ms=0"]
    probe_ms = 400.0
    pool = LocalPool(workers=config.workers, threads=1)
    try:
        probe = build_spec(NAME, PointConfig, grid=[f"drive=0:1:{2 * config.workers}"],
                           sets=[*size, f"duration_ms={probe_ms}"], seed=10_000)
        _timed_sweep(probe, root / "probe-warm", pool)
        _, result = _timed_sweep(probe, root / "probe", pool)
        probe_seconds = statistics.median(_status_seconds(result.sweep_dir / "runs"))
        duration = round(probe_ms * config.point_seconds / probe_seconds, 1)
        spec = build_spec(NAME, PointConfig, grid=[f"drive=0:10:{config.long_points}"],
                          sets=[*size, f"duration_ms={duration}"])
        seconds, result = _timed_sweep(spec, root / "long", pool)
    finally:
        pool.close()
    inside = pd.Series(_status_seconds(result.sweep_dir / "runs"))
    ideal = config.long_points * config.point_seconds / config.workers
    in_sweep_ideal = inside.sum() / config.workers
    out.log(f"{config.long_points} points of ~{config.point_seconds} s (duration_ms={duration}, median "
            f"{inside.median():.2f} s in the sweep) on {config.workers} workers: {seconds:.1f} s; ideal "
            f"{ideal:.1f} s nominal, {in_sweep_ideal:.1f} s from the points' own times")
    return {"long_sweep_seconds": seconds, "long_ideal_seconds": ideal, "ratio_to_ideal": seconds / ideal,
            "ratio_to_in_sweep_ideal": seconds / in_sweep_ideal,
            "median_point_seconds_in_sweep": float(inside.median()),
            "calibrated_duration_ms": duration, "efficiency_target_met": seconds / ideal <= 1.2}


def _batching(config: Config, out: RunDir, root: Path) -> dict[str, float]:
    from experiments.reservoir_rate import Config as PointConfig
    from experiments.sweep.executors import LocalPool
    from experiments.sweep.spec import build_spec

    grid = [f"drive=0:20:{config.batch_points}"]
    pool = LocalPool(workers=config.workers, threads=1)
    try:
        _timed_sweep(build_spec(NAME, PointConfig, grid=["drive=0,1"], sets=["duration_ms=10"], seed=10_000),
                     root / "warm-batch", pool)
        plain, _ = _timed_sweep(build_spec(NAME, PointConfig, grid=grid, seed=1), root / "unbatched", pool)
        batched, _ = _timed_sweep(build_spec(NAME, PointConfig, grid=grid, seed=1), root / "batched", pool,
                                  batch=config.batch_size)
    finally:
        pool.close()
    out.log(f"{config.batch_points} reservoir points: unbatched {plain:.1f} s, --batch "
            f"{config.batch_size} {batched:.1f} s")
    return {"unbatched_seconds": plain, "batched_seconds": batched, "batch_speedup": plain / batched,
            "batch_target_met": plain / batched >= 3.0}


def run(config: Config, out: RunDir) -> dict[str, float]:
    import torch

    torch.set_num_threads(1)
    root = out.path / "sweeps"
    load_before = load_average()
    metrics: dict[str, float] = {}
    metrics.update(_overhead(config, out, root))
    metrics.update(_efficiency(config, out, root))
    metrics.update(_batching(config, out, root))
    metrics["load_average_start"] = load_before
    metrics["load_average_end"] = load_average()
    metrics["cpus"] = os.cpu_count() or 0
    rows = [{"measurement": k, "value": v} for k, v in metrics.items()]
    out.save_table("bench_sweep", rows, caption="Sweep runner overhead, 2-worker efficiency and "
                   "--batch speed-up (targets: < 50 ms, <= 1.2x, >= 3x).")
    return metrics
