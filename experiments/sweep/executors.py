"""Executors a sweep runs on: all are ``concurrent.futures.Executor``s behind one handle.

* ``local`` (default): a ``ProcessPoolExecutor`` of ``workers`` processes (``spawn`` start
  method: no fork of a parent holding torch/OpenMP threads). Each worker gets
  ``cpus // workers`` compute threads unless ``threads_per_task`` says otherwise. If a worker dies (killed, out of memory) the pool
  breaks; :meth:`LocalPool.rebuild` starts a fresh one and :meth:`LocalPool.culprits`
  tells which in-flight tasks ran in the process that died on its own (the others were
  terminated by the pool's cleanup with SIGTERM), so only those are charged a death.
  :meth:`LocalPool.stop_task` ends the worker process running a task that ran past
  ``--point-timeout`` (the pool then breaks and is rebuilt as for a death). Each worker leads
  its own process group (see :func:`~experiments.sweep.worker.local_worker_init`), which holds
  the processes its points start: the timed-out worker's group gets SIGTERM with it and
  SIGKILL once it is gone, and when the pool closes (or is rebuilt) every group of its
  workers gets SIGKILL once they are gone, so no process a point started outlives the pool
  (one that left the group, e.g. with ``start_new_session=True``, is not reached). On Windows
  (no process groups) only the worker processes are ended.
* ``dask`` with ``scheduler``: ``Client(address).get_executor()`` on an existing cluster.
* ``dask`` alone: an embedded ``LocalCluster`` on 127.0.0.1 (``workers`` processes, one
  thread each, no dashboard).
* ``dask`` with ``cluster_file``: a ``dask_jobqueue`` SLURM or PBS cluster described by a
  YAML file (see :mod:`experiments.sweep.jobqueue`).

Dask retries a task whose worker died on another worker by itself (up to
``distributed.scheduler.allowed-failures``, then ``KilledWorker``). A Dask client that lost
its scheduler for good closes; :meth:`DaskPool.lost` says so and the sweep stops.

Both pools hand the runner the workers' :class:`~experiments.sweep.worker.Started` notices
(:meth:`drain_started`). Dask cannot stop a running task: :meth:`DaskPool.stop_task`
cancels its future, and in a cluster the sweep started itself (LocalCluster, jobqueue:
every worker has a nanny and runs one point at a time) restarts the worker that runs it
(``Client.restart_workers``: its nanny gives it 4 s to close, then kills it; Dask
reschedules the tasks it had queued there, as after a worker death). The restart ends the
worker process only, so first its nanny SIGKILLs the processes the point started
(:func:`~experiments.sweep.worker.end_descendants`). On an existing scheduler the workers
are not the sweep's to restart: the point's thread (and whatever it started) runs on until
the point returns, and its worker has one thread fewer meanwhile, so tasks Dask queues
there wait (a warning says so; restart the worker to free it). Closing a cluster with
points still running (an interrupted sweep) ends its workers, not what their points
started: a jobqueue job's processes end with the job, a LocalCluster's run on.

Because Dask retries a task on its own, a timed-out notice may be stale: before stopping
a task, the runner asks :meth:`DaskPool.still_running` whether the attempt that notice
announced still runs (the scheduler still has the task on that worker); if its worker
died, the retry is timed from its own notice.
"""
from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import re
import signal
import time
import warnings
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing.connection import wait as wait_ready
from typing import Any

from experiments.config import ConfigError
from experiments.sweep.worker import STARTED_TOPIC, Started, end_descendants, local_worker_init

SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")  # what distributed's Client connects over


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS / Windows
        return max(1, os.cpu_count() or 1)


def _signal_group(pid: int, signal_name: str) -> None:
    """Send signal ``signal_name`` to the process group that local worker ``pid`` leads: the worker and
    the processes its points started. Nothing happens where there are no process groups
    (Windows), for no such group (the worker did not lead one, or all of it is gone), or
    for the runner's own group.

    A group's id is its leader's pid and is not reused while any member lives; an empty
    group's id could be reused only after the kernel's pid counter wrapped around, and the
    pool signals a group at most seconds after its worker ended."""
    if not hasattr(os, "killpg") or pid in (os.getpid(), os.getpgrp()):
        return
    try:
        os.killpg(pid, getattr(signal, signal_name))
    except (ProcessLookupError, PermissionError):
        pass


