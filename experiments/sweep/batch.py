"""Batched sweep points: several compatible points in one call of the experiment.

An experiment opts in by defining, next to ``run``::

    def run_batch(configs: list[Config], outs: list[RunDir]) -> list[dict[str, float]]
        # one metrics dict per config, in order; outs[i].seed is point i's seed
    def batch_key(config: Config) -> Hashable       # optional; points with equal keys
        # (same shapes: sizes, durations, ...) may share a batch; default: all compatible

``run_batch`` must give each point the metrics ``run`` would give it for the same config
and seed (the experiment's tests should check this); the batch axis only changes speed.
Each point still gets its own run directory with the same files and status lifecycle as
``experiments.runner.run_experiment`` (``running`` -> ``complete``/``failed``). If the
batch call raises, its run directories are marked failed and every point is rerun alone
with ``run``, so one bad point cannot fail its batch-mates.
"""
from __future__ import annotations

import time
import traceback
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from experiments.config import config_to_yaml
from experiments.environment import environment_facts
from experiments.registry import load_experiment
from experiments.report import write_run_report
from experiments.store import RunDir, atomic_write_text, clean_metrics, new_run_path, to_json


def supports_batch(module) -> bool:
    return callable(getattr(module, "run_batch", None))


def batch_key(module, config) -> Hashable:
    """The compatibility key of ``config`` (``module.batch_key`` or one shared key)."""
    key_fn = getattr(module, "batch_key", None)
    return key_fn(config) if callable(key_fn) else ()


def group_points(module, points: list, batch_size: int) -> list[list]:
    """Split ``points`` into groups of at most ``batch_size`` with equal batch keys.

    Order is kept within a key, so a resumed sweep forms the same groups from what is left.
    """
    by_key: dict[Hashable, list] = {}
    for point in points:
        by_key.setdefault(batch_key(module, point.config), []).append(point)
    groups = []
    for members in by_key.values():
        groups.extend(members[i:i + batch_size] for i in range(0, len(members), batch_size))
    return groups


def _status(name: str, digest: str, started: str) -> dict[str, Any]:
    return {"experiment": name, "config_hash": digest, "status": "running", "started_utc": started,
            "batched": True}


def run_batched(task) -> list[dict]:
    """Run ``task.points`` through ``run_batch``; fall back to one-by-one if it raises."""
    from experiments.sweep.worker import point_row, run_single, utc_now

    module = load_experiment(task.experiment)
    sweep_dir = Path(task.sweep_dir)
    runs_root = sweep_dir / "runs"
    size = len(task.points)
    started, begin = utc_now(), time.perf_counter()
    facts = environment_facts(0, task.device)
    outs, statuses = [], []
    for point in task.points:
        path = new_run_path(runs_root, task.experiment, point.config_hash[:8])
        atomic_write_text(path / "config.yaml", config_to_yaml(point.config))
        atomic_write_text(path / "env.json", to_json({**facts, "seed": int(point.seed)}))
        status = _status(task.experiment, point.config_hash, started)
        atomic_write_text(path / "status.json", to_json(status))
        outs.append(RunDir(path, seed=point.seed, device=task.device, quiet=True))
        statuses.append(status)
    try:
        results = module.run_batch([p.config for p in task.points], outs)
        if not isinstance(results, (list, tuple)) or len(results) != size:
            raise TypeError(f"run_batch must return a list of {size} metrics dicts, got "
                            f"{type(results).__name__} of length {len(results) if hasattr(results, '__len__') else '?'}")
        metrics = [clean_metrics(m) for m in results]
    except Exception as error:  # noqa: BLE001 - any failure: rerun the points alone
        seconds = time.perf_counter() - begin
        for out, status in zip(outs, statuses):
            status.update(status="failed", seconds=seconds, error=f"{type(error).__name__}: {error}",
                          traceback=traceback.format_exc(), note="batch failed; point rerun alone")
            atomic_write_text(out.path / "status.json", to_json(status))
        return [run_single(task, point) for point in task.points]
    except BaseException as error:  # Ctrl-C / SystemExit: visible as interrupted, then propagate
        for out, status in zip(outs, statuses):
            status.update(status="interrupted", error=f"{type(error).__name__}: {error}")
            atomic_write_text(out.path / "status.json", to_json(status))
        raise
    seconds = time.perf_counter() - begin
    description = (module.__doc__ or "").strip()
    rows = []
    for point, out, status, point_metrics in zip(task.points, outs, statuses, metrics):
        atomic_write_text(out.path / "metrics.json", to_json(point_metrics))
        status.update(status="complete", seconds=seconds / size, batch_size=size)
        write_run_report(out.path, title=task.experiment, description=description, status=status)
        atomic_write_text(out.path / "status.json", to_json(status))
        rows.append(point_row(point, "complete", metrics=point_metrics, seconds=seconds / size,
                         run_dir=out.path, sweep_dir=sweep_dir, started=started, batch_size=size))
    return rows
