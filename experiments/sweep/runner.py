"""Run a sweep: expand and validate, skip what is done, dispatch, record, survive faults.

The loop keeps at most ``2 x slots`` tasks in flight on the executor, records every
finished task in the journal at once (see :mod:`experiments.sweep.table`), and

* skips points whose latest row is ``complete`` (and ``failed`` ones unless
  ``retry_failed``), after adopting finished run directories the journal missed;
* records a point that raises (or calls ``sys.exit``) as ``failed`` with its traceback and goes on;
* with ``point_timeout`` (``--point-timeout SECONDS``), stops a task that has run longer than
  that per point (a batch of B points: B x SECONDS), timed from the worker's
  :class:`~experiments.sweep.worker.Started` notice (read within half a second), so a task
  still queued is never timed. Its points are recorded ``failed`` ("timed out after 30 s
  (--point-timeout 30)"), not retried and not charged a worker death; ``retry_failed`` reruns
  them under the limit then in force. A local pool ends the worker process running it and is
  rebuilt (the other in-flight tasks are resubmitted, as after a worker death); Dask cancels
  it and restarts its worker where it can (see :mod:`experiments.sweep.executors`); either way
  the processes the point started are ended too. Only the current attempt is timed: a task
  put back in the queue forgets its notice, and before stopping a Dask task the runner asks
  the pool whether the attempt it timed still runs (if its worker died, Dask retries the
  task on its own, and the retry is timed from its own notice). The limit
  is how the sweep runs, not what it runs: it is not part of ``sweep.yaml`` or the spec
  digest, and a resume may use another one;
* when a local worker process dies, rebuilds the pool and resubmits the tasks that were
  in flight; the task whose worker died is charged one ``worker_deaths`` and is failed
  after ``max_worker_deaths`` deaths ("killed or out of memory"). Dask retries on its own;
  its ``KilledWorker`` is recorded the same way;
* when a Dask client has lost its scheduler for good, stops with a ``RuntimeError`` (its
  futures would never finish);
* on Ctrl-C, SIGTERM or SIGHUP (handled as a flag between records, so the journal and table never
  disagree; a second Ctrl-C stops at once) stops dispatching, stops the workers, writes
  the table and report, and returns ``interrupted=True`` (in-flight points stay ``pending``).

A worker stopped by the sweep (or dead) never marks its run directory; once the workers
are gone the runner marks those still ``running`` as ``interrupted`` (see
:func:`mark_stopped_runs`).
"""
from __future__ import annotations

import collections
import contextlib
import json
import math
import numbers
import signal
import sys
import threading
import time
import traceback
import uuid
import warnings
from concurrent.futures import FIRST_COMPLETED, CancelledError, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from experiments.config import ConfigError
from experiments.registry import load_experiment
from experiments.runner import check_device
from experiments.store import atomic_write_text, to_json
from experiments.sweep.batch import group_points, supports_batch
from experiments.sweep.executors import check_pool_options, open_pool
from experiments.sweep.spec import SweepSpec, expand
from experiments.sweep.table import SweepTable, write_spec_file
from experiments.sweep.worker import PointTask, Started, Task, execute_task, find_run_dir, utc_now


@dataclass
class SweepResult:
    sweep_dir: Path
    counts: dict[str, int]
    executed: int = 0          # points run (to a row) by this call
    skipped: int = 0           # points already done before this call
    adopted: int = 0           # finished run directories recovered from a killed runner
    interrupted: bool = False
    report: Path | None = None
    executor: str = ""         # where the points ran, e.g. "local process pool, 2 workers x 1 threads"
    failed_points: list[int] = field(default_factory=list)

    @property
    def table(self) -> Path:
        return self.sweep_dir / "sweep.parquet"


def default_sweep_dir(spec: SweepSpec, out_root: str | Path = "runs") -> Path:
    return Path(out_root) / "sweeps" / f"{spec.experiment}-{spec.digest()[:8]}"


def _unusable(sweep_dir: Path, error: OSError) -> ConfigError:
    reason = "a file is in the way" if sweep_dir.is_file() else error.strerror or error
    return ConfigError(f"--out {str(sweep_dir)!r}: cannot create the sweep directory there "
                       f"({reason}); choose a writable folder")


