"""Run store: atomic writes, run-directory naming, no overwrite, status, determinism."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import hebbian_recall, store
from experiments.runner import run_experiment
from experiments.store import RunDir, atomic_write_text

REPO = Path(__file__).resolve().parents[2]
SMALL = {"trials": 3, "key_dim": 16, "value_dim": 8, "load_ratios": (0.5, 2.0)}


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new content")
    assert path.read_text() == "new content"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    path = atomic_write_text(tmp_path / "shared.json", "{}")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_experiment_thread_settings_do_not_leak(tmp_path, monkeypatch):
    import torch

    before = torch.get_num_threads()

    def greedy(config, out):
        torch.set_num_threads(before + 1)
        return {"x": 1.0}

    monkeypatch.setattr(hebbian_recall, "run", greedy)
    run_experiment("hebbian_recall", out_root=tmp_path)
    assert torch.get_num_threads() == before


def test_crash_mid_write_leaves_old_file_and_no_partial(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, '{"ok": 1}')

    class Crash(Exception):
        pass

    real_fdopen = os.fdopen

    def crashing_fdopen(fd, mode):
        handle = real_fdopen(fd, mode)
        original_write = handle.write

        def write(data):
            original_write(data[: len(data) // 2])  # half the bytes reach the temp file
            raise Crash("power cut")

        handle.write = write
        return handle

    monkeypatch.setattr(store.os, "fdopen", crashing_fdopen)
    with pytest.raises(Crash):
        atomic_write_text(path, '{"ok": 2, "more": "x" * 100}')
    assert path.read_text() == '{"ok": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_crash_before_rename_leaves_no_file(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(store.os, "replace", failing_replace)
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "new.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_run_directory_layout_and_contents(tmp_path):
    result = run_experiment("hebbian_recall", overrides=SMALL, out_root=tmp_path, seed=3)
    assert result.path.parent == tmp_path / "hebbian_recall"
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", result.path.name)
    names = {p.name for p in result.path.iterdir()}
    assert {"config.yaml", "env.json", "status.json", "metrics.json", "report.html",
            "run.log", "recall_curve.png", "recall.npz", "recall.csv"} <= names
    status = json.loads((result.path / "status.json").read_text())
    assert status["status"] == "complete" and status["config_hash"].startswith(result.path.name[-8:])
    env = json.loads((result.path / "env.json").read_text())
    assert env["seed"] == 3 and env["device"] == "cpu" and "torch" in env["packages"]
    assert json.loads((result.path / "metrics.json").read_text()) == result.metrics
    assert np.load(result.path / "recall.npz")["bit_error"].shape == (2,)
    assert not [n for n in names if n.endswith(".tmp")]


def test_rerun_never_overwrites(tmp_path):
    first = run_experiment("hebbian_recall", overrides=SMALL, out_root=tmp_path, seed=0)
    before = (first.path / "metrics.json").read_bytes()
    second = run_experiment("hebbian_recall", overrides=SMALL, out_root=tmp_path, seed=0)
    assert second.path != first.path
    assert (first.path / "metrics.json").read_bytes() == before


def test_same_seed_same_metrics_and_other_seed_differs(tmp_path):
    a = run_experiment("hebbian_recall", overrides=SMALL, out_root=tmp_path, seed=5)
    b = run_experiment("hebbian_recall", overrides=SMALL, out_root=tmp_path, seed=5)
    c = run_experiment("hebbian_recall", overrides=SMALL, out_root=tmp_path, seed=6)
    assert a.metrics == b.metrics
    assert a.metrics != c.metrics


def test_failing_run_is_marked_failed_with_traceback(tmp_path, monkeypatch):
    def broken(config, out):
        out.log("about to fail")
        raise RuntimeError("numerics exploded")

    monkeypatch.setattr(hebbian_recall, "run", broken)
    with pytest.raises(RuntimeError, match="numerics exploded"):
        run_experiment("hebbian_recall", out_root=tmp_path)
    (run_dir,) = (tmp_path / "hebbian_recall").iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "numerics exploded" in status["traceback"]
    assert not (run_dir / "metrics.json").exists()


def test_interrupted_run_stays_marked_incomplete(tmp_path, monkeypatch):
    def interrupted(config, out):
        raise KeyboardInterrupt

    monkeypatch.setattr(hebbian_recall, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("hebbian_recall", out_root=tmp_path)
    (run_dir,) = (tmp_path / "hebbian_recall").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
    assert not (run_dir / "report.html").exists() and not (run_dir / "metrics.json").exists()


def test_metrics_must_be_flat_scalars(tmp_path, monkeypatch):
    monkeypatch.setattr(hebbian_recall, "run", lambda config, out: {"curve": [1, 2]})
    with pytest.raises(TypeError, match="metric 'curve': expected a number"):
        run_experiment("hebbian_recall", out_root=tmp_path)


def test_rundir_rejects_path_like_names(tmp_path):
    out = RunDir(tmp_path)
    with pytest.raises(ValueError, match="name='../x'"):
        out.save_json("../x", {})


def test_logs_tables_and_reports_are_read_as_utf8_whatever_the_locale(tmp_path):
    # a C / Latin-1 / cp1252 locale read back the UTF-8 the store writes with the locale's
    # codec: the second log line (and the report of a table with a 'τ') raised UnicodeDecodeError
    script = (
        "import sys; from pathlib import Path\n"
        "from experiments.store import RunDir\n"
        "from experiments.report import write_run_report\n"
        "out = RunDir(Path(sys.argv[1]))\n"
        "out.save_table('t', [{'tau_ms': 5.0, 'unit': '\\u03c4'}], caption='time constant \\u03c4')\n"
        "out.log('\\u03c4 = 5 ms'); out.log('done')\n"
        "write_run_report(out.path, 'x')\n")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONPATH": str(REPO)}
    completed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, cwd=REPO,
                               capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert (tmp_path / "run.log").read_text(encoding="utf-8").splitlines()[0].endswith("τ = 5 ms")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "time constant τ" in html and "<td>τ</td>" in html and "τ = 5 ms" in html
