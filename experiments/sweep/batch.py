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
from collections.abc import Hashable
from pathlib import Path

from experiments.registry import load_experiment
from experiments.runner import begin_run, fail_run, finish_run
from experiments.store import clean_metrics


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


def run_batched(task) -> list[dict]:
    """Run ``task.points`` through ``run_batch``; fall back to one-by-one if it raises."""
    from experiments.sweep.worker import point_row, run_single, utc_now

    module = load_experiment(task.experiment)
    sweep_dir = Path(task.sweep_dir)
    size = len(task.points)
    started = utc_now()
    runs = [begin_run(module, task.experiment, point.config, point.seed, task.device, True,
                      sweep_dir / "runs", batched=True) for point in task.points]
    begin = runs[0].start
    try:
        results = module.run_batch([p.config for p in task.points], [run.out for run in runs])
        if not isinstance(results, (list, tuple)) or len(results) != size:
            raise TypeError(f"run_batch must return a list of {size} metrics dicts, got "
                            f"{type(results).__name__} of length {len(results) if hasattr(results, '__len__') else '?'}")
        metrics = [clean_metrics(m) for m in results]
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any failure (sys.exit too): rerun alone
        for run in runs:
            fail_run(run, error, note="batch failed; point rerun alone")
        return [run_single(task, point) for point in task.points]
    except BaseException as error:  # Ctrl-C: visible as interrupted, then propagate
        for run in runs:
            fail_run(run, error)
        raise
    seconds = (time.perf_counter() - begin) / size
    rows = []
    for point, run, point_metrics in zip(task.points, runs, metrics):
        finish_run(run, point_metrics, seconds=seconds, batch_size=size)
        rows.append(point_row(point, "complete", metrics=point_metrics, seconds=seconds,
                              run_dir=run.out.path, sweep_dir=sweep_dir, started=started,
                              batch_size=size))
    return rows