def _create_directory(sweep_dir: Path) -> None:
    try:  # read-only, a file, no permission: before any point runs
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unusable(sweep_dir, error) from None


def _claim_directory(sweep_dir: Path, spec: SweepSpec) -> None:
    """Check ``sweep_dir/sweep.yaml`` against ``spec`` (write it if new); call under the lock,
    so that two runners started at once with different specs cannot both claim it."""
    spec_path = sweep_dir / "sweep.yaml"
    if spec_path.exists():
        try:
            existing = yaml.safe_load(spec_path.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            existing = error
        if not isinstance(existing, dict):  # not a sweep's: never overwritten
            what = (f"unreadable: {type(existing).__name__}" if isinstance(existing, Exception)
                    else f"a {type(existing).__name__}, not a mapping")
            raise ConfigError(f"--out {str(sweep_dir)!r} holds a sweep.yaml that is not a sweep's "
                              f"({what}); choose another --out")
        if _same_as_an_older_spec_file(existing, spec):  # written before base_config was recorded
            write_spec_file(spec_path, spec.to_dict())
            return
        if existing != spec.to_dict():
            differing = sorted(k for k in set(existing) | set(spec.to_dict())
                               if existing.get(k) != spec.to_dict().get(k))
            raise ConfigError(f"--out {str(sweep_dir)!r} holds a different sweep (sweep.yaml differs in "
                              f"{', '.join(differing)}{_base_changes(existing, spec)}); rerun the same "
                              "specification or choose another --out")
        return
    try:
        write_spec_file(spec_path, spec.to_dict())
    except OSError as error:
        raise _unusable(sweep_dir, error) from None


def _earlier_default_dir(spec: SweepSpec, out_root: str | Path) -> Path | None:
    """The default directory of ``spec`` as named before ``base_config`` entered the digest
    (its sweep.yaml older, or brought up to date by a resume), if one exists: the same
    command resumes it instead of rerunning every point in a new directory."""
    for spec_path in sorted((Path(out_root) / "sweeps").glob(f"{spec.experiment}-*/sweep.yaml")):
        try:
            existing = yaml.safe_load(spec_path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):  # another sweep's file: not ours to judge
            continue
        if existing == spec.to_dict() or _same_as_an_older_spec_file(existing, spec):
            return spec_path.parent
    return None


def _same_as_an_older_spec_file(existing: dict, spec: SweepSpec) -> bool:
    """Whether ``existing`` (a sweep.yaml without ``base_config``, its config path as typed)
    describes ``spec``: such a directory is resumed and its file brought up to date."""
    if not isinstance(existing, dict) or "base_config" in existing:
        return False
    current = {k: v for k, v in spec.to_dict().items() if k != "base_config"}
    old_config, new_config = existing.get("config"), current.get("config")
    if old_config is not None and new_config is not None:
        same_file = Path(str(old_config)).resolve() == Path(str(new_config)).resolve()
        existing = {**existing, "config": new_config if same_file else old_config}
    return existing == current


def _base_changes(existing: dict, spec: SweepSpec) -> str:
    """``"; base_config: trials 6 -> 5"``: the base config values that changed, if any."""
    before, after = existing.get("base_config"), spec.to_dict()["base_config"]
    if not isinstance(before, dict) or before == after:
        return ""
    changes = [f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)]
    return f"; base_config: {', '.join(changes[:5])}{' ...' if len(changes) > 5 else ''}"


def _failed_rows(task: Task, error: str, trace: str | None, deaths: int = 0) -> list[dict]:
    now = utc_now()
    return [{"config_hash": p.config_hash, "point": p.index, "status": "failed", "metrics": {},
             "error": error, "traceback": trace, "seconds": 0.0, "host": None, "pid": None,
             "run_dir": None, "started_utc": None, "finished_utc": now,
             "worker_deaths": deaths, "batch_size": len(task.points)} for p in task.points]


