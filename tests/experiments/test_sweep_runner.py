"""Sweeps end to end on the local process pool and a real Dask LocalCluster.

Faults are real: a point that raises, a worker process killed with SIGKILL while it runs a
point, a runner terminated with SIGTERM and resumed. Executions are counted by run
directories: every execution of a point creates exactly one (``<UTC>-<hash8>``).
"""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main
from experiments.config import ConfigError
from experiments.hebbian_recall import Config
from experiments.runner import run_experiment
from experiments.sweep.executors import DaskPool, LocalPool
from experiments.sweep.runner import mark_stopped_runs, run_sweep
from experiments.sweep.spec import build_spec, expand
from experiments.sweep.table import load_frame, read_journal
from experiments.sweep.worker import local_worker_init

NAME = "hebbian_recall"
TINY = ["load_ratios=[1.0]", "trials=1"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_pool():
    pool = LocalPool(workers=2)
    yield pool
    pool.close()


def run_dirs(sweep_dir: Path) -> dict[str, list[dict]]:
    """``{hash8: [status, ...]}`` over every run directory of the sweep (one per execution).

    A run killed early may not have written status.json yet: its status is ``"none"``.
    """
    found: dict[str, list[dict]] = {}
    for path in (sweep_dir / "runs" / NAME).iterdir():
        status_path = path / "status.json"
        status = json.loads(status_path.read_text()) if status_path.exists() else {"status": "none"}
        status["path"] = path
        found.setdefault(path.name.split("-")[1], []).append(status)
    return found


def completed_once(sweep_dir: Path, points) -> bool:
    dirs = run_dirs(sweep_dir)
    return all(sum(s["status"] == "complete" for s in dirs.get(p.config_hash[:8], [])) == 1 for p in points)


def busy_worker(pids, sweep_dir: Path) -> int | None:
    """A pid among ``pids`` running a point of this sweep (its cwd is the task's scratch dir)."""
    for pid in pids:
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(str(sweep_dir.resolve() / "scratch" / "task-")):
                return pid
        except OSError:
            continue
    return None


def kill_busy_worker_when_running(sweep_dir: Path, pids_fn, killed: list, timeout=120.0):
    """Background killer: once a point is recorded, SIGKILL a worker that is running one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not killed:
        if read_journal(sweep_dir / "journal.jsonl"):
            pid = busy_worker(pids_fn(), sweep_dir)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.02)


FAULT = "planted fault: this point's run raises"


def _init_faulty_worker(parent_pid, threads, started_queue):
    """The local pool's worker initializer, plus a fault: hebbian_recall's run raises for
    points with ``load_ratios == (0.5,)`` (config validation rejects every value that
    would make the real experiment fail, so the failure is planted in the worker)."""
    local_worker_init(parent_pid, threads, started_queue)
    from experiments import hebbian_recall

    original = hebbian_recall.run

    def run(config, out):
        if config.load_ratios == (0.5,):
            raise ValueError(FAULT)
        return original(config, out)

    hebbian_recall.run = run


class PlantedPool(LocalPool):
    """A local pool whose workers start with ``initializer`` (the worker initializer plus a
    planted fault or hang)."""

    initializer = None

    def _start(self):
        self.started = self._context.SimpleQueue()
        self.executor = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self._context, initializer=type(self).initializer,
            initargs=(os.getpid(), self.threads, self.started))
        self._processes = {}


class FaultyPool(PlantedPool):
    initializer = staticmethod(_init_faulty_worker)


def test_failing_point_is_recorded_others_finish_and_rerun_skips(tmp_path):
    spec = build_spec(NAME, Config, grid=["key_dim=8,16", "load_ratios=[[1.0],[0.5]]"], sets=["trials=1"],
                      seed=11)
    points = expand(spec, Config)
    pool = FaultyPool(workers=2)
    try:
        result = run_sweep(spec, out=tmp_path / "s", pool=pool)
        assert result.counts == {"complete": 2, "failed": 2, "pending": 0} and result.executed == 4
        frame, meta = load_frame(result.sweep_dir)
        assert meta["swept"] == ["key_dim", "load_ratios"] and "bit_error_at_load_1" in meta["metrics"]
        assert len(frame) == 4 and list(frame["point"]) == [0, 1, 2, 3]
        failed = frame[frame["status"] == "failed"]
        assert list(failed["config.load_ratios"]) == ["[0.5]", "[0.5]"]
        assert all(e == f"ValueError: {FAULT}" for e in failed["error"])
        journal = read_journal(result.sweep_dir / "journal.jsonl")
        assert all("test_sweep_runner.py" in row["traceback"] and FAULT in row["traceback"]
                   for row in journal if row["status"] == "failed")
        for _, row in failed.iterrows():  # the failed run directory is the foundation's, marked failed
            status = json.loads((result.sweep_dir / row["run_dir"] / "status.json").read_text())
            assert status["status"] == "failed" and FAULT in status["error"]
        # oracle: each complete point has the metrics of a plain `neuro run` with its seed
        for point in points:
            row = frame[frame["config_hash"] == point.config_hash].iloc[0]
            if row["status"] == "complete":
                direct = run_experiment(NAME, config=point.config, seed=point.seed, out_root=tmp_path / "direct")
                for name, value in direct.metrics.items():
                    assert row[f"metric.{name}"] == value
                assert row["seconds"] > 0 and row["host"] and row["worker_deaths"] == 0
        assert (result.sweep_dir / "report.html").exists() and result.report is not None
        assert len(list((result.sweep_dir / "figures").glob("*.png"))) == 3  # one heatmap per metric

        again = run_sweep(spec, out=tmp_path / "s", pool=pool)
        assert (again.executed, again.skipped) == (0, 4)
        retried = run_sweep(spec, out=tmp_path / "s", pool=pool, retry_failed=True)
        assert (retried.executed, retried.skipped) == (2, 2)
    finally:
        pool.close()
    dirs = run_dirs(result.sweep_dir)
    executions = Counter({h: len(v) for h, v in dirs.items()})
    for point in points:  # complete points ran once; failing ones twice (first run + retry)
        assert executions[point.config_hash[:8]] == (2 if point.overrides["load_ratios"] == (0.5,) else 1)


def test_an_empty_or_nested_tuple_value_is_refused_before_the_sweep_starts(tmp_path):
    for value, message in (("[[1.0],[]]", "load_ratios: empty list"),
                           ("[[[1.0]]]", "load_ratios: nested list")):
        with pytest.raises(ConfigError, match=message):
            build_spec(NAME, Config, grid=["key_dim=8", f"load_ratios={value}"])


def test_worker_killed_mid_point_is_retried_and_every_point_completes_once(tmp_path, local_pool):
    spec = build_spec(NAME, Config, grid=["key_dim=24,32,40,48,56,64"], sets=["trials=60"], seed=2)
    points = expand(spec, Config)
    killed: list[int] = []
    def children():  # the local pool's workers are this process's multiprocessing children
        return [p.pid for p in multiprocessing.active_children()]

    killer = threading.Thread(target=kill_busy_worker_when_running,
                              args=(tmp_path / "s", children, killed), daemon=True)
    killer.start()
    result = run_sweep(spec, out=tmp_path / "s", pool=local_pool)
    killer.join()
    assert killed, "no busy worker was found to kill"
    assert result.counts == {"complete": 6, "failed": 0, "pending": 0}
    assert completed_once(result.sweep_dir, points)
    frame, _ = load_frame(result.sweep_dir)
    # only the point whose worker was SIGKILLed is charged; its batch-mate was terminated by
    # the pool's cleanup (SIGTERM) and requeued without a charge
    assert frame["worker_deaths"].sum() == 1
    statuses = [s for v in run_dirs(result.sweep_dir).values() for s in v]
    incomplete = [s for s in statuses if s["status"] != "complete"]
    assert len(incomplete) >= 1  # the killed run is visibly incomplete
    # the pool rebuild ended every old worker: no run directory still claims to be running
    assert all(s["status"] in ("interrupted", "none") for s in incomplete), incomplete


def test_terminated_runner_resumes_without_rerunning_finished_points(tmp_path, local_pool):
    grid = "key_dim=8,12,16,20,24,28,32,36"
    out = tmp_path / "s"
    command = [sys.executable, "-m", "experiments.cli", "sweep", NAME, "--grid", grid,
               "--set", "trials=20", "--workers", "2", "--out", str(out), "--quiet"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(read_journal(out / "journal.jsonl")) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()  # was 1, as for a failed point
    assert b"interrupted" in stderr and b"leaked" not in stderr
    # the workers it stopped never mark their runs; the runner marks them once they are gone
    stopped = [s for v in run_dirs(out).values() for s in v if s["status"] not in ("complete", "none")]
    assert all(s["status"] == "interrupted" and "sweep was interrupted" in s["error"]
               for s in stopped), stopped
    before = {row["config_hash"]: row["run_dir"] for row in read_journal(out / "journal.jsonl")
              if row["status"] == "complete"}
    frame, _ = load_frame(out)  # the table was flushed on SIGTERM and agrees with the journal
    assert set(frame.loc[frame["status"] == "complete", "config_hash"]) == set(before)
    assert 2 <= len(before) < 8

    # A point can finish its run directory after the last journal row was written: the
    # rerun adopts it too (never runs it twice), so count finished runs on disk.
    finished = sum(any(s["status"] == "complete" for s in runs) for runs in run_dirs(out).values())
    assert finished >= len(before)
    spec = build_spec(NAME, Config, grid=[grid], sets=["trials=20"])
    points = expand(spec, Config)
    result = run_sweep(spec, out=out, pool=local_pool)
    assert result.skipped == finished and result.executed == 8 - finished
    assert result.counts["complete"] == 8 and completed_once(out, points)
    for digest, run_dir in before.items():  # finished points kept their one and only run
        assert [s["path"] for s in run_dirs(out)[digest[:8]]] == [out / run_dir]


def test_mark_stopped_runs_marks_only_running_dirs_of_the_given_points(tmp_path):
    parent = tmp_path / "runs" / NAME
    a, b = "a" * 64, "b" * 64
    for name, digest, state in (("20250101T000000Z-aaaaaaaa", a, "running"),
                                ("20250101T000001Z-aaaaaaaa-1", a, "complete"),
                                ("20250101T000002Z-bbbbbbbb", b, "running")):
        (parent / name).mkdir(parents=True)
        (parent / name / "status.json").write_text(json.dumps({"config_hash": digest, "status": state}))
    assert mark_stopped_runs(tmp_path, NAME, [a], "stopped") == 1
    states = {p.name: json.loads((p / "status.json").read_text()) for p in parent.iterdir()}
    assert states["20250101T000000Z-aaaaaaaa"] == {"config_hash": a, "status": "interrupted", "error": "stopped"}
    assert states["20250101T000001Z-aaaaaaaa-1"]["status"] == "complete"
    assert states["20250101T000002Z-bbbbbbbb"]["status"] == "running"  # not one of the points


def test_interrupted_sweep_exits_130_keeps_finished_points_and_resumes(tmp_path, monkeypatch, capsys):
    from experiments.sweep import runner

    real_dispatch = runner._dispatch

    def one_point_then_sigterm(pool, queue, table, result, progress, max_worker_deaths, stop):
        first = type(queue)([queue.popleft()])
        real_dispatch(pool, first, table, result, progress, max_worker_deaths, stop)
        stop.set()  # what the runner's SIGTERM / Ctrl-C handler does, between two records
        real_dispatch(pool, queue, table, result, progress, max_worker_deaths, stop)

    argv = ["sweep", NAME, "--grid", "key_dim=8,12,16", "--set", "load_ratios=[1.0]", "--set",
            "trials=1", "--workers", "1", "--out", str(tmp_path / "s"), "--quiet"]
    monkeypatch.setattr(runner, "_dispatch", one_point_then_sigterm)
    assert main(argv) == 130  # was 1, the code of a failed point
    captured = capsys.readouterr()
    assert "1 complete, 0 failed, 2 pending (1 run now, 0 already done)" in captured.out
    assert captured.err.strip() == "interrupted: rerun the same command to resume"
    assert [row["status"] for row in read_journal(tmp_path / "s" / "journal.jsonl")] == ["complete"]
    monkeypatch.setattr(runner, "_dispatch", real_dispatch)
    assert main(argv) == 0
    assert "3 complete, 0 failed, 0 pending (2 run now, 1 already done)" in capsys.readouterr().out


def _init_stuck_worker(parent_pid, threads, started_queue):
    """The local pool's worker initializer, plus a planted hang: every point's run sleeps
    until the sweep stops the worker."""
    local_worker_init(parent_pid, threads, started_queue)
    from experiments import hebbian_recall

    def run(config, out):
        time.sleep(600)

    hebbian_recall.run = run


class StuckPool(PlantedPool):
    initializer = staticmethod(_init_stuck_worker)


def test_interrupting_a_local_sweep_with_queued_points_prints_no_thread_traceback(tmp_path, monkeypatch):
    # 6 points on 2 workers: 4 in flight, one of them still queued in the pool when Ctrl-C
    # comes. Cancelling it before the workers were stopped made Python 3.11's pool manager
    # thread die with InvalidStateError, printed as a traceback under the interrupt message.
    from experiments.sweep import runner

    crashed = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(args.exc_value))
    monkeypatch.setattr(runner, "open_pool", lambda *args, **kwargs: StuckPool(workers=2))
    real_dispatch = runner._dispatch

    class CtrlCAfterFirstPass:
        """The runner's stop flag, set (as its Ctrl-C handler does) at the second look."""

        def __init__(self, stop):
            self.stop, self.looks = stop, 0

        def is_set(self):
            self.looks += 1
            if self.looks > 1:
                self.stop.set()
            return self.stop.is_set()

    def dispatch(pool, queue, table, result, progress, max_worker_deaths, stop):
        real_dispatch(pool, queue, table, result, progress, max_worker_deaths, CtrlCAfterFirstPass(stop))

    monkeypatch.setattr(runner, "_dispatch", dispatch)
    spec = build_spec(NAME, Config, grid=["key_dim=8,12,16,20,24,28"], sets=TINY)
    result = run_sweep(spec, out=tmp_path / "s", workers=2, report=False)
    assert result.interrupted and result.counts == {"complete": 0, "failed": 0, "pending": 6}
    assert crashed == []


def test_sweep_show_prints_the_table(tmp_path, capsys):
    assert main(["sweep", NAME, "--grid", "key_dim=8,16", "--set", "load_ratios=[1.0]", "--set",
                 "trials=1", "--repeats", "2", "--workers", "1", "--out", str(tmp_path / "s"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4 complete, 0 failed, 0 pending (4 run now, 0 already done) on local process pool, 1 worker x" in out
    assert main(["sweep-show", str(tmp_path / "s")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["point", "repeat", "seed", "key_dim", "status", "max_abs_deviation_from_theory"]
    assert lines[-1] == "4 rows: 4 complete, 0 failed, 0 pending"
    report = (tmp_path / "s" / "report.html").read_text()
    assert report.count("<img") == 3 and "mean +- 1 s.d. over repeats" in report


# --- Dask ------------------------------------------------------------------------------------

def test_dask_local_cluster_matches_the_local_pool(tmp_path, local_pool, dask_pool):
    assert "LocalCluster on 127.0.0.1, 2 workers" in dask_pool.description
    assert len(dask_pool.worker_pids()) == 2
    spec = build_spec(NAME, Config, grid=["key_dim=8,16"], sets=TINY[:1], zip=["trials=1,3",
                      "value_dim=16,4"], repeats=2, seed=4)
    local = run_sweep(spec, out=tmp_path / "local", pool=local_pool, report=False)
    dask = run_sweep(spec, out=tmp_path / "dask", pool=dask_pool, report=False)
    assert local.counts == dask.counts == {"complete": 8, "failed": 0, "pending": 0}
    a, meta = load_frame(local.sweep_dir)
    b, _ = load_frame(dask.sweep_dir)
    columns = ["point", "seed", "config_hash"] + [c for c in a if c.startswith(("config.", "metric."))]
    pd.testing.assert_frame_equal(a[columns], b[columns], check_exact=True)  # same seeds: identical
    assert len(meta["metrics"]) == 3
    # --scheduler: a second client on the same (now "existing") scheduler gives the same table
    from experiments.sweep.executors import open_pool

    existing = open_pool("dask", scheduler=dask_pool.cluster.scheduler_address)
    try:
        assert existing.slots == 2 and existing.threads == 1
        via_address = run_sweep(spec, out=tmp_path / "address", pool=existing, report=False)
    finally:
        existing.close()
    c, _ = load_frame(via_address.sweep_dir)
    pd.testing.assert_frame_equal(a[columns], c[columns], check_exact=True)


def test_dask_worker_killed_mid_point_is_rescheduled(tmp_path, dask_pool):
    spec = build_spec(NAME, Config, grid=["key_dim=24,32,40,48,56,64"], sets=["trials=60"], seed=3)
    points = expand(spec, Config)
    killed: list[int] = []
    killer = threading.Thread(target=kill_busy_worker_when_running,
                              args=(tmp_path / "s", lambda: list(dask_pool.worker_pids().values()), killed),
                              daemon=True)
    killer.start()
    result = run_sweep(spec, out=tmp_path / "s", pool=dask_pool, report=False)
    killer.join()
    assert killed, "no busy worker was found to kill"
    assert result.counts == {"complete": 6, "failed": 0, "pending": 0}
    assert completed_once(result.sweep_dir, points)
    statuses = [s["status"] for v in run_dirs(result.sweep_dir).values() for s in v]
    assert len(statuses) - statuses.count("complete") >= 1  # the killed run is visibly incomplete


# --- faults found in review: sys.exit in a point, a racing runner, a lost scheduler, a full disk ---

def _init_exiting_worker(parent_pid, threads, started_queue):
    """The local pool's worker initializer, plus a fault: hebbian_recall's run calls
    ``sys.exit(0)`` for points with ``load_ratios == (0.5,)`` (as some libraries do on errors)."""
    local_worker_init(parent_pid, threads, started_queue)
    from experiments import hebbian_recall

    original = hebbian_recall.run

    def run(config, out):
        if config.load_ratios == (0.5,):
            sys.exit(0)
        return original(config, out)

    hebbian_recall.run = run


class ExitingPool(PlantedPool):
    initializer = staticmethod(_init_exiting_worker)


def test_a_point_that_calls_sys_exit_is_a_failed_point_and_the_others_finish(tmp_path):
    spec = build_spec(NAME, Config, grid=["load_ratios=[[1.0],[0.5]]"], sets=["trials=1"])
    pool = ExitingPool(workers=1)
    try:  # was: run_sweep raised SystemExit(0), so `neuro sweep` stopped with exit code 0
        result = run_sweep(spec, out=tmp_path / "s", pool=pool, report=False)
    finally:
        pool.close()
    assert result.counts == {"complete": 1, "failed": 1, "pending": 0}
    failed = [row for row in read_journal(result.sweep_dir / "journal.jsonl") if row["status"] == "failed"]
    assert [row["error"] for row in failed] == ["SystemExit: 0"]
    assert all("sys.exit(0)" in row["traceback"] for row in failed)


def test_a_runner_refused_for_the_lock_leaves_the_directory_untouched(tmp_path):
    # Two runners started at once with different specs into one --out both found no
    # sweep.yaml, both wrote theirs, and the one refused for the lock could leave its spec
    # under the other's running sweep (whose resume was then refused as "a different sweep")
    fcntl = pytest.importorskip("fcntl", reason="flock is POSIX-only")
    out = tmp_path / "s"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # the first runner has the lock, its spec not yet written
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another runner is working on"):
            run_sweep(build_spec(NAME, Config, grid=["key_dim=8,16"]), out=out)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


class LostSchedulerPool(DaskPool):
    """A Dask pool whose scheduler is gone once a point is submitted: the point's future never
    finishes and the client closes (as distributed's does when it cannot reconnect)."""

    def __init__(self):  # no cluster: only what the sweep uses
        import types
        from concurrent.futures import Future

        self.client = types.SimpleNamespace(status="running")
        self.cluster, self.slots, self.threads, self.stops_workers = None, 1, 1, False
        self.description = "dask scheduler (lost)"

        def submit(fn, *args):
            self.client.status = "closed"
            return Future()

        self.executor = types.SimpleNamespace(submit=submit)

    def drain_started(self):
        return []  # no worker ever starts a point


def test_a_lost_dask_scheduler_stops_the_sweep_with_a_clear_error(tmp_path):
    spec = build_spec(NAME, Config, grid=["key_dim=8,16"], sets=TINY)
    outcome = {}

    def sweep():
        try:
            outcome["result"] = run_sweep(spec, out=tmp_path / "s", pool=LostSchedulerPool(), report=False)
        except Exception as error:  # noqa: BLE001 - the test looks at it
            outcome["error"] = error

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the sweep waits forever on a scheduler that is gone"
    assert isinstance(outcome.get("error"), RuntimeError)
    assert str(outcome["error"]).startswith("lost the Dask scheduler (its client is closed); the "
                                            "points finished so far are kept: rerun the same command")
    frame, _ = load_frame(tmp_path / "s")  # the table is written on the way out
    assert list(frame["status"]) == ["pending", "pending"]


def test_a_full_disk_stops_the_sweep_with_one_line_and_keeps_finished_points(tmp_path, monkeypatch, capsys):
    import errno

    from experiments.sweep.table import SweepTable

    real_record, recorded = SweepTable.record, []

    def record(self, rows):
        if rows and recorded:
            raise OSError(errno.ENOSPC, "No space left on device")
        recorded.extend(rows)
        real_record(self, rows)

    def flush(self, force=False):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SweepTable, "record", record)
    monkeypatch.setattr(SweepTable, "flush", flush)
    argv = ["sweep", NAME, "--grid", "key_dim=8,12", *(a for kv in TINY for a in ("--set", kv)),
            "--workers", "1", "--out", str(tmp_path / "s"), "--quiet"]
    with pytest.warns(UserWarning) as warned:  # the table and report cannot be written either
        assert main(argv) == 1  # was an OSError traceback (three, chained), exit 1
    assert any("writing sweep.parquet failed" in str(w.message) for w in warned)
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == ("neuro: sweep stopped: [Errno 28] No space left on device; the "
                                    "points finished so far are kept: rerun the same command to resume")
    assert [row["status"] for row in read_journal(tmp_path / "s" / "journal.jsonl")] == ["complete"]
    monkeypatch.undo()
    assert main(argv) == 0
    assert "2 complete, 0 failed, 0 pending (1 run now, 1 already done)" in capsys.readouterr().out


def test_a_sweep_that_ends_with_pending_points_exits_1(tmp_path, monkeypatch, capsys):
    from experiments.sweep import runner

    def ends_with_a_pending_point(spec, **kwargs):
        return runner.SweepResult(sweep_dir=tmp_path, executed=2,
                                  counts={"complete": 2, "failed": 0, "pending": 1})

    monkeypatch.setattr(runner, "run_sweep", ends_with_a_pending_point)
    assert main(["sweep", NAME, "--grid", "key_dim=8,12,16", "--out", str(tmp_path), "--quiet"]) == 1  # was 0
    assert capsys.readouterr().err.strip() == "pending points: 1 (rerun the same command to run them)"
