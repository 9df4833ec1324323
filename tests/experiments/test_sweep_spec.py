"""Sweep specifications: grids, ranges, zips, random draws, repeats, and up-front errors."""
import itertools

import numpy as np
import pytest
import yaml

from experiments.cli import main
from experiments.config import ConfigError, resolve_config
from experiments.hebbian_recall import Config
from experiments.sweep.runner import run_sweep
from experiments.sweep.spec import build_spec, expand, repeat_seeds

NAME = "hebbian_recall"


def spec(**kwargs):
    return build_spec(NAME, Config, **kwargs)


def test_grid_is_the_cartesian_product_in_order_and_zip_walks_together():
    s = spec(grid=["key_dim=8,16,32", "trials=1,2"], zip=["value_dim=4,5", "load_ratios=[[1.0],[0.5,2.0]]"])
    points = expand(s, Config)
    expected = [{"key_dim": k, "trials": t, "value_dim": v, "load_ratios": r}
                for k, t in itertools.product((8, 16, 32), (1, 2))
                for v, r in zip((4, 5), ((1.0,), (0.5, 2.0)))]
    assert [p.overrides for p in points] == expected
    for point in points:  # every point is the config the foundation resolves from its overrides
        assert point.config == resolve_config(Config, None, point.overrides)
    assert [p.index for p in points] == list(range(12))


def test_ranges_match_numpy_linspace_and_geomspace():
    s = spec(grid=["key_dim=16:1024:7:log", "trials=1:9:5"], sets=["load_ratios=[0.1]"])
    assert dict(s.grid)["key_dim"] == tuple(int(v) for v in np.rint(np.geomspace(16, 1024, 7)))
    assert dict(s.grid)["trials"] == (1, 3, 5, 7, 9)
    floats = spec(zip=["load_ratios=[[0.1],[0.2],[0.3]]"], grid=["key_dim=8"])
    assert dict(floats.zipped)["load_ratios"] == ((0.1,), (0.2,), (0.3,))
    # float ranges: linspace rounded to 12 significant digits (0.2, not 0.20000000000000004)
    from experiments.sweep.values import parse_grid_values
    assert parse_grid_values("x", "0.1:0.3:3", float) == [0.1, 0.2, 0.3]
    assert parse_grid_values("x", "1e-3:1e-1:3:log", float) == [0.001, 0.01, 0.1]


def test_a_float_range_through_zero_has_zero_not_rounding_noise():
    from experiments.sweep.values import parse_grid_values
    # linspace gives 1.3877787807814457e-17 for the second point; 12 significant digits kept it
    assert parse_grid_values("x", "-0.1:0.2:4", float) == [-0.1, 0.0, 0.1, 0.2]
    assert parse_grid_values("x", "-0.5:0.25:4", float) == [-0.5, -0.25, 0.0, 0.25]
    assert [str(v) for v in parse_grid_values("x", "-1:0:3", float)] == ["-1.0", "-0.5", "0.0"]
    # an end is never rounding noise: LO = 1e-15 was replaced by 0.0 (within 1e-12 of the span)
    assert parse_grid_values("x", "1e-15:1e-3:3", float) == [1e-15, 0.0005, 0.001]
    assert parse_grid_values("x", "-1e-3:-1e-15:2", float) == [-0.001, -1e-15]


def test_an_unquoted_range_in_a_sweep_file_is_the_range_not_a_base_60_number(tmp_path):
    # YAML 1.1 reads 1:10:4 as 1*3600 + 10*60 + 4 = 4204 (and 1:50 as 110)
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("grid:\n  trials: 1:10:4\nzip:\n  key_dim: 8:16:2\n")
    s = spec(from_file=sweep_file)
    assert dict(s.grid)["trials"] == (1, 4, 7, 10) and dict(s.zipped)["key_dim"] == (8, 16)
    sweep_file.write_text("random:\n  samples: 4\n  params:\n    trials: 1:50\n")
    assert dict(spec(from_file=sweep_file).distributions)["trials"].to_dict() == {"uniform": [1, 50]}