def _timed_out_rows(task: Task, started: Started, seconds: float) -> list[dict]:
    """The ``failed`` rows of a task stopped by ``--point-timeout``: where and since when it
    ran, and each point's run directory (the newest one begun since it started)."""
    rows = _failed_rows(task, _timeout_message(task), None)
    runs_root, since = Path(task.sweep_dir) / "runs", time.time() - seconds - 1
    for point, row in zip(task.points, rows):
        run_dir = find_run_dir(runs_root, task.experiment, point.config_hash, since=since)
        row.update(seconds=seconds / len(task.points), host=started.host, pid=started.pid,
                   started_utc=started.started_utc,
                   run_dir=None if run_dir is None else str(run_dir.relative_to(task.sweep_dir)))
    return rows


def _timeout_message(task: Task) -> str:
    """``timed out after 30 s (--point-timeout 30)``; a batch of B points gets B x the limit."""
    size, limit = len(task.points), task.point_timeout
    if size == 1:
        return f"timed out after {limit:g} s (--point-timeout {limit:g})"
    return f"timed out after {limit * size:g} s (--point-timeout {limit:g} per point, batch of {size})"


def check_point_timeout(point_timeout) -> float | None:
    """``point_timeout`` as float seconds (None: no limit); anything but a finite number > 0
    is a ConfigError (a ValueError) naming it."""
    if point_timeout is None:
        return None
    if (isinstance(point_timeout, bool) or not isinstance(point_timeout, numbers.Real)
            or not math.isfinite(point_timeout) or point_timeout <= 0):
        raise ConfigError(f"point_timeout={point_timeout!r} (--point-timeout): expected a finite "
                          "number of seconds > 0")
    return float(point_timeout)


class _Progress:
    """A tqdm bar over points: done / failed / running, with an ETA (off when quiet)."""

    def __init__(self, total: int, done: int, desc: str, quiet: bool):
        from tqdm.auto import tqdm

        tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=done, desc=desc, unit="pt", disable=quiet,
                        mininterval=0.2 if tty else 30.0, dynamic_ncols=True, leave=True)

    def update(self, finished: int, counts: dict, running: int) -> None:
        self.bar.set_postfix_str(f"done={counts['complete']} failed={counts['failed']} "
                                 f"running={running}", refresh=False)
        self.bar.update(finished)

    def close(self) -> None:
        self.bar.close()


def run_sweep(spec: SweepSpec, *, out: str | Path | None = None, out_root: str | Path = "runs",
              executor: str = "local", workers: int | None = None, scheduler: str | None = None,
              cluster_file: str | None = None, threads_per_task: int | None = None,
              batch: int | None = None, retry_failed: bool = False, max_worker_deaths: int = 2,
              point_timeout: float | None = None, device: str = "cpu", quiet: bool = True,
              report: bool = True, pool=None) -> SweepResult:
    """Run (or resume) ``spec``; see the module docstring. ``pool``: an already open pool.
    ``point_timeout``: seconds a point may run on a worker before it is stopped and failed."""
    point_timeout = check_point_timeout(point_timeout)
    module = load_experiment(spec.experiment)
    check_device(device)
    cluster_settings = None  # a --cluster file is read and its sbatch/qsub looked up here, once
    if pool is None:
        cluster_settings = check_pool_options(executor, workers, scheduler, cluster_file,
                                              threads_per_task)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ConfigError(f"--batch {batch!r}: expected a whole number >= 1")
    if batch is not None and batch > 1 and not supports_batch(module):
        raise ConfigError(f"--batch: experiment {spec.experiment!r} has no run_batch(configs, outs); "
                          "run it without --batch")
    if isinstance(max_worker_deaths, bool) or not isinstance(max_worker_deaths, int) or max_worker_deaths < 0:
        raise ConfigError(f"max_worker_deaths={max_worker_deaths!r}: expected a whole number >= 0")
    points = expand(spec, module.Config)
    sweep_dir = Path(out) if out is not None else default_sweep_dir(spec, out_root)
    if out is None and not sweep_dir.exists():  # started before base_config named the directory?
        sweep_dir = _earlier_default_dir(spec, out_root) or sweep_dir
    _create_directory(sweep_dir)
    lock = _lock(sweep_dir)
    try:
        _claim_directory(sweep_dir, spec)
        return _run_locked(spec, module, points, sweep_dir.resolve(), executor=executor, workers=workers,
                           scheduler=scheduler, cluster_file=cluster_file,
                           cluster_settings=cluster_settings,
                           threads_per_task=threads_per_task, batch=batch, retry_failed=retry_failed,
                           max_worker_deaths=max_worker_deaths, point_timeout=point_timeout,
                           device=device, quiet=quiet, report=report, pool=pool)
    finally:
        if lock is not None:
            lock.close()


