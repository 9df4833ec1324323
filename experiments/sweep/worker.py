"""What runs on a worker: one task (one point, or a batch of compatible points).

The function :func:`execute_task` is what every executor ships to its workers (a local
process, a Dask worker on this machine or on a cluster node). It never raises for a
failing point: it returns one row per point with ``status`` ``complete`` or ``failed``
(with the traceback), so a bad point cannot stop a sweep (one that calls ``sys.exit`` is a
failed point too). Only the death of the worker process itself (killed, out of memory)
loses a task; the runner retries those.

Before it runs anything, :func:`execute_task` tells the runner that the task started, with
a :class:`Started` notice (its pid and host, and a Dask worker's address): through the
local pool's queue, or as a Dask event on the topic :data:`STARTED_TOPIC`. The runner
attributes worker deaths and times ``--point-timeout`` from these notices, so a task
still queued is never timed. A Dask notice names the task's key, so that the runner can ask
the scheduler whether that attempt still runs (after a worker death Dask retries the task
elsewhere, and the retry is timed from its own notice).

A local pool's worker leads its own session and process group (``os.setsid`` in
:func:`local_worker_init`; POSIX only), and the processes a point starts (a subprocess, a
multiprocessing child, and theirs) are in that group unless they leave it: the pool ends
the group with the worker (see :class:`~experiments.sweep.executors.LocalPool`), and a worker
whose runner is gone ends its group itself. On a Dask worker a point's processes descend from
the worker process: :func:`end_descendants` (run on the worker's nanny) ends them before the
worker is restarted.

Per process, :func:`prepare_process` limits torch/BLAS threads to what the worker was
given (``OMP_NUM_THREADS`` and friends for libraries not yet loaded, ``torch.set_num_threads``
and ``threadpoolctl`` for loaded ones) and gives the process its own Cython cache
directory (``CYTHON_CACHE_DIR``, which brian2's runtime cache defaults to). Per task, a
scratch directory becomes the working directory when the worker runs one task at a time,
so brian2 standalone builds (default ``directory="output"``) never collide (brian2 issue
#1154 is about processes sharing these directories). The cache is per process rather than
per task so that compiled code is reused across the points a worker runs (our choice).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                     "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
_state: dict[str, Any] = {"threads": None, "started_queue": None}
STARTED_TOPIC = "neurobridge-sweep-task-started"  # the Dask event topic of Started notices


@dataclass(frozen=True)
class PointTask:
    """One point as shipped to a worker (the config is the resolved, picklable dataclass)."""

    index: int
    seed: int
    config: Any
    config_hash: str


@dataclass(frozen=True)
class Task:
    """A unit of work: one point, or several compatible points run by ``run_batch``."""

    task_id: int
    experiment: str
    points: tuple[PointTask, ...]
    sweep_dir: str
    device: str = "cpu"
    threads: int = 1
    batched: bool = False
    token: str = ""                     # the sweep call that submitted it (see Started)
    point_timeout: float | None = None  # seconds per point (--point-timeout); the runner enforces it


class Started(NamedTuple):
    """A worker's notice that it begins ``task_id`` (sent before the task runs)."""

    token: str            # Task.token: notices of another sweep (or an earlier call) are ignored
    task_id: int
    pid: int
    host: str
    started_utc: str
    worker: str | None    # the Dask worker's address; None in a local pool
    key: str | None = None  # the Dask task's key (one per submission); None in a local pool


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def prepare_process(threads: int) -> None:
    """Limit this process's compute threads to ``threads`` (idempotent, cheap to repeat)."""
    if _state["threads"] == threads:
        return
    for variable in _THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional: without it, already-loaded BLAS keeps its pool
            pass
        else:
            threadpool_limits(limits=threads)
    _state["threads"] = threads


def _watch_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    while True:
        time.sleep(poll_seconds)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            # the runner is gone (killed): do not linger as an orphan, nor leave the point's
            # processes running (SIGKILL to the group this worker leads ends it too)
            if hasattr(os, "killpg") and os.getpgrp() == os.getpid():
                os.killpg(os.getpid(), signal.SIGKILL)
            os._exit(3)
        except PermissionError:
            pass