def test_random_draws_do_not_depend_on_the_order_of_the_grid_options():
    # the digest (the sweep directory) ignores the order, so the points must too: the same
    # command with its --grid options swapped resumes the sweep instead of drawing new points
    first = spec(grid=["key_dim=8:64", "trials=1:100"], random=3)
    swapped = spec(grid=["trials=1:100", "key_dim=8:64"], random=3)
    assert first.digest() == swapped.digest()
    assert [p.config_hash for p in expand(first, Config)] == [p.config_hash for p in expand(swapped, Config)]
    assert list(expand(swapped, Config)[0].overrides) == ["trials", "key_dim"]  # as given


def test_random_without_any_axis_is_an_error_not_one_point():
    # N draws of no parameter were N identical points, silently cut down to one
    with pytest.raises(ConfigError, match="--random 5: nothing to draw from; give the ranges"):
        spec(random=5, sets=["trials=2"])


def test_repeats_use_spawned_seed_sequence_children_repeat_major():
    s = spec(grid=["key_dim=8,16"], repeats=3, seed=7)
    points = expand(s, Config)
    _, parent = np.random.SeedSequence(7).spawn(2)
    oracle = [int(c.generate_state(1, dtype=np.uint32)[0]) for c in parent.spawn(3)]
    assert repeat_seeds(7, 3) == oracle and len(set(oracle)) == 3
    assert [(p.repeat, p.seed, p.overrides["key_dim"]) for p in points] == [
        (r, oracle[r], k) for r in range(3) for k in (8, 16)]
    assert len({p.config_hash for p in points}) == 6


def test_random_draws_are_reproducible_and_respect_the_distributions():
    s = spec(grid=["key_dim=8:64", "trials=1:1000:log", "value_dim=4,8,16"], random=200, seed=3)
    points = expand(s, Config)
    again = expand(spec(grid=["key_dim=8:64", "trials=1:1000:log", "value_dim=4,8,16"], random=200,
                        seed=3), Config)
    assert [p.overrides for p in points] == [p.overrides for p in again]
    keys = np.array([p.overrides["key_dim"] for p in points])
    trials = np.array([p.overrides["trials"] for p in points])
    assert keys.min() >= 8 and keys.max() <= 64 and keys.dtype.kind == "i"
    assert trials.min() >= 1 and trials.max() <= 1000
    # log-uniform: about a third of the draws per decade (binomial, n=200: 3 s.d. ~ 20)
    decades = np.histogram(np.log10(trials), bins=[0, 1, 2, 3])[0]
    assert np.all(np.abs(decades - 200 / 3) < 25), decades
    assert {p.overrides["value_dim"] for p in points} == {4, 8, 16}
    other_seed = expand(spec(grid=["key_dim=8:64"], random=5, seed=4), Config)
    assert [p.overrides for p in other_seed] != [p.overrides for p in points[:5]]


def test_sweep_yaml_is_a_valid_from_file_and_round_trips(tmp_path):
    s = spec(grid=["key_dim=8,16"], zip=["trials=1,2", "value_dim=4,8"], repeats=2, seed=5,
             sets=["load_ratios=[1.0]"])
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(s.to_dict()))
    again = build_spec(NAME, Config, from_file=path)
    assert again.to_dict() == s.to_dict() and again.digest() == s.digest()
    r = spec(grid=["key_dim=8:64", "trials=1:100:log", "value_dim=4,8"], random=4)
    path.write_text(yaml.safe_dump(r.to_dict()))
    assert build_spec(NAME, Config, from_file=path).to_dict() == r.to_dict()
    # command-line values win over the file's
    assert build_spec(NAME, Config, from_file=path, seed=9).seed == 9


