"""The journal/table and the report, without workers; and the per-task worker setup."""
import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from experiments.hebbian_recall import Config
from experiments.sweep import worker
from experiments.sweep.report import write_sweep_report
from experiments.sweep.spec import build_spec, expand
from experiments.sweep.table import SweepTable, load_frame, read_journal, write_spec_file


def fake_row(point, status="complete", **metrics):
    return {"config_hash": point.config_hash, "point": point.index, "status": status,
            "metrics": metrics, "error": None if status == "complete" else "boom", "seconds": 0.5,
            "host": "h", "pid": 1, "run_dir": None, "started_utc": None, "finished_utc": None,
            "batch_size": 1}


def test_journal_latest_row_wins_torn_line_is_ignored_and_counts_follow(tmp_path):
    spec = build_spec("hebbian_recall", Config, grid=["key_dim=8,16,32"])
    points = expand(spec, Config)
    table = SweepTable(tmp_path, points, spec.swept_keys)
    table.record([fake_row(points[0], "failed"), fake_row(points[1], bit=0.5)])
    table.record([fake_row(points[0], bit=0.25)])  # a retry replaces the failed row
    with open(tmp_path / "journal.jsonl", "ab") as handle:
        handle.write(b'{"config_hash": "' + points[2].config_hash.encode() + b'", "stat')  # killed mid-write
    again = SweepTable(tmp_path, points, spec.swept_keys)
    assert again.counts() == table.counts() == {"complete": 2, "failed": 0, "pending": 1}
    assert len(read_journal(tmp_path / "journal.jsonl")) == 3
    again.flush(force=True)
    frame, meta = load_frame(tmp_path)
    assert list(frame["status"]) == ["complete", "complete", "pending"]
    assert frame["metric.bit"].tolist()[:2] == [0.25, 0.5] and np.isnan(frame["metric.bit"].iloc[2])
    assert list(frame["config.key_dim"]) == [8, 16, 32] and meta == {"swept": ["key_dim"], "metrics": ["bit"]}
    assert list(frame.columns[:5]) == ["point", "repeat", "seed", "config_hash", "config.key_dim"]


def test_report_of_a_random_sweep_has_one_panel_per_parameter(tmp_path):
    spec = build_spec("hebbian_recall", Config, grid=["key_dim=8:64", "trials=1:100:log", "value_dim=4,8"],
                      random=12, seed=1)
    points = expand(spec, Config)
    write_spec_file(tmp_path / "sweep.yaml", spec.to_dict())
    table = SweepTable(tmp_path, points, spec.swept_keys)
    table.record([fake_row(p, error=p.overrides["key_dim"] / 64, loads=3) for p in points[:-1]]
                 + [fake_row(points[-1], "failed")])
    table.flush(force=True)
    report = write_sweep_report(tmp_path).read_text()
    assert report.count("<img") == 2  # error and loads (numeric metrics)
    assert "every point (dots)" in report and "point 11: boom" in report
    assert (tmp_path / "figures" / "error.png").stat().st_size > 1000
    assert "11 complete" in report and "1 failed" in report


def test_worker_limits_threads_and_isolates_brian2_dirs(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    for variable in worker._THREAD_VARIABLES + ("CYTHON_CACHE_DIR",):
        monkeypatch.setenv(variable, "99")  # restored after the test
    monkeypatch.setitem(worker._state, "threads", None)
    threads_before = torch.get_num_threads()
    spec = build_spec("hebbian_recall", Config, sets=["key_dim=8", "trials=1", "load_ratios=[1.0]"])
    (point,) = expand(spec, Config)
    task = worker.Task(0, "hebbian_recall", (worker.PointTask(0, point.seed, point.config, point.config_hash),),
                       sweep_dir=str(tmp_path))
    cwd = os.getcwd()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = contextlib.nullcontext
    try:
        with threadpool_limits(limits=None):  # restores this process's BLAS limits on exit
            (row,) = worker.execute_task(task)
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads_before)
    assert row["status"] == "complete" and os.getcwd() == cwd
    assert all(os.environ[v] == "1" for v in worker._THREAD_VARIABLES)
    cache = Path(os.environ["CYTHON_CACHE_DIR"])  # brian2's default cache lives under it
    assert cache.parent == tmp_path / "scratch" and cache.name.endswith(f"-{os.getpid()}")
    assert not (tmp_path / "scratch" / f"task-{point.config_hash[:16]}").exists()  # removed on success
    status = json.loads((tmp_path / row["run_dir"] / "status.json").read_text())
    assert status["status"] == "complete" and status["config_hash"] == point.config_hash


