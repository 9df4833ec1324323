"""--point-timeout: a point that runs too long is stopped and failed; the others go on.

Hangs are planted as in test_sweep_runner.py: the workers start with an initializer that
wraps the experiment's ``run`` (``run_batch``) to sleep first, for as many seconds as the
JSON file named by ``$SWEEP_TEST_SLEEPS`` gives its ``key_dim`` (``drive``); an entry may
also start child processes or kill the worker (see :func:`_planted_sleep`). The file is
read at every call, so a test can end a hang between two sweeps. The workers import what
a point needs before they take a task (a cold first point takes seconds here), so a limit of
a few seconds stops only the planted hangs. No timing is asserted: a sweep that waited for
a 60 s hang would only make the test slow (and trip its timeout).
"""
import importlib
import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.config import ConfigError
from experiments.hebbian_recall import Config
from experiments.sweep.executors import LocalPool
from experiments.sweep.runner import run_sweep
from experiments.sweep.spec import build_spec
from experiments.sweep.table import load_frame, read_journal
from experiments.sweep.worker import local_worker_init

NAME = "hebbian_recall"
TINY = ["load_ratios=[1.0]", "trials=1"]
SLEEPS = "SWEEP_TEST_SLEEPS"
HANG = 20.0  # seconds: far beyond every limit used here (3 s), short enough that a worker whose
# restart waits for the hanging thread (Dask joins it at exit) is back well within the timeouts