@pytest.mark.parametrize("kwargs, message", [
    ({"grid": ["nokey=1,2"]}, "unknown key 'nokey'; valid keys: key_dim, value_dim, load_ratios, trials"),
    ({"grid": ["trials=a,b"]}, "--grid trials=a,b: trials: expected an int, got 'a'"),
    ({"grid": ["key_dim=1,8"]}, "key_dim: 1 is out of range; allowed [2, 4096]"),
    ({"grid": ["trials="]}, "--grid trials=: no values given"),
    ({"grid": ["trials=[]"]}, "no values given"),
    ({"grid": ["trials=1,,3"]}, "empty value in the list"),
    ({"grid": ["trials=1:x:3"]}, "'x' is not a number; expected LO:HI:N"),
    ({"grid": ["trials=1:3"]}, "bad range syntax; expected LO:HI:N"),
    ({"grid": ["trials=1:3:0"]}, "the count must be at least 1"),
    ({"grid": ["key_dim=8:30:4"]}, "non-integer values"),
    ({"grid": ["load_ratios=0:1:3:log"]}, "ambiguous for a tuple field"),
    ({"grid": ["trials=1:3:2:log", "key_dim=0:8:2:log"]}, "a log range needs LO > 0"),
    ({"grid": ["trials=1,1"]}, "sweep points 0 and 1 are identical"),
    ({"grid": ["trials=1,2"], "zip": ["trials=3,4"]}, "already given by --grid"),
    ({"zip": ["trials=1,2", "key_dim=8"]}, "zipped lists must have equal lengths"),
    ({"grid": ["trials=1:10:5"], "random": 3}, "a count N belongs to grid ranges"),
    ({"grid": ["trials=5:1"], "random": 3}, "need LO < HI"),
    ({"grid": ["trials"]}, "expected KEY=VALUES"),
    ({"repeats": 0}, "--repeats 0"),
])
def test_invalid_specs_fail_with_a_clear_message(kwargs, message):
    with pytest.raises(ConfigError) as error:
        expand(spec(**kwargs), Config)
    assert message in str(error.value)