def _lock(sweep_dir: Path):
    """An exclusive ``flock`` on ``sweep_dir/.lock``: two runners never share a sweep.

    Best effort: where ``flock`` is unavailable (Windows, some network file systems) the
    sweep runs unlocked.
    """
    try:
        import fcntl
    except ImportError:
        return None
    try:
        handle = open(sweep_dir / ".lock", "w")  # noqa: SIM115 - held until the sweep ends
    except OSError as error:
        raise _unusable(sweep_dir, error) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(f"another runner is working on {str(sweep_dir.resolve())!r}; wait for it or stop it "
                          "(finished points are kept either way)") from None
    except OSError:
        return handle
    return handle


def _run_locked(spec, module, points, sweep_dir: Path, *, executor, workers, scheduler, cluster_file,
                cluster_settings, threads_per_task, batch, retry_failed, max_worker_deaths,
                point_timeout, device, quiet, report, pool) -> SweepResult:
    table = SweepTable(sweep_dir, points, spec.swept_keys)
    adopted = table.adopt_finished_runs(spec.experiment)
    wanted = {"pending"} | ({"failed"} if retry_failed else set())
    todo = [p for p in points if table.status(p.config_hash) in wanted]
    result = SweepResult(sweep_dir=sweep_dir, counts=table.counts(), adopted=adopted,
                         skipped=len(points) - len(todo))
    own_pool = pool is None
    stop = threading.Event()
    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        def _on_signal(signum, frame):
            if stop.is_set():
                raise KeyboardInterrupt  # a second Ctrl-C: stop at once
            stop.set()  # the loop notices within half a second, between two records

        for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # Ctrl-C, kill/scancel, a closed terminal
            if hasattr(signal, name):
                signum = getattr(signal, name)
                previous_handlers[signum] = signal.signal(signum, _on_signal)
    progress, finished = None, False
    try:
        if todo:
            if own_pool:
                pool = open_pool(executor, workers, scheduler, cluster_file, threads_per_task,
                                 cluster_settings=cluster_settings)
            result.executor = pool.description
            groups = group_points(module, todo, batch) if batch and batch > 1 else [[p] for p in todo]
            token = uuid.uuid4().hex  # tells this call's start notices from any other's
            queue = collections.deque(
                Task(task_id=i, experiment=spec.experiment, sweep_dir=str(sweep_dir), device=device,
                     threads=pool.threads, batched=len(g) > 1, token=token,
                     point_timeout=point_timeout,
                     points=tuple(PointTask(p.index, p.seed, p.config, p.config_hash) for p in g))
                for i, g in enumerate(groups))
            done_before = result.counts["complete"] + result.counts["failed"] - sum(
                1 for p in todo if table.status(p.config_hash) == "failed")
            progress = _Progress(len(points), done_before, f"sweep {spec.experiment}", quiet)
            _dispatch(pool, queue, table, result, progress, max_worker_deaths, stop)
        result.interrupted = stop.is_set()
        finished = True
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        # an error on its way out (a full disk, a lost scheduler) must reach the caller: a
        # second one while cleaning up only warns; the table is written whenever it can be
        failing = not finished and not result.interrupted
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        if progress is not None:
            progress.close()
        if own_pool and pool is not None:
            with _cleanup("stopping the workers", always_warn=True):
                pool.close(cancel=not finished or result.interrupted)
            if pool.stops_workers and (not finished or result.interrupted):
                with _cleanup("marking the stopped runs", failing):
                    mark_stopped_runs(sweep_dir, spec.experiment, [p.config_hash for p in todo],
                                      "the sweep was interrupted and stopped the worker running this point")
        table.reload()  # whatever reached the journal is in the table
        with _cleanup("writing sweep.parquet", failing):
            table.flush(force=True)
        result.counts = table.counts()
        result.failed_points = [p.index for p in points if table.status(p.config_hash) == "failed"]
        if report:
            result.report = _report(sweep_dir)
    return result