def test_a_second_runner_on_the_same_sweep_is_refused(tmp_path):
    fcntl = pytest.importorskip("fcntl", reason="flock is POSIX-only")
    from experiments.config import ConfigError
    from experiments.sweep.runner import run_sweep

    spec = build_spec("hebbian_recall", Config, grid=["key_dim=8,16"])
    out = tmp_path / "s"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # another runner holds the sweep
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another runner is working on"):
            run_sweep(spec, out=out)
    assert not (out / "journal.jsonl").exists()


def test_a_metric_that_is_text_at_one_point_and_a_number_at_another_is_stored_as_text(tmp_path):
    spec = build_spec("hebbian_recall", Config, grid=["key_dim=8,16,32"])
    points = expand(spec, Config)
    table = SweepTable(tmp_path, points, spec.swept_keys)
    table.record([fake_row(points[0], verdict=1.5, bit=0.5), fake_row(points[1], verdict="n/a", bit=0.25)])
    table.flush(force=True)
    frame, meta = load_frame(tmp_path)
    assert frame["metric.verdict"].tolist()[:2] == ["1.5", "n/a"]
    assert frame["metric.verdict"].isna().tolist() == [False, False, True]  # pending: no value
    assert frame["metric.bit"].tolist()[:2] == [0.5, 0.25]  # an all-number column stays numbers
    assert meta["metrics"] == ["verdict", "bit"]
    (tmp_path / "sweep.yaml").write_text("experiment: hebbian_recall\n")
    assert write_sweep_report(tmp_path).exists()


def test_a_row_recorded_after_a_torn_journal_line_is_kept(tmp_path):
    # a runner killed (or a disk filled) in the middle of a journal write leaves half a line
    # without its newline; the next runner's first row was glued to it and lost (its point
    # then counted as pending: a failed point was rerun, a full run ended with a pending one)
    spec = build_spec("hebbian_recall", Config, grid=["key_dim=8,16,32"])
    points = expand(spec, Config)
    SweepTable(tmp_path, points, spec.swept_keys).record([fake_row(points[0], "failed")])
    line = json.dumps(fake_row(points[1], "failed")) + "\n"
    with open(tmp_path / "journal.jsonl", "a") as handle:
        handle.write(line[: len(line) // 2])  # killed mid-write
    resumed = SweepTable(tmp_path, points, spec.swept_keys)
    resumed.record([fake_row(points[2], "failed")])
    again = SweepTable(tmp_path, points, spec.swept_keys)
    assert [again.status(p.config_hash) for p in points] == ["failed", "pending", "failed"]


def test_a_short_journal_write_on_a_full_disk_raises_and_leaves_no_torn_line(tmp_path, monkeypatch):
    import errno

    from experiments.sweep import table as table_module

    spec = build_spec("hebbian_recall", Config, grid=["key_dim=8,16"])
    points = expand(spec, Config)
    table = SweepTable(tmp_path, points, spec.swept_keys)
    table.record([fake_row(points[0], bit=0.5)])
    before = (tmp_path / "journal.jsonl").read_bytes()
    real_write = os.write

    def disk_fills(handle, data):  # what write(2) does when the disk fills mid-way
        if len(data) > 10:
            return real_write(handle, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(table_module.os, "write", disk_fills)
    with pytest.raises(OSError, match="No space left"):  # was silently a torn line
        table.record([fake_row(points[1], bit=0.25)])
    monkeypatch.undo()
    assert (tmp_path / "journal.jsonl").read_bytes() == before
    assert SweepTable(tmp_path, points, spec.swept_keys).counts() == {"complete": 1, "failed": 0, "pending": 1}


def test_a_metric_that_is_true_false_at_one_point_and_a_number_at_another_is_stored_as_text(tmp_path):
    # was ArrowInvalid from every flush: the sweep stopped after its next point, on every
    # resume, and sweep.parquet never showed the results
    spec = build_spec("hebbian_recall", Config, grid=["key_dim=8,16,32"])
    points = expand(spec, Config)
    table = SweepTable(tmp_path, points, spec.swept_keys)
    table.record([fake_row(points[0], stopped_at=False, states=2**70, bit=True),
                  fake_row(points[1], stopped_at=0.5, states=3, bit=False)])
    table.flush(force=True)
    frame, _ = load_frame(tmp_path)
    assert frame["metric.stopped_at"].tolist()[:2] == ["False", "0.5"]
    assert frame["metric.states"].tolist()[:2] == [str(2**70), "3"]  # beyond int64
    assert frame["metric.bit"].tolist()[:2] == [True, False]  # all true/false stays true/false