def test_a_bad_point_fails_the_whole_sweep_before_anything_runs(tmp_path):
    # trials and key_dim are valid alone; the zip pairs them, and the file sets a bad base
    config = tmp_path / "base.yaml"
    config.write_text("trials: 0\n")
    with pytest.raises(ConfigError, match=r"trials: 0 is out of range"):
        run_sweep(spec(grid=["key_dim=8,16"], config_file=str(config)), out=tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("grid: {key_dim: [8, 16]}\nrepeats: 2\nbogus: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'bogus'; valid keys: experiment"):
        spec(from_file=sweep_file)


def test_cli_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["sweep", NAME, "--grid", "trials=1:x:3", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuro: error: --grid trials=1:x:3") and "hint:" in err
    assert not (tmp_path / "s").exists()
    assert main(["sweep", NAME, "--grid", "key_dim=8,16", "--repeats", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 points" in out and "key_dim=16" in out
    # a dry run validates the execution options too (it listed the points and said 0)
    assert main(["sweep", NAME, "--grid", "key_dim=8", "--executor", "local", "--scheduler", "tcp://127.0.0.1:1",
                 "--dry-run"]) == 2
    assert "--scheduler/--cluster need --executor dask" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--executor", "local", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler/--cluster need --executor dask"),
    (["--scheduler", "tcp://127.0.0.1:1", "--cluster", "c.yaml"], "exclude each other"),
    (["--cluster", "missing.yaml"], "--cluster 'missing.yaml': no such file"),
    (["--from-file", "missing.yaml"], "--from-file 'missing.yaml': no such file"),
    (["--batch", "2"], "has no run_batch"),
    (["--scheduler", "garbage"], "--scheduler 'garbage': expected [SCHEME://]HOST:PORT, e.g. tcp://10.0.0.5:8786"),
    (["--scheduler", "foo://x:1"], "--scheduler 'foo://x:1': unknown scheme 'foo'; expected [SCHEME://]HOST:PORT"),
    (["--scheduler", "tcp://host"], "expected [SCHEME://]HOST:PORT"),
    (["--scheduler", "tcp://host:99999"], "expected [SCHEME://]HOST:PORT"),
    # what the cluster file or the scheduler decides was silently ignored on the command line
    (["--cluster", "c.yaml", "--workers", "4"], "--workers does not apply with --cluster"),
    (["--cluster", "c.yaml", "--threads-per-task", "2"], "--threads-per-task does not apply with --cluster"),
    (["--scheduler", "tcp://127.0.0.1:1", "--workers", "4"], "--workers does not apply with --scheduler"),
])
def test_bad_execution_options_fail_before_anything_is_created(tmp_path, capsys, argv, message):
    out = tmp_path / "s"
    assert main(["sweep", NAME, "--grid", "key_dim=8,16", "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("text, message", [
    ("grid: [1, 2]\n", "grid: expected a mapping of KEY: VALUES"),
    ("set: [1]\n", "set: expected a mapping of KEY: VALUES"),
    ("zip: 5\n", "zip: expected a mapping of KEY: VALUES"),
    ("random: {samples: 3, params: [1]}\n", "random: params: expected a mapping of KEY: DISTRIBUTION"),
    ("random: {samples: 3, bogus: 1}\n", "random: unknown key 'bogus'; valid keys: samples, params"),
    ("random: [3]\n", "random: expected a number of samples or a mapping"),
    ("config: 5\n", "config: expected a string, got 5"),
    ("grid: {key_dim: [8, 16]}\nrepeats: true\n", "--repeats True: expected a whole number >= 1"),
])
def test_malformed_sweep_files_are_usage_errors_naming_the_key(tmp_path, capsys, text, message):
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(text)
    out = tmp_path / "s"
    assert main(["sweep", NAME, "--from-file", str(sweep_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("neuro: error: ") and message in err[0] and err[1].startswith("hint: ")
    assert not out.exists()


def test_well_formed_scheduler_addresses_pass_the_check():
    from experiments.sweep.executors import check_scheduler_address

    for address in ("tcp://10.0.0.5:8786", "127.0.0.1:8786", "tls://head.cluster:8786", "tcp://[::1]:8786"):
        check_scheduler_address(address)


def _sweep_on_a_base_file(tmp_path, monkeypatch):
    """A finished 2-point sweep with --config base.yaml (trials: 1); (base, out, argv, sweep.yaml)."""
    base = tmp_path / "base.yaml"
    base.write_text("trials: 1\n")
    out = tmp_path / "s"
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", NAME, "--grid", "key_dim=8,16", "--set", "load_ratios=[1.0]", "--config", "base.yaml",
            "--workers", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    return base, out, argv, yaml.safe_load((out / "sweep.yaml").read_text())


def test_a_changed_base_config_is_a_different_sweep_and_keeps_the_finished_table(tmp_path, capsys, monkeypatch):
    base, out, argv, stored = _sweep_on_a_base_file(tmp_path, monkeypatch)
    assert stored["config"] == str(base.resolve())  # absolute: the same file from any directory
    assert stored["base_config"] == {"key_dim": 64, "value_dim": 64, "load_ratios": [1.0], "trials": 1}
    capsys.readouterr()
    base.write_text("trials: 2\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds a different sweep (sweep.yaml differs in base_config; base_config: trials 1 -> 2)" in err
    # the finished results are untouched, and sweep-show still shows them from the table
    assert main(["sweep-show", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 rows: 2 complete, 0 failed, 0 pending"
    base.write_text("trials: 1\n")  # the same base again: the same sweep, nothing to run
    assert main(argv) == 0
    assert "(0 run now, 2 already done)" in capsys.readouterr().out


def test_a_sweep_file_from_before_base_config_was_recorded_is_resumed(tmp_path, capsys, monkeypatch):
    _, out, argv, stored = _sweep_on_a_base_file(tmp_path, monkeypatch)
    older = {k: v for k, v in stored.items() if k != "base_config"}
    (out / "sweep.yaml").write_text(yaml.safe_dump({**older, "config": "base.yaml"}))  # as typed, no base
    capsys.readouterr()
    assert main(argv) == 0
    assert "(0 run now, 2 already done)" in capsys.readouterr().out
    assert yaml.safe_load((out / "sweep.yaml").read_text()) == stored  # brought up to date


def test_a_default_directory_named_before_base_config_was_recorded_is_resumed(tmp_path, capsys, monkeypatch):
    # before base_config entered sweep.yaml, the default directory's name was the digest of a
    # spec without it: the same command (no --out) must resume that directory, not rerun
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", NAME, "--grid", "key_dim=8,16", "--set", "load_ratios=[1.0]", "--set", "trials=1",
            "--workers", "1", "--quiet"]
    assert main(argv) == 0
    sweeps = tmp_path / "runs" / "sweeps"
    (current,) = sweeps.iterdir()
    stored = yaml.safe_load((current / "sweep.yaml").read_text())
    earlier = current.rename(sweeps / f"{NAME}-0e0e0e0e")  # what the older digest named it
    (earlier / "sweep.yaml").write_text(yaml.safe_dump({k: v for k, v in stored.items() if k != "base_config"}))
    capsys.readouterr()
    for _ in range(2):  # resumed, and again once its sweep.yaml was brought up to date
        assert main(argv) == 0
        assert "(0 run now, 2 already done)" in capsys.readouterr().out
        assert [p.name for p in sweeps.iterdir()] == [earlier.name]
    assert yaml.safe_load((earlier / "sweep.yaml").read_text()) == stored


def test_sweep_show_reads_the_journal_of_a_sweep_file_from_before_base_config(tmp_path, capsys, monkeypatch):
    _, out, _, stored = _sweep_on_a_base_file(tmp_path, monkeypatch)
    older = {k: v for k, v in stored.items() if k != "base_config"}
    (out / "sweep.yaml").write_text(yaml.safe_dump({**older, "config": "base.yaml"}))  # as typed, no base
    (out / "sweep.parquet").unlink()  # a runner killed before its first table flush: the journal only
    capsys.readouterr()
    assert main(["sweep-show", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 rows: 2 complete, 0 failed, 0 pending"


@pytest.mark.parametrize("argv, message", [
    (["--grid", "key_dim=[8, 16"], ("--grid key_dim=[8, 16: '[8, 16' is not a valid YAML list "
                                    "(expected ',' or ']', but got '<stream end>' at line 1, column 7)")),
    (["--from-file", "FILE"], "not valid YAML (expected ',' or ']', but got '<stream end>' at line 3, column 1)"),
])
def test_broken_yaml_in_a_grid_or_sweep_file_is_one_line(tmp_path, capsys, argv, message):
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("grid:\n  key_dim: [8\n")
    argv = [str(sweep_file) if a == "FILE" else a for a in argv]
    out = tmp_path / "s"
    assert main(["sweep", NAME, *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()  # was PyYAML's error over six or eight lines
    assert len(err) == 2 and message in err[0] and err[1].startswith("hint: ")
    assert not out.exists()


def test_an_out_that_cannot_be_a_sweep_directory_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for out, reason in ((blocker, "a file is in the way"), (blocker / "sub", "Not a directory")):
        # was a FileExistsError / NotADirectoryError traceback (exit 1)
        assert main(["sweep", NAME, "--grid", "key_dim=8,16", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2 and err[1].startswith("hint: ")
        assert err[0] == (f"neuro: error: --out {str(out)!r}: cannot create the sweep directory there "
                          f"({reason}); choose a writable folder")


def test_an_out_holding_a_sweep_yaml_that_is_not_a_sweeps_is_a_usage_error(tmp_path, capsys):
    # e.g. --out the folder that keeps one's own sweep.yaml; was a YAML or AttributeError traceback
    out = tmp_path / "s"
    out.mkdir()
    for text, what in (("grid: [8,\n", "unreadable: ParserError"), ("- 8\n- 16\n", "a list, not a mapping")):
        (out / "sweep.yaml").write_text(text)
        assert main(["sweep", NAME, "--grid", "key_dim=8,16", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err[0] == (f"neuro: error: --out {str(out)!r} holds a sweep.yaml that is not a sweep's "
                          f"({what}); choose another --out")
        assert (out / "sweep.yaml").read_text() == text and not (out / "journal.jsonl").exists()
    (out / "sweep.yaml").write_text("grid: [8,\n")
    assert main(["sweep-show", str(out)]) == 2  # was a YAML traceback too
    assert capsys.readouterr().err.splitlines()[0] == (f"neuro: error: DIR {str(out)!r}: sweep.yaml is "
                                                       "unreadable (ParserError)")


def test_zipped_values_are_checked_together_not_each_against_the_defaults():
    from experiments.counterpart_spikes import Config as SpikesConfig

    # window=600 needs train_lengths >= 1200: wrong with the default (1000, ...), right with
    # the train_lengths it is zipped with (was refused: each value was resolved alone)
    zipped = ["window=16,600", "train_lengths=[[1000, 4000], [1200, 4000]]"]
    points = expand(build_spec("counterpart_spikes", SpikesConfig, zip=zipped), SpikesConfig)
    assert [(p.config.window, p.config.train_lengths) for p in points] == [(16, (1000, 4000)),
                                                                           (600, (1200, 4000))]
    mismatched = ["window=16,600", "train_lengths=[[1200, 4000], [1000, 4000]]"]
    with pytest.raises(ConfigError, match=r"sweep point 1 \(window=600, train_lengths=\(1000, 4000\)\): "
                                          r"config: train_lengths must be increasing and each >= 2 \* window"):
        expand(build_spec("counterpart_spikes", SpikesConfig, zip=mismatched), SpikesConfig)


def test_a_fixed_value_that_fits_only_the_swept_values_is_not_refused_against_the_default():
    from experiments.reservoir_rate import Config as RateConfig

    # num_neurons=10 fits in_degree 2 and 5, not the default in_degree 20 the sweep replaces
    # (was refused: the base config alone broke reservoir_rate's new in_degree check)
    swept = build_spec("reservoir_rate", RateConfig, sets=["num_neurons=10"], grid=["in_degree=2,5"])
    points = expand(swept, RateConfig)
    assert [(p.config.num_neurons, p.config.in_degree) for p in points] == [(10, 2), (10, 5)]
    assert swept.base_config == {**swept.base_config, "num_neurons": 10, "in_degree": 20}
    assert build_spec("reservoir_rate", RateConfig, sets=["num_neurons=10"],  # same record each time
                      grid=["in_degree=2,5"]).digest() == swept.digest()
    with pytest.raises(ConfigError, match=r"in_degree=20 exceeds num_neurons - 1 = 9"):
        build_spec("reservoir_rate", RateConfig, sets=["num_neurons=10"])  # nothing swept: the base runs
    with pytest.raises(ConfigError, match=r"sweep point 1 \(in_degree=50\)"):
        expand(build_spec("reservoir_rate", RateConfig, sets=["num_neurons=10"], grid=["in_degree=2,50"]),
               RateConfig)
    with pytest.raises(ConfigError, match=r"--set num_neurons=1: num_neurons: 1 is out of range"):
        build_spec("reservoir_rate", RateConfig, sets=["num_neurons=1"], grid=["in_degree=0"])


def test_an_unreadable_sweep_file_of_another_directory_does_not_stop_a_new_sweep(tmp_path):
    from experiments.sweep.runner import _earlier_default_dir

    # looking for an older default directory reads every <experiment>-*/sweep.yaml; one that
    # is not UTF-8 text was a UnicodeDecodeError traceback for every sweep without --out
    s = spec(grid=["key_dim=8,16"], sets=["load_ratios=[1.0]", "trials=1"])
    sweeps = tmp_path / "sweeps"
    (sweeps / f"{NAME}-0a0a0a0a").mkdir(parents=True)
    (sweeps / f"{NAME}-0a0a0a0a" / "sweep.yaml").write_bytes(b"\xff\xfe\x00 not text")
    assert _earlier_default_dir(s, tmp_path) is None
    (sweeps / f"{NAME}-0b0b0b0b").mkdir()
    (sweeps / f"{NAME}-0b0b0b0b" / "sweep.yaml").write_text(yaml.safe_dump(s.to_dict()))
    assert _earlier_default_dir(s, tmp_path) == sweeps / f"{NAME}-0b0b0b0b"
