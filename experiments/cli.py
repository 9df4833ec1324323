"""The ``neuro`` command line: list, run, show, demo (and sweep, when installed).

Exit codes: 0 success, 1 a run failed, 2 a usage error (bad experiment name, config key,
value or file), 130 ``run``, ``demo`` or ``sweep`` interrupted (Ctrl-C, SIGTERM, SIGHUP; what
was finished is kept: the run directory says ``interrupted``, a sweep resumes on rerun).
Errors print one readable line plus a hint, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

from experiments.config import ConfigError

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


class _Parser(argparse.ArgumentParser):
    """argparse that prints one error line plus a hint and exits 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"neuro: error: {message}\nhint: run '{self.prog} --help'\n")


def _cmd_list(args) -> int:
    from experiments.registry import demo_experiments, list_experiments

    demo = demo_experiments()
    experiments = list_experiments()
    width = max((len(n) for n in experiments), default=0)
    for name, description in experiments.items():
        tag = " [demo]" if name in demo else ""
        print(f"{name:<{width}}  {description}{tag}")
    return EXIT_OK


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (``kill``, ``scancel``) and SIGHUP (a closed terminal) raise KeyboardInterrupt,
    like Ctrl-C, so the run directory is marked ``interrupted`` instead of staying ``running``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            previous[name] = signal.signal(getattr(signal, name), interrupt)
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def _cmd_run(args) -> int:
    from experiments.runner import run_experiment

    runs = Path(args.out) / args.name.replace("-", "_")  # where this experiment's run directories go
    try:
        with _terminate_as_interrupt():
            result = run_experiment(args.name, overrides=args.set, config_file=args.config,
                                    out_root=args.out, seed=args.seed, device=args.device,
                                    quiet=args.quiet)
    except ConfigError:
        raise
    except KeyboardInterrupt:
        # run_experiment marks its run directory ``interrupted`` before re-raising (an
        # interrupt while the experiment is imported or configured comes before there is one)
        print(f"neuro: interrupted; a run directory already made under {runs} is marked interrupted",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - any run failure: status.json has the traceback
        print(f"neuro: run failed: {type(error).__name__}: {error}", file=sys.stderr)
        print(f"hint: the traceback is in status.json of the newest run directory under {runs}",
              file=sys.stderr)
        return EXIT_RUN_FAILED
    print(_metrics_text(result.metrics))
    print(f"report: {result.path / 'report.html'}")
    return EXIT_OK


def _metrics_text(metrics: dict) -> str:
    from experiments.store import format_metric

    width = max((len(k) for k in metrics), default=0)
    return "\n".join(f"{k:<{width}}  {format_metric(v)}" for k, v in metrics.items())


def _read_json_mapping(path: Path, what: str) -> dict:
    """A JSON object from ``path``; anything else is a ConfigError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"{what} {str(path)!r} is not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {str(path)!r}: expected a JSON object, got {type(data).__name__}")
    return data


def _cmd_show(args) -> int:
    run_path = Path(args.run_dir)
    status_path = run_path / "status.json"
    if not status_path.exists():
        raise ConfigError(f"RUN_DIR {str(run_path)!r} is not a run directory (no status.json)")
    status = _read_json_mapping(status_path, "status file")
    seconds = status.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))):
        raise ConfigError(f"status file {str(status_path)!r}: seconds: expected a number, got {seconds!r}")
    print(f"{status.get('experiment', run_path.parent.name)}  {run_path.name}  "
          f"status={status.get('status')}" + (f"  {seconds:.1f} s" if seconds is not None else ""))
    metrics_path = run_path / "metrics.json"
    if metrics_path.exists():
        print(_metrics_text(_read_json_mapping(metrics_path, "metrics file")))
    if status.get("error"):
        print(f"error: {status['error']}")
    return EXIT_OK if status.get("status") == "complete" else EXIT_RUN_FAILED


def _cmd_demo(args) -> int:
    from experiments.demo import run_demo

    try:
        with _terminate_as_interrupt():
            report, failures = run_demo(out_root=args.out, seed=args.seed, device=args.device,
                                        quiet=args.quiet, only=args.only)
    except KeyboardInterrupt as interrupt:
        report = getattr(interrupt, "report", None)
        print("neuro: demo interrupted" + (f"; report of the parts so far: {report}" if report else ""),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"report: {report}")
    return EXIT_RUN_FAILED if failures else EXIT_OK


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs", help="root folder of the run store (default: runs)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device")
    parser.add_argument("--seed", type=int, default=0, help="root seed (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neuro", description="neurobridge: brain-side models beside their "
                     "Transformer counterparts. Experiments write to runs/<name>/<UTC>-<hash>/.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    listing = commands.add_parser("list", help="list experiments with one-line descriptions")
    listing.set_defaults(handler=_cmd_list)

    run = commands.add_parser("run", help="run one experiment and write its report",
                              description="Run experiment NAME; config = defaults, then --config, "
                              "then --set overrides.")
    run.add_argument("name", metavar="NAME", help="experiment name (see 'neuro list')")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field, e.g. --set num_neurons=500 (repeatable)")
    run.add_argument("--config", metavar="FILE", help="YAML file of config values")
    _add_run_options(run)
    run.set_defaults(handler=_cmd_run)

    show = commands.add_parser("show", help="print a run's status and metrics")
    show.add_argument("run_dir", metavar="RUN_DIR", help="a run directory")
    show.set_defaults(handler=_cmd_show)

    demo = commands.add_parser("demo", help="run the short version of every demo experiment "
                               "and write one combined report.html")
    demo.add_argument("--only", action="append", metavar="NAME",
                      help="restrict the demo to these experiments (repeatable)")
    _add_run_options(demo)
    demo.set_defaults(handler=_cmd_demo)

    try:
        from experiments.sweep.cli import add_sweep_commands
    except ModuleNotFoundError as error:  # sweeps not installed in this tree
        if error.name not in ("experiments.sweep", "experiments.sweep.cli"):
            raise
    else:
        add_sweep_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        print(f"neuro: error: {error}", file=sys.stderr)
        print(f"hint: run 'neuro {args.command} --help' or 'neuro list'", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