@contextlib.contextmanager
def _cleanup(what: str, failing: bool = False, always_warn: bool = False):
    """Run one cleanup step; its error only warns while another error is on its way out
    (``failing``) or when it cannot matter to the results (``always_warn``)."""
    try:
        yield
    except Exception as error:
        if not (failing or always_warn):
            raise
        warnings.warn(f"sweep: {what} failed: {type(error).__name__}: {error}", stacklevel=3)


def mark_stopped_runs(sweep_dir: Path, experiment: str, config_hashes, reason: str) -> int:
    """Mark run directories of ``config_hashes`` that still say ``running`` as ``interrupted``.

    Called once their workers are gone (a stopped pool, a rebuilt one): a terminated worker
    never reaches the code that marks its run, and a run left ``running`` looks alive.
    Returns how many were marked.
    """
    wanted = set(config_hashes)
    short = {digest[:8] for digest in wanted}
    marked = 0
    for run_path in (sweep_dir / "runs" / experiment).glob("*-*"):
        status_path = run_path / "status.json"
        if run_path.name.split("-")[1] not in short or not status_path.exists():
            continue
        try:
            status = json.loads(status_path.read_text())
        except (OSError, ValueError):
            continue
        if status.get("status") == "running" and status.get("config_hash") in wanted:
            status.update(status="interrupted", error=reason)
            atomic_write_text(status_path, to_json(status))
            marked += 1
    return marked


def _report(sweep_dir: Path) -> Path | None:
    """Write the sweep report; a plotting problem must not fail a finished sweep."""
    from experiments.sweep.report import write_sweep_report

    try:
        return write_sweep_report(sweep_dir)
    except Exception as error:  # noqa: BLE001 - the table is written; the report is a view of it
        warnings.warn(f"sweep report not written: {type(error).__name__}: {error}", stacklevel=2)
        return None


def _dispatch(pool, queue, table: SweepTable, result: SweepResult, progress: _Progress,
              max_worker_deaths: int, stop: threading.Event) -> None:
    window = max(2, 2 * pool.slots)
    token = queue[0].token if queue else ""
    in_flight: dict = {}
    started: dict[int, Started] = {}  # task id -> its start notice
    began: dict[int, float] = {}      # task id -> time.monotonic() when its notice was read
    deaths: collections.Counter = collections.Counter()
    idle_breaks, executed_at_break = 0, 0

    def note_started() -> None:
        now = time.monotonic()
        for notice in pool.drain_started():
            if notice.token == token:
                started[notice.task_id], began[notice.task_id] = notice, now

    def forget_start(task: Task) -> None:
        """The task is no longer running (finished, or back in the queue): stop timing it."""
        started.pop(task.task_id, None)
        began.pop(task.task_id, None)

    def requeue(task: Task) -> None:
        forget_start(task)
        queue.appendleft(task)

    def finish(task: Task, rows: list[dict]) -> None:
        forget_start(task)
        for row in rows:
            row["worker_deaths"] = deaths[task.task_id]
        table.record(rows)
        result.executed += len(rows)
        progress.update(len(rows), table.counts(), min(len(in_flight), pool.slots))

    try:
        while (queue or in_flight) and not stop.is_set():
            _check_not_lost(pool)
            submit_failed = False
            while queue and len(in_flight) < window:
                task = queue.popleft()
                try:
                    in_flight[pool.executor.submit(execute_task, task)] = task
                except BrokenProcessPool:  # a worker died since the last look
                    queue.appendleft(task)
                    submit_failed = True
                    break
                except Exception:
                    queue.appendleft(task)
                    _check_not_lost(pool)  # the scheduler went away in between
                    raise
            pool.note_processes()
            done, _ = (wait(list(in_flight), timeout=0.5, return_when=FIRST_COMPLETED)
                       if in_flight else (set(), set()))
            note_started()
            broken: list[Task] = []
            for future in done:
                task = in_flight.pop(future)
                _collect(future, task, finish, broken, requeue, deaths, max_worker_deaths)
            if broken or submit_failed:
                wait(list(in_flight), timeout=60)  # the pool fails every in-flight future
                for future, task in list(in_flight.items()):
                    in_flight.pop(future)
                    _collect(future, task, finish, broken, requeue, deaths, max_worker_deaths)
                note_started()
                pids = {t.task_id: started[t.task_id].pid if t.task_id in started else None
                        for t in broken}
                progressed = any(pid is not None for pid in pids.values()) or result.executed > executed_at_break
                idle_breaks, executed_at_break = (0 if progressed else idle_breaks + 1), result.executed
                if idle_breaks >= 3:
                    raise RuntimeError(
                        "local worker processes die before running any point (3 pools in a row); "
                        "a script that calls run_sweep must guard it with "
                        "`if __name__ == '__main__':` (workers start with the spawn method)")
                charged = pool.culprits(pids)
                for task in sorted(broken, key=lambda t: t.task_id, reverse=True):
                    if task.task_id in charged:
                        deaths[task.task_id] += 1
                    if deaths[task.task_id] > max_worker_deaths:
                        finish(task, _failed_rows(task, f"worker process died {deaths[task.task_id]} times "
                                                  "while running this point (killed or out of memory)",
                                                  None, deaths[task.task_id]))
                    else:
                        requeue(task)
                pool.rebuild()
                for task in broken:  # every old worker is gone now: none of these runs goes on
                    mark_stopped_runs(Path(task.sweep_dir), task.experiment,
                                      [p.config_hash for p in task.points],
                                      "its worker process died (killed or out of memory)"
                                      if task.task_id in charged else
                                      "the sweep stopped its worker to replace a dead one")
            _stop_overdue(pool, in_flight, started, began, finish)
    finally:
        # A local pool's queued futures are dropped by its close(cancel=True), which ends the
        # workers; one cancelled here first makes Python 3.11's pool manager thread die with a
        # traceback (InvalidStateError in terminate_broken; fixed in 3.12).
        if pool.kind != "local" and pool.lost() is None:  # a closed client cannot cancel
            for future in in_flight:
                future.cancel()