def _planted_sleep(value) -> None:
    """Do what ``$SWEEP_TEST_SLEEPS`` plants for ``value``: a number of seconds to sleep, or a
    mapping ``{"seconds": S, ...}`` that sleeps S seconds after

    * ``"children": PATH``: starting a child and a grandchild (``sh`` running ``sleep 1000``)
      and appending their pids to the file PATH;
    * ``"die_once": PATH``: on the first attempt only (the file PATH is absent; it is
      created), the sleep ends with SIGKILL to the worker process itself (out of memory)."""
    plant = json.loads(Path(os.environ[SLEEPS]).read_text()).get(str(value), 0)
    if not isinstance(plant, dict):
        time.sleep(plant)
        return
    if "children" in plant:
        child = subprocess.Popen(["sh", "-c", "sleep 1000 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
        grandchild = int(child.stdout.readline())
        with open(plant["children"], "a") as pids:
            pids.write(f"{child.pid} {grandchild}\n")
    if "die_once" in plant:
        marker = Path(plant["die_once"])
        if marker.exists():
            return
        marker.write_text(str(os.getpid()))
        time.sleep(plant["seconds"])
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(plant.get("seconds", 0))


def _warm_up() -> None:
    """Import what a point imports on first use (torch, matplotlib: seconds)."""
    for module in ("torch", "matplotlib.backends.backend_agg", "experiments.report", "experiments.runner"):
        importlib.import_module(module)


def _init_sleepy_worker(parent_pid, threads, started_queue):
    """The local pool's worker initializer, plus planted sleeps (see module docstring)."""
    local_worker_init(parent_pid, threads, started_queue)
    _warm_up()
    from experiments import hebbian_recall, reservoir_rate

    run, run_batch = hebbian_recall.run, reservoir_rate.run_batch

    def sleepy_run(config, out):
        _planted_sleep(config.key_dim)
        return run(config, out)

    def sleepy_run_batch(configs, outs):
        for config in configs:
            _planted_sleep(config.drive)
        return run_batch(configs, outs)

    hebbian_recall.run, reservoir_rate.run_batch = sleepy_run, sleepy_run_batch


class SleepyPool(LocalPool):
    def _start(self):
        self.started = self._context.SimpleQueue()
        self.executor = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self._context, initializer=_init_sleepy_worker,
            initargs=(os.getpid(), self.threads, self.started))
        self._processes = {}


@pytest.fixture
def sleeps(tmp_path, monkeypatch):
    """``sleeps({"16": 60})`` plants those sleeps (workers started afterwards see the file)."""
    path = tmp_path / "sleeps.json"
    path.write_text("{}")
    monkeypatch.setenv(SLEEPS, str(path))
    return lambda mapping: path.write_text(json.dumps(mapping))


@pytest.fixture
def pid_file(tmp_path):
    """``pid_file(name)``: a file a planted point appends the pids of its processes to; every
    process listed in one is ended when the test ends (a failing test leaves none behind)."""
    made = []

    def make(name: str) -> Path:
        made.append(tmp_path / f"{name}.pids")
        return made[-1]

    yield make
    for path in made:
        left_running(path, 0)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    if not Path("/proc/self/stat").exists():  # no procfs (macOS): a zombie counts as running
        return not gone(pid)
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def left_running(path: Path, seconds: float = 5.0) -> list[int]:
    """The pids listed in the file ``path`` still running after up to ``seconds``; ends them."""
    pids = [int(pid) for pid in path.read_text().split()] if path.exists() else []
    deadline = time.monotonic() + seconds
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [pid for pid in pids if running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    return alive


def run_dirs(sweep_dir: Path, name: str = NAME) -> dict[str, list[dict]]:
    """``{hash8: [status.json, ...]}``: one run directory per execution of a point."""
    found: dict[str, list[dict]] = {}
    for path in (sweep_dir / "runs" / name).iterdir():
        found.setdefault(path.name.split("-")[1], []).append(json.loads((path / "status.json").read_text()))
    return found


@pytest.mark.timeout(180)
def test_a_hanging_point_times_out_the_others_complete_and_retry_reruns_it(tmp_path, sleeps):
    sleeps({"16": HANG})
    spec = build_spec(NAME, Config, grid=["key_dim=8,16,24"], sets=TINY)
    pool = SleepyPool(workers=2)
    try:
        result = run_sweep(spec, out=tmp_path / "s", pool=pool, point_timeout=3, report=False)
        frame, _ = load_frame(result.sweep_dir)
        statuses = dict(zip(frame["config.key_dim"], frame["status"]))
        assert statuses == {8: "complete", 16: "failed", 24: "complete"}
        hung = frame[frame["config.key_dim"] == 16].iloc[0]
        assert hung["error"] == "timed out after 3 s (--point-timeout 3)"
        assert hung["worker_deaths"] == 0 and hung["seconds"] > 3
        # the sweep's pool is still open (it is the caller's): the hanging worker was stopped
        assert hung["pid"] > 0 and gone(int(hung["pid"]))
        (journal_row,) = [r for r in read_journal(result.sweep_dir / "journal.jsonl") if r["status"] == "failed"]
        assert journal_row["traceback"] is None
        run_status = json.loads((result.sweep_dir / hung["run_dir"] / "status.json").read_text())
        assert run_status["status"] == "interrupted" and run_status["error"] == hung["error"]
        finished = {h: len(v) for h, v in run_dirs(result.sweep_dir).items() if h != hung["config_hash"][:8]}

        again = run_sweep(spec, out=tmp_path / "s", pool=pool, point_timeout=3, report=False)
        assert (again.executed, again.skipped) == (0, 3)
        retried = run_sweep(spec, out=tmp_path / "s", pool=pool, point_timeout=1.5, retry_failed=True,
                            report=False)  # the limit is in force on a retry (and may change)
        assert (retried.executed, retried.skipped) == (1, 2) and retried.counts["failed"] == 1
        frame, _ = load_frame(result.sweep_dir)
        assert frame.loc[frame["config.key_dim"] == 16, "error"].item() == (
            "timed out after 1.5 s (--point-timeout 1.5)")
        sleeps({})  # the hang is fixed
        fixed = run_sweep(spec, out=tmp_path / "s", pool=pool, point_timeout=3, retry_failed=True,
                          report=False)
        assert (fixed.executed, fixed.counts["complete"]) == (1, 3)
    finally:
        pool.close()
    runs = run_dirs(result.sweep_dir)
    assert sorted(s["status"] for s in runs.pop(hung["config_hash"][:8])) == [
        "complete", "interrupted", "interrupted"]
    assert {h: len(v) for h, v in runs.items()} == finished  # the resumes never reran them


@pytest.mark.timeout(120)
def test_queued_points_are_timed_from_their_start_not_their_submission(tmp_path, sleeps):
    # one worker, two points submitted at once under a 5 s limit: the first sleeps 4 s, so
    # the second waits for the worker to start and for the first, more than 5 s in all
    sleeps({"8": 4})
    spec = build_spec(NAME, Config, grid=["key_dim=8,16"], sets=TINY)
    pool = SleepyPool(workers=1)
    try:
        result = run_sweep(spec, out=tmp_path / "s", pool=pool, point_timeout=5, report=False)
    finally:
        pool.close()
    assert result.counts == {"complete": 2, "failed": 0, "pending": 0}


@pytest.mark.timeout(120)
def test_the_command_line_limit_fails_the_point_and_sweep_show_gives_the_reason(tmp_path, sleeps,
                                                                                  monkeypatch, capsys):
    from experiments.sweep import runner

    sleeps({"16": HANG})
    monkeypatch.setattr(runner, "open_pool", lambda *args, **kwargs: SleepyPool(workers=2))
    out = tmp_path / "s"
    argv = ["sweep", NAME, "--grid", "key_dim=8,16", *(a for kv in TINY for a in ("--set", kv)),
            "--workers", "2", "--out", str(out), "--quiet"]
    assert main([*argv, "--point-timeout", "3"]) == 1
    captured = capsys.readouterr()
    assert "1 complete, 1 failed, 0 pending (2 run now, 0 already done)" in captured.out
    assert "failed points: [1]" in captured.err
    assert main(["sweep-show", str(out), "--status", "failed"]) == 0
    shown = capsys.readouterr().out
    assert "timed out after 3 s (--point-timeout 3)" in shown
    assert main(argv) == 1  # a resume without the limit (allowed): the failed point is kept
    assert "(0 run now, 2 already done)" in capsys.readouterr().out


@pytest.mark.timeout(120)
def test_a_batch_that_times_out_fails_all_its_points(tmp_path, sleeps):
    from experiments.reservoir_rate import Config as ReservoirConfig

    sleeps({"10.0": HANG})
    spec = build_spec("reservoir_rate", ReservoirConfig, grid=["drive=0,10"], seed=2,
                      sets=["num_neurons=50", "in_degree=40", "duration_ms=100", "warmup_ms=20"])
    pool = SleepyPool(workers=1)
    try:  # one batch of both points; drive 10 hangs
        result = run_sweep(spec, out=tmp_path / "s", pool=pool, batch=2, point_timeout=1, report=False)
    finally:
        pool.close()
    frame, _ = load_frame(result.sweep_dir)
    assert list(frame["status"]) == ["failed", "failed"]
    assert set(frame["error"]) == {"timed out after 2 s (--point-timeout 1 per point, batch of 2)"}
    assert (frame["batch_size"] == 2).all() and (frame["worker_deaths"] == 0).all()
    for run_dir in frame["run_dir"]:  # each point's own run directory says why it stopped
        status = json.loads((result.sweep_dir / run_dir / "status.json").read_text())
        assert status["status"] == "interrupted" and status["error"] == frame["error"][0]


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")


@posix_only
@pytest.mark.timeout(120)
def test_a_timed_out_point_ends_the_processes_it_started_and_closing_the_pool_ends_the_rest(
        tmp_path, sleeps, pid_file):
    hung, finished = pid_file("hung"), pid_file("finished")
    # key_dim 16 starts a child and a grandchild, then hangs; key_dim 8 starts them and returns
    sleeps({"16": {"seconds": HANG, "children": str(hung)}, "8": {"children": str(finished)}})
    spec = build_spec(NAME, Config, grid=["key_dim=8,16"], sets=TINY)
    pool = SleepyPool(workers=2)
    try:
        result = run_sweep(spec, out=tmp_path / "s", pool=pool, point_timeout=3, report=False)
        assert result.counts == {"complete": 1, "failed": 1, "pending": 0}
        assert len(hung.read_text().split()) == 2
        assert left_running(hung) == []  # the pool is still open: the timeout ended them
    finally:
        pool.close()
    assert len(finished.read_text().split()) == 2 and left_running(finished) == []


@posix_only
@pytest.mark.timeout(60)
def test_a_local_worker_whose_runner_is_gone_ends_the_processes_its_point_started(pid_file):
    # a stand-in runner (a sleep) is the worker's parent as far as its watchdog knows
    runner = subprocess.Popen(["sleep", "1000"])
    pids = pid_file("point")
    worker = multiprocessing.get_context("spawn").Process(target=_orphaned_worker,
                                                          args=(runner.pid, str(pids)))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while len(pids.read_text().split() if pids.exists() else []) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(pids.read_text().split()) == 2, "the worker never started its point's processes"
        runner.kill()
        runner.wait()
        worker.join(10)
        assert left_running(pids) == []  # its watchdog ended its whole group
        assert worker.exitcode is not None
    finally:
        runner.kill()
        if worker.is_alive():
            worker.kill()


def _orphaned_worker(parent_pid: int, pid_file: str) -> None:
    """A local pool worker (its initializer) running a point that starts processes and hangs."""
    local_worker_init(parent_pid, 1, None)
    child = subprocess.Popen(["sh", "-c", "sleep 1000 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    grandchild = int(child.stdout.readline())
    Path(pid_file).write_text(f"{child.pid} {grandchild}\n")
    time.sleep(HANG)


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, "2", True])
def test_a_bad_limit_is_a_value_error_naming_point_timeout(tmp_path, value):
    spec = build_spec(NAME, Config, grid=["key_dim=8"], sets=TINY)
    with pytest.raises(ValueError, match=r"^point_timeout=.* \(--point-timeout\): expected a finite "
                       r"number of seconds > 0$") as raised:
        run_sweep(spec, out=tmp_path / "s", point_timeout=value)
    assert isinstance(raised.value, ConfigError)
    assert not (tmp_path / "s").exists()  # refused before anything was made


@pytest.mark.parametrize("text", ["0", "-1", "abc", "nan", "inf"])
def test_a_bad_limit_on_the_command_line_is_a_one_line_usage_error(tmp_path, text, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["sweep", NAME, "--grid", "key_dim=8", "--out", str(tmp_path / "s"), "--point-timeout", text])
    assert exited.value.code == 2
    error, hint = capsys.readouterr().err.splitlines()
    assert error.startswith("neuro: error: argument --point-timeout: ")
    assert hint == "hint: run 'neuro sweep --help'"
    assert not (tmp_path / "s").exists()


# --- Dask ------------------------------------------------------------------------------------

def _plant_dask_hang(path: str) -> None:
    """Run on each Dask worker (``client.run``): hebbian_recall's run sleeps as the JSON file
    ``path`` says. A restarted worker comes back without it."""
    _warm_up()
    from experiments import hebbian_recall

    run = hebbian_recall.run
    os.environ[SLEEPS] = path

    def sleepy_run(config, out):
        _planted_sleep(config.key_dim)
        return run(config, out)

    hebbian_recall.run = sleepy_run


@pytest.mark.timeout(180)
def test_dask_cancels_a_timed_out_point_and_restarts_its_worker(tmp_path, sleeps, dask_pool):
    sleeps({"16": HANG})
    dask_pool.client.run(_plant_dask_hang, os.environ[SLEEPS])
    spec = build_spec(NAME, Config, grid=["key_dim=8,16,24"], sets=TINY)
    result = run_sweep(spec, out=tmp_path / "s", pool=dask_pool, point_timeout=3, report=False)
    frame, _ = load_frame(result.sweep_dir)
    assert dict(zip(frame["config.key_dim"], frame["status"])) == {8: "complete", 16: "failed", 24: "complete"}
    hung = frame[frame["config.key_dim"] == 16].iloc[0]
    assert hung["error"] == "timed out after 3 s (--point-timeout 3)" and hung["worker_deaths"] == 0
    assert gone(int(hung["pid"]))  # the worker was restarted: the sleeping thread is gone
    assert len(dask_pool.worker_pids()) == 2 and int(hung["pid"]) not in dask_pool.worker_pids().values()
    run_status = json.loads((result.sweep_dir / hung["run_dir"] / "status.json").read_text())
    assert run_status["status"] == "interrupted" and run_status["error"] == hung["error"]


@pytest.mark.timeout(180)
def test_dask_on_an_existing_scheduler_fails_the_point_and_warns_that_its_thread_runs_on(
        tmp_path, sleeps, dask_pool):
    from experiments.sweep.executors import open_pool

    sleeps({"16": HANG})
    dask_pool.client.run(_plant_dask_hang, os.environ[SLEEPS])
    existing = open_pool("dask", scheduler=dask_pool.cluster.scheduler_address)  # not the sweep's
    spec = build_spec(NAME, Config, grid=["key_dim=8,16"], sets=TINY)
    try:
        with pytest.warns(UserWarning, match="Dask cannot stop a running task and its worker "
                          "belongs to an existing scheduler and is not restarted"):
            result = run_sweep(spec, out=tmp_path / "s", pool=existing, point_timeout=3, report=False)
    finally:
        existing.close()
    frame, _ = load_frame(result.sweep_dir)
    assert dict(zip(frame["config.key_dim"], frame["status"])) == {8: "complete", 16: "failed"}
    assert frame.loc[1, "error"] == "timed out after 3 s (--point-timeout 3)"
    dask_pool.client.restart()  # end the sleeping thread (the test's own cleanup)


@posix_only
@pytest.mark.timeout(120)
def test_dask_a_timed_out_point_has_the_processes_it_started_ended(tmp_path, sleeps, pid_file, dask_pool,
                                                                   recwarn):
    hung = pid_file("hung")
    sleeps({"16": {"seconds": HANG, "children": str(hung)}})
    dask_pool.client.run(_plant_dask_hang, os.environ[SLEEPS])
    spec = build_spec(NAME, Config, grid=["key_dim=8,16"], sets=TINY)
    result = run_sweep(spec, out=tmp_path / "s", pool=dask_pool, point_timeout=3, report=False)
    assert [str(w.message) for w in recwarn if "sweep:" in str(w.message)] == []
    frame, _ = load_frame(result.sweep_dir)
    assert dict(zip(frame["config.key_dim"], frame["status"])) == {8: "complete", 16: "failed"}
    assert gone(int(frame.loc[frame["config.key_dim"] == 16, "pid"].item()))  # restarted
    assert len(hung.read_text().split()) == 2 and left_running(hung) == []


try:
    from distributed import WorkerPlugin
except ImportError:  # the Dask tests are skipped (dask_pool)
    WorkerPlugin = object


class _PlantOnEveryWorker(WorkerPlugin):
    """A Dask worker plugin: :func:`_plant_dask_hang` on every worker, restarted ones too,
    which then wait ``pause_s`` more before they take a task, once the file ``armed`` exists
    (the test creates it after registering the plugin on the running workers)."""

    name = "sweep-test-plant"

    def __init__(self, path: str, armed: str, pause_s: float):
        self.path, self.armed, self.pause_s = path, armed, pause_s

    def setup(self, worker):
        _plant_dask_hang(self.path)
        if os.path.exists(self.armed):
            time.sleep(self.pause_s)


@pytest.mark.timeout(120)
def test_dask_a_retried_point_is_timed_from_its_retry_not_its_first_attempt(tmp_path, sleeps, dask_pool):
    # both points kill their worker 1 s into their first attempt, under a 6 s limit; Dask retries
    # them on the restarted workers, which wait 6 s before they take a task: timed from the first
    # attempts, the retries were overdue before they started (the sweep crashed with a KeyError
    # restarting a dead worker); timed from their own start, they finish in well under 6 s
    limit = 6
    sleeps({str(k): {"seconds": 1.0, "die_once": str(tmp_path / f"died-{k}")} for k in (8, 16)})
    armed = tmp_path / "armed"
    dask_pool.client.register_plugin(_PlantOnEveryWorker(os.environ[SLEEPS], str(armed), limit))
    armed.touch()
    spec = build_spec(NAME, Config, grid=["key_dim=8,16"], sets=TINY)
    try:
        result = run_sweep(spec, out=tmp_path / "s", pool=dask_pool, point_timeout=limit, report=False)
    finally:
        armed.unlink()
        dask_pool.client.unregister_worker_plugin(_PlantOnEveryWorker.name)
    frame, _ = load_frame(result.sweep_dir)
    assert list(frame["status"]) == ["complete", "complete"], list(frame["error"])
    for key_dim, pid in zip(frame["config.key_dim"], frame["pid"]):  # each ran again elsewhere
        first_pid = int((tmp_path / f"died-{key_dim}").read_text())
        assert int(pid) != first_pid and gone(first_pid)