class LocalPool:
    """A rebuildable local process pool (see module docstring)."""

    kind = "local"
    stops_workers = True  # close(cancel=True) ends every worker: no run goes on after it

    def __init__(self, workers: int | None = None, threads: int | None = None):
        cpus = available_cpus()
        self.workers = workers or cpus
        if self.workers < 1:
            raise ConfigError(f"--workers {workers!r}: expected a whole number >= 1")
        self.threads = threads or max(1, cpus // self.workers)
        self.slots = self.workers
        self.description = (f"local process pool, {self.workers} worker{'s' * (self.workers > 1)} x "
                            f"{self.threads} thread{'s' * (self.threads > 1)}")
        self._context = multiprocessing.get_context("spawn")
        self.executor: Executor
        self._processes: dict[int, Any] = {}
        self._start()

    def _start(self) -> None:
        self.started = self._context.SimpleQueue()
        self.executor = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self._context, initializer=local_worker_init,
            initargs=(os.getpid(), self.threads, self.started))
        self._processes = {}

    def note_processes(self) -> None:
        """Remember the pool's worker processes (to read their exit codes after a break)."""
        if self.executor is not None:
            self._processes.update(getattr(self.executor, "_processes", None) or {})

    def drain_started(self) -> list[Started]:
        """The notices of tasks that started since the last call (of any sweep on this pool)."""
        notices = []
        while not self.started.empty():
            notices.append(self.started.get())
        return notices

    def still_running(self, started: Started) -> bool:
        """Whether the attempt ``started`` announced still runs: always, as far as the pool
        knows (a local task is retried only by the runner, which drops its notice then)."""
        return True

    def stop_task(self, future: Future, started: Started) -> bool:
        """End the worker process running a task (it ran past ``--point-timeout``) and the
        processes its point started (its process group: SIGTERM with the worker, SIGKILL once
        the worker is gone or after 5 s); True once the worker is gone. The pool breaks: the
        runner rebuilds it and resubmits the other tasks."""
        self.note_processes()
        process = self._processes.get(started.pid)
        if process is None:  # not one of this pool's workers (never expected)
            return False
        # the pool's manager thread reaps its dead workers concurrently, so ask the process's
        # sentinel (ready once it has exited) rather than join() / is_alive()
        process.terminate()
        _signal_group(started.pid, "SIGTERM")
        if not wait_ready([process.sentinel], 5):  # SIGTERM handled or ignored by the point's code
            process.kill()
        _signal_group(started.pid, "SIGKILL")  # what is left of the point's processes
        return bool(wait_ready([process.sentinel], 5))

    def culprits(self, in_flight_pids: dict[int, int | None]) -> set[int]:
        """Task ids (of ``{task_id: pid or None}``) whose worker died on its own.

        A worker the pool terminated during cleanup exits with ``-SIGTERM``; any other
        exit code (``-SIGKILL`` from the OOM killer or ``kill -9``, a segfault, an
        ``os._exit``) marks its task. A task that never started is not charged; one whose
        worker's exit code cannot be read is.
        """
        charged = set()
        for task_id, pid in in_flight_pids.items():
            if pid is None:
                continue  # never started: still in the pool's queue when it broke
            process = self._processes.get(pid)
            if process is None:
                charged.add(task_id)
                continue
            process.join(timeout=5)
            exitcode = process.exitcode
            for _ in range(100):  # the pool's manager thread may be reaping it concurrently
                if exitcode is not None:
                    break
                time.sleep(0.05)
                exitcode = process.exitcode
            if exitcode != -signal.SIGTERM:
                charged.add(task_id)
        return charged

    def rebuild(self) -> None:
        self.close(cancel=True)
        self._start()

    def lost(self) -> str | None:
        """Why this pool can run nothing more, or None: a local pool is rebuilt instead."""
        return None

    def close(self, cancel: bool = False) -> None:
        """Shut the pool down; ``cancel``: end the workers now (SIGTERM, SIGKILL after 5 s)
        instead of letting them finish their tasks. Then every worker's process group gets
        SIGKILL: no process a point started (and left running) outlives the pool."""
        self.note_processes()
        if cancel:
            for pid, process in self._processes.items():
                if process.is_alive():
                    process.terminate()  # the sweep runner marks its run directory "interrupted"
                    _signal_group(pid, "SIGTERM")
            for process in self._processes.values():
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()
                    process.join(timeout=5)
        # with every worker gone the pool's manager thread finds it broken and ends at once;
        # waiting for it releases the pool's queues (no leaked semaphores at exit)
        self.executor.shutdown(wait=True, cancel_futures=cancel)
        for pid in self._processes:
            _signal_group(pid, "SIGKILL")
        # drop the queues now: their semaphores are released only when garbage collected,
        # and an interrupted sweep's traceback can keep this object alive until exit
        self.executor = self.started = None


