"""``neuro demo``: the short version of every demo experiment, one combined report.

Every experiment module that defines a ``DEMO`` dict of overrides takes part. Each runs
into ``<out>/demo/<UTC>/<name>/<UTC>-<hash8>/``; a failing part is recorded in the report
(linked to its run directory) and the others still run (finished parts are never lost).
Ctrl-C writes the report of what ran so far and stops.
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path

from experiments.config import ConfigError
from experiments.registry import canonical_name, demo_experiments, list_experiments
from experiments.report import write_combined_report
from experiments.runner import check_device, check_seed, run_experiment
from experiments.store import new_run_path


class DemoInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during the demo, after the combined report of the parts so far was
    written to ``report``."""

    def __init__(self, report: Path):
        super().__init__(f"demo interrupted; report of the parts so far: {report}")
        self.report = report


def _part_run_path(demo_dir: Path, name: str) -> Path | None:
    """The run directory a part created (each part runs once, in its own folder), if any."""
    runs = sorted(p for p in (demo_dir / name).glob("*") if p.is_dir())
    return runs[-1] if runs else None


def run_demo(out_root: str | Path = "runs", seed: int = 0, device: str = "cpu", quiet: bool = True,
             only: list[str] | None = None) -> tuple[Path, list[str]]:
    """Run the demo; return the combined report's path and the names of failed parts.

    On Ctrl-C the report lists the finished parts, the interrupted one (linked to its run
    directory, marked ``interrupted``) and the parts not run, then :class:`DemoInterrupted`
    is raised.
    """
    check_device(device)
    check_seed(seed)  # a bad seed is a usage error, not a failure of every part
    parts = demo_experiments()
    if only:
        names = [canonical_name(n) for n in only]
        missing = [n for n in names if n not in parts]
        if missing:
            raise ConfigError(f"--only {missing[0]!r} has no demo version; demo experiments: "
                              f"{', '.join(parts)}")
        parts = {n: parts[n] for n in names}
    descriptions = list_experiments()
    demo_dir = new_run_path(out_root, "demo", f"seed{seed}")
    entries, failures = [], []
    for index, (name, overrides) in enumerate(parts.items(), start=1):
        print(f"[{index}/{len(parts)}] {name} ...", flush=True)
        start = time.perf_counter()
        entry = {"name": name, "description": descriptions[name]}
        try:
            result = run_experiment(name, overrides=overrides, out_root=demo_dir, seed=seed,
                                    device=device, quiet=quiet)
            entry.update(status="complete", run_path=result.path)
        except KeyboardInterrupt:
            entry.update(status="interrupted", run_path=_part_run_path(demo_dir, name),
                         error="interrupted (Ctrl-C or SIGTERM); its run directory is marked "
                         "interrupted", seconds=time.perf_counter() - start)
            entries.append(entry)
            entries.extend({"name": other, "description": descriptions[other], "status": "not run"}
                           for other in list(parts)[index:])
            raise DemoInterrupted(write_combined_report(demo_dir / "report.html", "neurobridge demo",
                                                        entries)) from None
        except Exception as error:  # noqa: BLE001 - record any failure; the other parts still run
            failures.append(name)
            entry.update(status="failed", run_path=_part_run_path(demo_dir, name), error="".join(
                traceback.format_exception_only(type(error), error)).strip())
        entry["seconds"] = time.perf_counter() - start
        print(f"    {entry['status']} in {entry['seconds']:.1f} s", flush=True)
        entries.append(entry)
        write_combined_report(demo_dir / "report.html", "neurobridge demo", entries)
    report = write_combined_report(demo_dir / "report.html", "neurobridge demo", entries)
    return report, failures
