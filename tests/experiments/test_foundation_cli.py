"""The `neuro` CLI: help texts, exit codes, one-line errors."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import hebbian_recall
from experiments.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--set", "trials=2", "--set", "key_dim=8", "--set", "load_ratios=0.5,2"]


def test_list_shows_experiments_with_descriptions(capsys):
    assert main(["list"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("hebbian_recall"))
    assert "Hebbian associative memory" in line and "[demo]" in line


def test_run_writes_report_and_prints_metrics(tmp_path, capsys):
    assert main(["run", "hebbian_recall", *SMALL, "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "max_abs_deviation_from_theory" in out
    report = out.strip().splitlines()[-1].removeprefix("report: ")
    assert report.endswith("report.html")
    assert Path(report).read_text().startswith("<!DOCTYPE html>")


def test_run_accepts_dashed_name_and_config_file(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("trials: 2\nkey_dim: 8\nload_ratios: [1.0]\n")
    assert main(["run", "hebbian-recall", "--config", str(config), "--out", str(tmp_path)]) == 0
    (run_dir,) = (tmp_path / "hebbian_recall").iterdir()
    assert "key_dim: 8" in (run_dir / "config.yaml").read_text()


@pytest.mark.parametrize("argv, message", [
    (["run", "no_such_thing"], "unknown experiment 'no_such_thing'; valid experiments:"),
    (["run", "hebbian_recall", "--set", "bogus=1"], "unknown key 'bogus'; valid keys: key_dim"),
    (["run", "hebbian_recall", "--set", "trials=many"], "trials: expected an int, got 'many'"),
    (["run", "hebbian_recall", "--set", "trials=-1"], "trials: -1 is out of range"),
    (["run", "hebbian_recall", "--set", "trials"], "expected KEY=VALUE"),
    (["run", "hebbian_recall", "--config", "/nonexistent.yaml"], "no such file"),
    (["run", "hebbian_recall", "--seed", "-4"], "--seed -4: expected a non-negative integer"),
])
def test_usage_errors_exit_2_with_one_line_and_hint(argv, message, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("neuro: error: ") and message in err[0]
    assert err[1].startswith("hint: ")


def test_argparse_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2
    assert "hint:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_run_failure_exits_1(tmp_path, monkeypatch, capsys):
    def broken(config, out):
        raise RuntimeError("diverged at step 12")

    monkeypatch.setattr(hebbian_recall, "run", broken)
    assert main(["run", "hebbian_recall", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "run failed: RuntimeError: diverged at step 12" in err and "Traceback" not in err


def test_show_prints_metrics_and_status(tmp_path, capsys):
    assert main(["run", "hebbian_recall", *SMALL, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    (run_dir,) = (tmp_path / "hebbian_recall").iterdir()
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "status=complete" in out and all(k in out for k in metrics)
    assert main(["show", str(tmp_path)]) == 2


def test_demo_only_and_unknown_part(tmp_path, capsys):
    assert main(["demo", "--only", "hebbian_recall", "--out", str(tmp_path)]) == 0
    report = capsys.readouterr().out.strip().splitlines()[-1].removeprefix("report: ")
    html = Path(report).read_text()
    assert "hebbian_recall" in html and "data:image/png;base64," in html
    assert main(["demo", "--only", "nope", "--out", str(tmp_path)]) == 2


def test_every_help_text_is_accurate(capsys):
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert {"list", "run", "show", "demo"} <= set(subcommands)
    for name in subcommands:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert f"usage: neuro {name}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert all(name in top for name in subcommands)


def test_console_script_entry_point_runs():
    completed = subprocess.run([sys.executable, "-m", "experiments.cli", "list"],
                               capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0 and "hebbian_recall" in completed.stdout


def test_sigterm_marks_the_run_interrupted(tmp_path):
    # about 1 s per load on 2 cores: long enough to be terminated mid-run, never waited for
    slow = ["--set", "trials=500", "--set", "key_dim=64", "--set", "load_ratios=" + ",".join(["4"] * 200)]
    process = subprocess.Popen([sys.executable, "-m", "experiments.cli", "run", "hebbian_recall", *slow,
                                "--out", str(tmp_path), "--quiet"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("hebbian_recall/*/env.json")) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err  # was 1, as for a failed run; `neuro demo` said 130
    assert "interrupted" in err and "Traceback" not in err
    (run_dir,) = (tmp_path / "hebbian_recall").iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["error"] == "KeyboardInterrupt: SIGTERM"


def test_interrupted_run_exits_130_after_marking_the_run_interrupted(tmp_path, monkeypatch, capsys):
    from experiments.cli import EXIT_INTERRUPTED

    def interrupted(config, out):
        (out.path / "partial.txt").write_text("work done before Ctrl-C")
        raise KeyboardInterrupt

    monkeypatch.setattr(hebbian_recall, "run", interrupted)
    assert EXIT_INTERRUPTED == 130
    assert main(["run", "hebbian_recall", *SMALL, "--out", str(tmp_path), "--quiet"]) == 130  # was 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"neuro: interrupted; a run directory already made under {tmp_path / 'hebbian_recall'} "
                    "is marked interrupted")]
    (run_dir,) = (tmp_path / "hebbian_recall").iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["error"] == "KeyboardInterrupt: "
    assert (run_dir / "partial.txt").read_text() == "work done before Ctrl-C"  # nothing removed
    assert (run_dir / "config.yaml").exists() and (run_dir / "env.json").exists()


def test_an_interrupt_while_the_run_directory_is_set_up_marks_it_interrupted(tmp_path, monkeypatch, capsys):
    # status.json says "running" before config.yaml and env.json are written: a Ctrl-C or
    # SIGTERM landing in between must not leave a "running" directory behind
    from experiments import runner

    def interrupted(seed, device):
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(runner, "environment_facts", interrupted)
    assert main(["run", "hebbian_recall", *SMALL, "--out", str(tmp_path), "--quiet"]) == 130
    assert capsys.readouterr().err.strip().endswith("is marked interrupted")
    (run_dir,) = (tmp_path / "hebbian_recall").iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["error"] == "KeyboardInterrupt: SIGTERM"


def test_failed_run_still_exits_1(tmp_path, monkeypatch, capsys):
    def broken(config, out):
        raise RuntimeError("diverged")

    monkeypatch.setattr(hebbian_recall, "run", broken)
    assert main(["run", "hebbian_recall", *SMALL, "--out", str(tmp_path), "--quiet"]) == 1
    assert "neuro: run failed: RuntimeError: diverged" in capsys.readouterr().err
    (run_dir,) = (tmp_path / "hebbian_recall").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("argv, message", [
    (["--set", "load_ratios="], "load_ratios: empty list; give at least one value"),
    (["--set", "load_ratios=[]"], "load_ratios: empty list"),
    (["--set", "load_ratios=[[1]]"], "load_ratios: nested brackets in '[[1]]'"),
    (["--set", "trials=2", "--set", "trials=3"], "--set trials: 'trials' is given twice"),
])
def test_empty_nested_and_repeated_values_are_usage_errors(argv, message, tmp_path, capsys):
    assert main(["run", "hebbian_recall", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("neuro: error: ") and message in err[0]
    assert not (tmp_path / "hebbian_recall").exists()  # nothing was created


@pytest.mark.parametrize("text, message", [
    ("{not json", "is not readable JSON"),
    ("[1]", "expected a JSON object, got list"),
    ('{"status": "complete", "seconds": "x"}', "seconds: expected a number, got 'x'"),
])
def test_show_of_an_unreadable_status_file_is_one_line(tmp_path, capsys, text, message):
    (tmp_path / "status.json").write_text(text)
    assert main(["show", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("neuro: error: status file ") and message in err[0]


def test_show_prints_the_error_of_a_failed_run_that_has_metrics(tmp_path, capsys):
    (tmp_path / "status.json").write_text(json.dumps(
        {"experiment": "x", "status": "failed", "seconds": 1.5, "error": "RuntimeError: report broke"}))
    (tmp_path / "metrics.json").write_text(json.dumps({"loss": 0.25}))
    assert main(["show", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "status=failed" in out and "loss" in out and "error: RuntimeError: report broke" in out


def test_interrupted_demo_exits_130_and_reports_every_part(tmp_path, monkeypatch, capsys):
    from experiments import pavlovian_capacity

    def broken(config, out):
        raise RuntimeError("diverged at step 12")

    def interrupted(config, out):
        raise KeyboardInterrupt

    monkeypatch.setattr(hebbian_recall, "run", broken)
    monkeypatch.setattr(pavlovian_capacity, "run", interrupted)
    argv = ["demo", "--only", "hebbian_recall", "--only", "pavlovian_capacity", "--only", "reservoir_rate"]
    assert main([*argv, "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neuro: demo interrupted; report of the parts so far: ")
    report = Path(err[0].rsplit(": ", 1)[1])
    html = report.read_text()
    for name, state in (("hebbian_recall", "failed"), ("pavlovian_capacity", "interrupted")):
        (run_dir,) = (report.parent / name).iterdir()
        assert json.loads((run_dir / "status.json").read_text())["status"] == state
        link = f'<a href="{name}/{run_dir.name}/">'  # no report.html: the run did not finish
        assert link in html and f'status-{state}">{state}</td>' in html
    assert "diverged at step 12" in html
    assert 'status-not-run">not run</td>' in html and "reservoir_rate" in html
    assert not (report.parent / "reservoir_rate").exists()


@pytest.mark.parametrize("argv, message", [
    (["reservoir_rate", "--set", "in_degree=500"], "in_degree=500 exceeds num_neurons - 1 = 199"),
    (["attention_connectome", "--set", "num_heads=3"], "model_dim (64) must be divisible by num_heads (3)"),
    (["mixer_comparison", "--set", "num_heads=3"], "must be divisible by num_heads (3)"),
    (["counterpart_spikes", "--set", "num_heads=3"], "model_dim (32) must be divisible by num_heads (3)"),
])
def test_values_that_do_not_fit_together_are_config_errors(argv, message, tmp_path, capsys):
    # was exit 1 ("run failed") with a failed run directory, after the experiment had started
    assert main(["run", *argv, "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("neuro: error: ") and message in err[0]
    assert list(tmp_path.iterdir()) == []  # no run directory


@pytest.mark.parametrize("command", [["run", "hebbian_recall", "--set", "trials=1"],
                                     ["demo", "--only", "hebbian_recall"]])
def test_an_out_folder_that_cannot_hold_runs_is_a_usage_error(command, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    # was exit 1 "run failed" pointing at a status.json that was never written (demo: a traceback)
    assert main([*command, "--out", str(blocker), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[1].startswith("hint: ")
    assert err[0].startswith(f"neuro: error: --out {str(blocker)!r}: cannot create a run directory there")


def test_a_config_file_with_bad_yaml_or_bytes_is_one_line(tmp_path, capsys):
    indented = tmp_path / "indented.yaml"
    indented.write_text("key_dim: 32\n  trials: 5\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    for path, message in ((indented, "not valid YAML (mapping values are not allowed here at line 2, column 9)"),
                          (binary, "not readable as UTF-8 text")):
        # was four lines of PyYAML's error; the binary file was a "run failed" (exit 1)
        assert main(["run", "hebbian_recall", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and message in err[0] and err[1].startswith("hint: ")


def test_demo_with_a_negative_seed_is_a_usage_error(tmp_path, capsys):
    # was exit 1: every part "failed" with the seed's ConfigError, and a demo report was written
    assert main(["demo", "--only", "hebbian_recall", "--seed", "-1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == "neuro: error: --seed -1: expected a non-negative integer"
    assert list(tmp_path.iterdir()) == []  # no demo directory