class DaskPool:
    """A Dask client's executor (existing scheduler, embedded LocalCluster or jobqueue)."""

    kind = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None,
                 cluster_file: str | None = None, threads_per_task: int | None = None, *,
                 cluster_settings: dict[str, Any] | None = None):
        """``cluster_settings``: ``cluster_file`` as :func:`check_pool_options` returned it
        (read and checked once); None: read here and checked before the jobs are submitted."""
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--executor dask needs the 'cluster' extra: "
                              "pip install 'neurobridge[cluster]' (dask, distributed, dask-jobqueue)") from None
        self.cluster = None
        submit_options: dict[str, Any] = {"pure": False}
        if cluster_file:
            from experiments.sweep.jobqueue import load_cluster_config, start_jobqueue_cluster

            settings = (load_cluster_config(cluster_file) if cluster_settings is None
                        else cluster_settings)
            self.cluster = start_jobqueue_cluster(settings, cluster_file)
            self.client = Client(self.cluster)
            self.threads = settings["threads_per_task"]
            self.slots = settings["expected_workers"]
            if self.threads > 1:
                submit_options["resources"] = {"task_slot": 1}
            self.description = (f"dask-jobqueue {settings['kind']} cluster "
                                f"({self.slots} workers x {self.threads} threads)")
        elif scheduler:
            try:
                self.client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as error:
                raise ConfigError(f"--scheduler {scheduler!r}: cannot connect ({error})") from None
            nthreads = self.client.nthreads()
            self.slots = max(1, sum(nthreads.values()))
            self.threads = threads_per_task or 1
            self.description = f"dask scheduler {scheduler} ({len(nthreads)} workers, {self.slots} threads)"
        else:
            count = workers or available_cpus()
            self.threads = threads_per_task or max(1, available_cpus() // count)
            self.cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address=None,
                                        silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            self.slots = count
            self.description = f"dask LocalCluster on 127.0.0.1, {count} workers x {self.threads} threads"
        self.executor = self.client.get_executor(**submit_options)
        # closing a cluster we started ends its workers; an existing scheduler's keep running
        self.stops_workers = self.cluster is not None
        self._started: collections.deque[Started] = collections.deque()
        self.client.subscribe_topic(STARTED_TOPIC,
                                    lambda event: self._started.append(Started(*event[1])))

    def worker_pids(self) -> dict[str, int]:
        """``{worker address: pid}`` of the workers connected now."""
        return self.client.run(os.getpid)

    def note_processes(self) -> None:
        pass

    def drain_started(self) -> list[Started]:
        """The notices of tasks that started since the last call (of any client's sweep)."""
        notices = []
        while self._started:
            notices.append(self._started.popleft())
        return notices

    def still_running(self, started: Started) -> bool:
        """Whether the attempt ``started`` announced still runs: the scheduler still has its
        task processing on that worker. False once the worker is gone (died: Dask retries the
        task elsewhere, and the retry sends a notice of its own). True when the scheduler
        cannot be asked, or the notice names no task key (a worker of an older version)."""
        if started.worker is None or started.key is None:
            return True
        try:  # all workers: asking for one the scheduler no longer knows logs an error there
            processing = self.client.processing()
        except (OSError, TimeoutError):
            return True
        return started.key in processing.get(started.worker, ())

    def stop_task(self, future: Future, started: Started) -> bool:
        """Cancel a task that ran past ``--point-timeout`` and, in a cluster the sweep started,
        end the processes its point started and restart the worker running it; True once that
        worker process is gone."""
        future.cancel()
        if self.cluster is not None and started.worker is not None:
            self._end_descendants(started)
            try:
                status = self.client.restart_workers([started.worker], timeout=60,
                                                     raise_for_error=False)
            except KeyError:  # the scheduler no longer knows the worker: it died meanwhile
                return True
            except (ValueError, OSError, TimeoutError) as error:  # ValueError: no nanny
                reason = f"restarting it failed: {error}"
            else:
                if status.get(started.worker) == "OK":
                    return True
                reason = f"restarting it failed: {status.get(started.worker)}"
        else:
            reason = "its worker belongs to an existing scheduler and is not restarted"
        warnings.warn(f"sweep: task {started.task_id} timed out on Dask worker {started.worker}; "
                      f"Dask cannot stop a running task and {reason}, so its thread runs on until "
                      "the point returns", stacklevel=2)
        return False

    def _end_descendants(self, started: Started) -> None:
        """Have the nanny of ``started.worker`` SIGKILL what the point started (see
        :func:`~experiments.sweep.worker.end_descendants`); a warning names a failure."""
        try:
            self.client.run(end_descendants, started.pid, workers=[started.worker], nanny=True)
        except Exception as error:  # noqa: BLE001 - any failure there: the restart goes ahead
            warnings.warn(f"sweep: task {started.task_id} timed out on Dask worker {started.worker}; "
                          f"the processes its point started may run on: ending them failed "
                          f"({type(error).__name__}: {error})", stacklevel=3)

    def lost(self) -> str | None:
        """Why this pool can run nothing more, or None. A client that lost its scheduler
        (killed, out of walltime) tries to reconnect, then closes; its futures never finish."""
        status = getattr(self.client, "status", "running")
        if status in ("closing", "closed"):
            return f"lost the Dask scheduler (its client is {status})"
        return None

    def close(self, cancel: bool = False) -> None:
        try:
            if self.lost() is None:  # a closed client cannot cancel its futures
                self.executor.shutdown(wait=not cancel)
        finally:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()


def check_pool_options(executor: str = "local", workers: int | None = None, scheduler: str | None = None,
                       cluster_file: str | None = None, threads_per_task: int | None = None, *,
                       cluster_settings: dict[str, Any] | None = None,
                       check_submit: bool = True) -> dict[str, Any] | None:
    """Reject bad executor options before anything is created (no connection is made).

    With ``cluster_file``, returns its settings, read and checked (its submit command is on
    PATH: :func:`~experiments.sweep.jobqueue.check_submit_command`, unless ``check_submit``
    is False, as for ``--dry-run`` on a machine without the batch system); pass them on as
    ``cluster_settings`` (here, to :func:`open_pool`) and they are not read or checked again."""
    if executor not in ("local", "dask"):
        raise ConfigError(f"--executor {executor!r}: choose one of ['local', 'dask']")
    for name, value in (("--workers", workers), ("--threads-per-task", threads_per_task)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} {value!r}: expected a whole number >= 1")
    if executor == "local" and (scheduler or cluster_file):
        raise ConfigError("--scheduler/--cluster need --executor dask")
    if scheduler and cluster_file:
        raise ConfigError("--scheduler and --cluster exclude each other: use an existing "
                          "scheduler or let the sweep start a cluster, not both")
    # what the cluster file or the scheduler decides cannot be given on the command line too:
    # it would be ignored without a word
    if cluster_file and (workers is not None or threads_per_task is not None):
        given = "--workers" if workers is not None else "--threads-per-task"
        raise ConfigError(f"{given} does not apply with --cluster: the cluster file sets the workers "
                          "(cores, jobs or maximum_jobs) and threads_per_task")
    if scheduler and workers is not None:
        raise ConfigError("--workers does not apply with --scheduler: the existing scheduler's "
                          "workers run the points")
    if scheduler is not None:
        check_scheduler_address(scheduler)
    if not cluster_file:
        return None
    if cluster_settings is not None:
        return cluster_settings
    from experiments.sweep.jobqueue import check_submit_command, load_cluster_config

    settings = load_cluster_config(cluster_file)
    return check_submit_command(settings, cluster_file) if check_submit else settings


_SCHEDULER_ADDRESS = re.compile(r"(?:(?P<scheme>[A-Za-z]+)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+)"
                                r":(?P<port>\d+)")


def check_scheduler_address(address: str) -> None:
    """A Dask scheduler address: ``[SCHEME://]HOST:PORT`` with a scheme Dask connects over."""
    match = _SCHEDULER_ADDRESS.fullmatch(str(address).strip())
    allowed = ("expected [SCHEME://]HOST:PORT, e.g. tcp://10.0.0.5:8786, with SCHEME one of "
               f"{list(SCHEDULER_SCHEMES)}")
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ConfigError(f"--scheduler {address!r}: {allowed}")
    if (match["scheme"] or "tcp").lower() not in SCHEDULER_SCHEMES:
        raise ConfigError(f"--scheduler {address!r}: unknown scheme {match['scheme']!r}; {allowed}")


def open_pool(executor: str = "local", workers: int | None = None, scheduler: str | None = None,
              cluster_file: str | None = None, threads_per_task: int | None = None, *,
              cluster_settings: dict[str, Any] | None = None):
    """Start the pool a sweep runs on; ``executor`` is ``local`` or ``dask``.

    ``cluster_settings``: what :func:`check_pool_options` returned for ``cluster_file``
    (not read or checked again); None: read and checked here."""
    cluster_settings = check_pool_options(executor, workers, scheduler, cluster_file,
                                          threads_per_task, cluster_settings=cluster_settings)
    if executor == "local":
        return LocalPool(workers, threads_per_task)
    return DaskPool(workers, scheduler, cluster_file, threads_per_task,
                    cluster_settings=cluster_settings)