def local_worker_init(parent_pid: int, threads: int, started_queue) -> None:
    """Initializer of local pool workers: own session, thread limits, orphan watchdog, start
    notices.

    Each worker calls ``os.setsid``: it leads a new session and process group, which the
    processes its points start join, so that the pool can end them with it (see the module
    docstring). Without a controlling terminal, a worker gets no terminal signals: the
    runner gets Ctrl-C and a hangup and stops the workers itself; Ctrl-Z suspends the runner
    only (its workers finish the points they run, then wait). Where ``setsid`` is missing
    (Windows) or refused, the worker stays in the runner's group and only the worker itself
    is ended.

    Workers ignore SIGINT: on Ctrl-C the runner stops them itself (where ``setsid`` did not
    take, a terminal sends SIGINT to the whole process group, and idle workers would
    otherwise die with tracebacks).
    """
    if hasattr(os, "setsid"):
        try:
            os.setsid()
        except OSError:  # already a group leader: never so for a spawned pool worker
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # tqdm's default lock is a named multiprocessing semaphore, which a worker killed
        # on Ctrl-C would leave to the resource tracker (a warning at exit); workers never
        # share a terminal bar, so a thread lock is enough
        from tqdm import tqdm

        tqdm.set_lock(threading.RLock())
    except ImportError:
        pass
    prepare_process(threads)
    _state["started_queue"] = started_queue
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="sweep-parent-watch").start()


def _dask_worker():
    """The Dask worker running this code, or None (a local pool's process, the main process)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _single_tasked() -> bool:
    """True unless this is a Dask worker that runs several tasks at once in threads."""
    try:
        worker = _dask_worker()
        return worker is None or worker.state.nthreads == 1
    except AttributeError:
        return True


def _announce(task: Task) -> None:
    """Send the runner the :class:`Started` notice of ``task`` (see module docstring)."""
    queue, worker = _state["started_queue"], None
    if queue is None:
        worker = _dask_worker()
        if worker is None:
            return  # run in the caller's process: nobody is listening
    notice = Started(task.token, task.task_id, os.getpid(), socket.gethostname(), utc_now(),
                     None if worker is None else worker.address,
                     None if worker is None else worker.get_current_task())
    if queue is not None:
        queue.put(notice)
    else:
        worker.log_event(STARTED_TOPIC, list(notice))


def end_descendants(pid: int) -> int:
    """SIGKILL every process that process ``pid`` started, directly or not; returns how many.

    Run on a Dask worker's nanny (``Client.run(..., nanny=True)``) just before the sweep
    restarts that worker, whose point timed out: the restart ends the worker process only, and
    what its point started would run on as orphans. Only the nanny's own child is looked at
    (a ``pid`` that is not, e.g. one reused since, is left alone: returns 0). A process the
    point starts between this and the restart (the point goes on until its worker is
    killed) is missed. Uses psutil, a dependency of distributed.
    """
    import psutil

    try:
        worker = psutil.Process(pid)
        if worker.ppid() != os.getpid():
            return 0
        descendants = worker.children(recursive=True)
    except psutil.Error:  # gone already
        return 0
    for process in descendants:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return len(descendants)


def _set_cython_cache(sweep_dir: Path) -> None:
    cache = sweep_dir / "scratch" / f"cython-{socket.gethostname()}-{os.getpid()}"
    os.environ["CYTHON_CACHE_DIR"] = str(cache)
    if "brian2" in sys.modules:
        sys.modules["brian2"].prefs.codegen.runtime.cython.cache_dir = str(cache / "brian_extensions")


def find_run_dir(runs_root: Path, experiment: str, config_hash: str, since: float = 0.0) -> Path | None:
    """The newest run directory of ``config_hash`` under ``runs_root/<experiment>/``."""
    import json

    parent = runs_root / experiment
    best, best_time = None, since
    for status_path in parent.glob(f"*-{config_hash[:8]}*/status.json"):
        try:
            status = json.loads(status_path.read_text())
            modified = status_path.stat().st_mtime
        except (OSError, ValueError):
            continue
        if status.get("config_hash") == config_hash and modified >= best_time:
            best, best_time = status_path.parent, modified
    return best


def _finished_run(runs_root: Path, experiment: str, config_hash: str) -> tuple[Path, dict] | None:
    """A complete run directory of ``config_hash`` and its metrics, if one exists.

    A worker killed (or a Dask task lost) after its run finished leaves such a directory;
    the retry adopts it, so no point is run twice."""
    import json

    run_dir = find_run_dir(runs_root, experiment, config_hash)
    if run_dir is None or not (run_dir / "metrics.json").exists():
        return None
    try:
        if json.loads((run_dir / "status.json").read_text()).get("status") != "complete":
            return None
        return run_dir, json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


def point_row(point: PointTask, status: str, *, metrics=None, error=None, trace=None, seconds=0.0,
              run_dir: Path | None = None, sweep_dir: Path, started: str, batch_size: int = 1) -> dict:
    """One journal row: the point's outcome, where and when it ran, its run directory."""
    return {"config_hash": point.config_hash, "point": point.index, "status": status,
            "metrics": dict(metrics or {}), "error": error, "traceback": trace,
            "seconds": float(seconds), "host": socket.gethostname(), "pid": os.getpid(),
            "run_dir": os.path.relpath(run_dir, sweep_dir) if run_dir else None,
            "started_utc": started, "finished_utc": utc_now(), "batch_size": batch_size}


