"""``neuro sweep`` and ``neuro sweep-show``: argparse subcommands for experiments/cli.py.

Exit codes follow the main CLI: 0 every point complete, 1 some point failed or pending (or
the sweep stopped on an error, e.g. a full disk or a lost Dask scheduler), 2 a usage error
(raised as ``ConfigError``, printed by the main CLI as one line plus a hint), 130 the sweep was
interrupted (Ctrl-C, SIGTERM, SIGHUP; the table is written first: rerun the same command to
resume).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from experiments.cli import EXIT_INTERRUPTED
from experiments.config import ConfigError

EXIT_OK, EXIT_FAILED = 0, 1

_SWEEP_HELP = """\
Value forms: 1,2,3 | [1, 2, 3] | LO:HI:N (linspace) | LO:HI:N:log (geomspace);
with --random N: LO:HI (uniform), LO:HI:log (log-uniform) or a list (choice).
Tuple fields take a YAML list of lists: --grid load_ratios='[[0.5,1.0],[2.0]]'.
Rerunning the same command resumes: finished points are skipped."""


def _int_at_least(minimum: int):
    """argparse type: a whole number >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
        return value
    return parse


_positive, _non_negative = _int_at_least(1), _int_at_least(0)


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds > 0")
    return value


def add_sweep_commands(subparsers) -> None:
    """Add ``sweep`` and ``sweep-show`` to the main CLI's subparsers."""
    sweep = subparsers.add_parser(
        "sweep", help="run a parameter sweep of an experiment (resumable batch job)",
        description="Run experiment NAME over a grid / zipped lists / random samples of its "
        "config, with repeats, on a local process pool or a Dask cluster.",
        epilog=_SWEEP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("name", metavar="NAME", help="experiment name (see 'neuro list')")
    spec = sweep.add_argument_group("what to run")
    spec.add_argument("--grid", action="append", default=[], metavar="KEY=VALUES",
                      help="a crossed axis, e.g. --grid key_dim=16,32 --grid rate_hz=1:10:4")
    spec.add_argument("--zip", action="append", default=[], metavar="KEY=VALUES",
                      help="axes walked together (equal lengths)")
    spec.add_argument("--random", type=_positive, metavar="N",
                      help="draw N points from the --grid ranges instead of crossing them")
    spec.add_argument("--seed", type=_non_negative, metavar="S",
                      help="root seed of repeats and random draws (default 0)")
    spec.add_argument("--repeats", type=_positive, metavar="R", help="runs per point (default 1)")
    spec.add_argument("--from-file", metavar="FILE", help="sweep YAML (keys: experiment, config, "
                      "set, grid, zip, random, repeats, seed); sweep.yaml of a sweep is one")
    spec.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="fixed override for every point")
    spec.add_argument("--config", metavar="FILE", help="YAML file of base config values")
    spec.add_argument("--dry-run", action="store_true", help="validate and list the points, run nothing")
    where = sweep.add_argument_group("where to run")
    where.add_argument("--executor", choices=("local", "dask"),
                       help="local process pool (default) or Dask (implied by --scheduler/--cluster)")
    where.add_argument("--workers", type=_positive, metavar="K",
                       help="worker processes (local pool / embedded LocalCluster; default: CPUs)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="existing Dask scheduler, tcp://HOST:PORT")
    where.add_argument("--cluster", metavar="FILE", help="SLURM/PBS cluster YAML (dask-jobqueue)")
    where.add_argument("--threads-per-task", type=_positive, metavar="T",
                       help="compute threads per point (default: CPUs / workers; 1 on an "
                       "existing Dask scheduler)")
    where.add_argument("--batch", type=_positive, metavar="B",
                       help="run up to B compatible points in one call (experiments with run_batch)")
    where.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device")
    behaviour = sweep.add_argument_group("faults and output")
    behaviour.add_argument("--retry-failed", action="store_true", help="rerun points recorded as failed")
    behaviour.add_argument("--max-worker-deaths", type=_non_negative, default=2, metavar="N",
                           help="retries of a point whose worker process died (default 2)")
    behaviour.add_argument("--point-timeout", type=_seconds, metavar="SECONDS",
                           help="stop a point that runs longer than SECONDS on its worker (a batch "
                           "of B points: B x SECONDS) and record it failed; not retried (rerun "
                           "with --retry-failed). Not part of the sweep: a resume may change it")
    behaviour.add_argument("--out", metavar="DIR",
                           help="sweep directory (default: runs/sweeps/<name>-<spec hash>)")
    behaviour.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(handler=_cmd_sweep)

    show = subparsers.add_parser("sweep-show", help="print the table of a sweep directory")
    show.add_argument("sweep_dir", metavar="DIR", help="a sweep directory (holds sweep.yaml)")
    show.add_argument("--status", choices=("complete", "failed", "pending"), help="only these rows")
    show.add_argument("--all-columns", action="store_true", help="every config column, not only swept ones")
    show.set_defaults(handler=_cmd_show)


def _build(args):
    from experiments.registry import canonical_name, load_experiment
    from experiments.sweep.spec import build_spec

    name = canonical_name(args.name)
    module = load_experiment(name)
    spec = build_spec(name, module.Config, grid=args.grid, zip=args.zip, random=args.random,
                      seed=args.seed, repeats=args.repeats, sets=args.set, config_file=args.config,
                      from_file=args.from_file)
    return spec, module


def _cmd_sweep(args) -> int:
    from experiments.sweep.executors import check_pool_options
    from experiments.sweep.runner import default_sweep_dir, run_sweep
    from experiments.sweep.spec import expand

    spec, module = _build(args)
    executor = args.executor or ("dask" if args.scheduler or args.cluster else "local")
    if args.dry_run:  # the execution options are validated too (no batch system needed)
        check_pool_options(executor, args.workers, args.scheduler, args.cluster, args.threads_per_task,
                           check_submit=False)
        points = expand(spec, module.Config)
        for point in points:
            values = ", ".join(f"{k}={v!r}" for k, v in point.overrides.items())
            print(f"{point.index:>5}  repeat {point.repeat}  seed {point.seed:>10}  {values}")
        print(f"{len(points)} points; sweep directory: {args.out or default_sweep_dir(spec)}")
        return EXIT_OK
    try:
        result = run_sweep(spec, out=args.out, executor=executor, workers=args.workers,
                           scheduler=args.scheduler, cluster_file=args.cluster,
                           threads_per_task=args.threads_per_task, batch=args.batch,
                           retry_failed=args.retry_failed, max_worker_deaths=args.max_worker_deaths,
                           point_timeout=args.point_timeout, device=args.device, quiet=args.quiet)
    except ConfigError:
        raise
    except RuntimeError as error:
        print(f"neuro: sweep stopped: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:  # a full disk, a lost file system: what reached the journal is kept
        print(f"neuro: sweep stopped: {error}; the points finished so far are kept: rerun the "
              "same command to resume", file=sys.stderr)
        return EXIT_FAILED
    counts = result.counts
    print(f"sweep {spec.experiment}: {counts['complete']} complete, {counts['failed']} failed, "
          f"{counts['pending']} pending ({result.executed} run now, {result.skipped} already done"
          + (f", {result.adopted} recovered" if result.adopted else "") + ")"
          + (f" on {result.executor}" if result.executor else ""))
    print(f"table:  {result.table}")
    if result.report:
        print(f"report: {result.report}")
    if result.interrupted:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    status = EXIT_OK
    if counts["pending"]:  # never after a full run; if it happens, the job did not finish
        print(f"pending points: {counts['pending']} (rerun the same command to run them)",
              file=sys.stderr)
        status = EXIT_FAILED
    if counts["failed"]:
        print(f"failed points: {result.failed_points[:20]}{' ...' if counts['failed'] > 20 else ''} "
              f"(errors: neuro sweep-show {result.sweep_dir} --status failed; rerun them with "
              "--retry-failed)", file=sys.stderr)
        status = EXIT_FAILED
    return status


def current_frame(sweep_dir: Path):
    """``(frame, swept keys, metric names)`` from sweep.yaml + the journal (always current)."""
    from experiments.registry import load_experiment
    from experiments.sweep.runner import _same_as_an_older_spec_file
    from experiments.sweep.spec import build_spec, expand
    from experiments.sweep.table import SweepTable, load_frame

    spec_path = sweep_dir / "sweep.yaml"
    if not spec_path.is_file():
        raise ConfigError(f"DIR {str(sweep_dir)!r} is not a sweep directory (no sweep.yaml)")
    try:
        import yaml

        try:
            stored = yaml.safe_load(spec_path.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise ConfigError(f"DIR {str(sweep_dir)!r}: sweep.yaml is unreadable "
                              f"({type(error).__name__})") from None
        if not isinstance(stored, dict):
            raise ConfigError(f"DIR {str(sweep_dir)!r}: sweep.yaml is not a mapping")
        name = stored.get("experiment", "")
        module = load_experiment(str(name))
        spec = build_spec(str(name), module.Config, from_file=spec_path)
        # its experiment or base config file changed since (a file written before base_config
        # was recorded is the same sweep, as the runner resumes it)
        if spec.to_dict() != stored and not _same_as_an_older_spec_file(stored, spec):
            raise ConfigError(f"DIR {str(sweep_dir)!r}: sweep.yaml no longer resolves to the same "
                              "sweep (its experiment or base config changed)")
        table = SweepTable(sweep_dir, expand(spec, module.Config), spec.swept_keys)
        frame, metrics = table.frame()
        return frame, spec.swept_keys, metrics
    except ConfigError:
        if not (sweep_dir / "sweep.parquet").exists():
            raise
        frame, meta = load_frame(sweep_dir)  # the sweep changed since: show what was stored
        return frame, meta["swept"], meta["metrics"]


def _cmd_show(args) -> int:
    import pandas as pd

    sweep_dir = Path(args.sweep_dir)
    frame, swept, metrics = current_frame(sweep_dir)
    if args.status:
        frame = frame[frame["status"] == args.status]
    config_columns = [c for c in frame if c.startswith("config.")] if args.all_columns else [
        f"config.{k}" for k in swept]
    columns = (["point", "repeat", "seed"] + config_columns + ["status"]
               + [f"metric.{m}" for m in metrics] + ["seconds", "host"])
    if (frame["status"] == "failed").any():
        columns.append("error")
    view = frame[[c for c in columns if c in frame]].copy()
    view.columns = [c.removeprefix("config.").removeprefix("metric.") for c in view.columns]
    if "error" in view:
        view["error"] = view["error"].fillna("").astype(str).str.slice(0, 80)
    counts = frame["status"].value_counts().to_dict()
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200,
                           "display.float_format", "{:.6g}".format):
        print(view.to_string(index=False))
    print(f"{len(frame)} rows: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("complete", "failed", "pending")))
    return EXIT_OK