def _stop_overdue(pool, in_flight: dict, started: dict, began: dict, finish) -> None:
    """Stop and fail every in-flight task that has run past its ``point_timeout`` (per point).

    Only the current attempt is timed: an attempt the pool says is over (its Dask worker
    died, and Dask retries the task by itself) is forgotten, and its retry is timed from
    its own start notice."""
    now = time.monotonic()
    for future, task in list(in_flight.items()):
        if task.point_timeout is None or task.task_id not in began or future.done():
            continue
        seconds = now - began[task.task_id]
        if seconds <= task.point_timeout * len(task.points):
            continue
        notice = started[task.task_id]
        if not pool.still_running(notice):
            del started[task.task_id], began[task.task_id]
            continue
        del in_flight[future]
        if pool.stop_task(future, notice):  # its worker is gone: its run directories say so
            mark_stopped_runs(Path(task.sweep_dir), task.experiment,
                              [p.config_hash for p in task.points], _timeout_message(task))
        finish(task, _timed_out_rows(task, notice, seconds))


def _check_not_lost(pool) -> None:
    """Stop (RuntimeError) once ``pool`` can run nothing more: its futures would never finish."""
    reason = pool.lost()
    if reason is not None:
        raise RuntimeError(f"{reason}; the points finished so far are kept: rerun the same "
                           "command to resume")


def _collect(future, task: Task, finish, broken: list, requeue, deaths, max_worker_deaths) -> None:
    """Route one finished future: rows, a broken pool, a killed Dask worker, or an error
    (``requeue(task)`` puts a cancelled one back in the queue)."""
    try:
        rows = future.result()
    except BrokenProcessPool:
        broken.append(task)
        return
    except CancelledError:
        requeue(task)
        return
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any error outside the point itself
        # (SystemExit: a point that calls sys.exit, from a worker that does not catch it)
        if type(error).__name__ == "KilledWorker":
            deaths[task.task_id] = max_worker_deaths + 1
            finish(task, _failed_rows(task, "worker process died while running this point "
                                      f"(killed or out of memory; Dask gave up: {error})", None,
                                      deaths[task.task_id]))
            return
        finish(task, _failed_rows(task, f"{type(error).__name__}: {error}",
                                  "".join(traceback.format_exception(error))))
        return
    finish(task, rows)