def run_single(task: Task, point: PointTask) -> dict:
    """Run one point through the foundation's ``run_experiment``; never raises an Exception."""
    from experiments.runner import run_experiment

    sweep_dir = Path(task.sweep_dir)
    runs_root = sweep_dir / "runs"
    started, begin, wall_begin = utc_now(), time.perf_counter(), time.time()
    finished = _finished_run(runs_root, task.experiment, point.config_hash)
    if finished is not None:  # an earlier attempt finished but its result never came back
        run_dir, metrics = finished
        return point_row(point, "complete", metrics=metrics, run_dir=run_dir,
                         sweep_dir=sweep_dir, started=started)
    try:
        result = run_experiment(task.experiment, config=point.config, seed=point.seed,
                                out_root=runs_root, device=task.device, quiet=True)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - a failing point (sys.exit in it too)
        run_dir = find_run_dir(runs_root, task.experiment, point.config_hash, since=wall_begin - 1)
        return point_row(point, "failed", error=f"{type(error).__name__}: {error}",
                    trace=traceback.format_exc(), seconds=time.perf_counter() - begin,
                    run_dir=run_dir, sweep_dir=sweep_dir, started=started)
    return point_row(point, "complete", metrics=result.metrics, seconds=time.perf_counter() - begin,
                run_dir=result.path, sweep_dir=sweep_dir, started=started)


def execute_task(task: Task) -> list[dict]:
    """Run ``task`` on this worker and return one row per point (see module docstring)."""
    _announce(task)
    prepare_process(task.threads)
    sweep_dir = Path(task.sweep_dir)
    _set_cython_cache(sweep_dir)
    scratch = sweep_dir / "scratch" / f"task-{task.points[0].config_hash[:16]}"
    previous_cwd = None
    if _single_tasked():
        scratch.mkdir(parents=True, exist_ok=True)
        previous_cwd = os.getcwd()
        os.chdir(scratch)
    try:
        if task.batched and len(task.points) > 1:
            from experiments.sweep.batch import run_batched

            rows = run_batched(task)
        else:
            rows = [run_single(task, point) for point in task.points]
    finally:
        if previous_cwd is not None:
            os.chdir(previous_cwd)
    if all(row["status"] == "complete" for row in rows):
        shutil.rmtree(scratch, ignore_errors=True)  # keep a failed task's build files to debug
    return rows
