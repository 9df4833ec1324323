"""Runs one experiment into a fresh run directory: resolve config, record, run, report."""
from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, config_hash, config_to_yaml, resolve_config
from experiments.environment import environment_facts
from experiments.registry import canonical_name, load_experiment
from experiments.report import write_run_report
from experiments.store import RunDir, atomic_write_text, clean_metrics, new_run_path, to_json

DEVICES = ("cpu", "cuda")


@dataclass
class RunResult:
    path: Path
    metrics: dict[str, Any]
    config: Any
    status: str


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r}: choose one of {list(DEVICES)}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is visible to torch on this machine")
    return device


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed {seed!r}: expected a non-negative integer")
    return seed


class ActiveRun:
    """One run directory between :func:`begin_run` and :func:`finish_run` / :func:`fail_run`."""

    def __init__(self, out: RunDir, status: dict[str, Any], description: str):
        self.out, self.status, self.description = out, status, description
        self.start = time.perf_counter()

    def _write_status(self) -> None:
        atomic_write_text(self.out.path / "status.json", to_json(self.status))


def begin_run(module, name: str, config: Any, seed: int, device: str, quiet: bool,
              out_root: str | Path, **status_extra) -> ActiveRun:
    """Create ``out_root/<name>/<UTC>-<hash8>/`` and record ``status.json`` (``running``)
    first, then ``config.yaml`` and ``env.json``: a run killed at any point is visibly
    incomplete."""
    digest = config_hash(config, seed)
    path = new_run_path(out_root, name, digest[:8])
    status = {"experiment": name, "config_hash": digest, "status": "running",
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **status_extra}
    run = ActiveRun(RunDir(path, seed=seed, device=device, quiet=quiet), status,
                    (module.__doc__ or "").strip())
    run._write_status()
    try:
        atomic_write_text(path / "config.yaml", config_to_yaml(config))
        atomic_write_text(path / "env.json", to_json(environment_facts(seed, device)))
    except BaseException as error:  # Ctrl-C / SIGTERM here too: the directory exists, mark it
        fail_run(run, error)
        raise
    return run


def finish_run(run: ActiveRun, metrics: Any, seconds: float | None = None, **status_extra) -> dict:
    """Store the metrics and the report, then mark the run ``complete``."""
    metrics = clean_metrics(metrics)
    atomic_write_text(run.out.path / "metrics.json", to_json(metrics))
    elapsed = time.perf_counter() - run.start if seconds is None else seconds
    run.status.update(status="complete", seconds=elapsed, **status_extra)
    write_run_report(run.out.path, title=run.status["experiment"], description=run.description,
                     status=run.status)
    run._write_status()
    return metrics


def fail_run(run: ActiveRun, error: BaseException, **status_extra) -> None:
    """Mark the run ``failed`` (``interrupted`` for Ctrl-C / SystemExit) with the traceback."""
    interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
    run.status.update(status="interrupted" if interrupted else "failed",
                      seconds=time.perf_counter() - run.start,
                      error=f"{type(error).__name__}: {error}",
                      traceback="".join(traceback.format_exception(error)), **status_extra)
    run._write_status()


def run_experiment(name: str, overrides: Mapping[str, Any] | list[str] | None = None,
                   config_file: str | Path | None = None, out_root: str | Path = "runs",
                   seed: int = 0, device: str = "cpu", quiet: bool = True,
                   config: Any = None) -> RunResult:
    """Run experiment ``name`` into ``out_root/<name>/<UTC>-<hash8>/`` and return its metrics.

    ``config`` (an already resolved ``Config``) replaces ``config_file`` + ``overrides``.
    The run's ``status.json`` says ``running`` until the metrics and report are written,
    then ``complete``; an exception marks it ``failed`` (with the traceback), Ctrl-C marks it
    ``interrupted`` (``neuro run`` turns SIGTERM and SIGHUP into Ctrl-C), and the exception
    propagates. A killed process (SIGKILL) leaves ``running``: either way the run is
    visibly incomplete and no later run writes into it.
    """
    name = canonical_name(name)
    module = load_experiment(name)
    check_device(device)
    check_seed(seed)
    if config is None:
        config = resolve_config(module.Config, config_file, overrides)
    elif not isinstance(config, module.Config):
        raise TypeError(f"config: expected {name}.Config, got {type(config).__name__}")
    import torch  # every experiment but the smallest uses it; its thread count is restored

    threads = torch.get_num_threads()
    run = begin_run(module, name, config, seed, device, quiet, out_root)
    try:
        metrics = finish_run(run, module.run(config, run.out))
    except BaseException as error:
        fail_run(run, error)
        raise
    finally:
        torch.set_num_threads(threads)  # an experiment's own setting never leaks to the next
    return RunResult(path=run.out.path, metrics=metrics, config=config, status="complete")

