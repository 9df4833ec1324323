"""End-to-end run of the what_when experiment at a tiny size (the science runs in the
experiment itself: `neuro run what_when`)."""
import json

import numpy as np
import pytest

from experiments.config import ConfigError
from experiments.runner import run_experiment

TINY = {"num_neurons": 60, "in_degree": 20, "dt_ms": 1.0, "trials_per_block": (7, 7, 7), "evaluation_trials": 4,
        "recovery_window": 2}


def test_what_when_runs_end_to_end_and_writes_its_report(tmp_path):
    result = run_experiment("what_when", overrides=TINY, out_root=tmp_path, seed=0, quiet=True)
    metrics = result.metrics
    for learner in ("three_factor", "force", "force_reset"):
        for key in ("timing_error_ms", "what_probability_corr", "latency_recovery_trials",
                    "probability_recovery_trials", "what_when_angle_deg"):
            assert f"{learner}_{key}" in metrics
        assert 0.0 <= metrics[f"{learner}_what_when_angle_deg"] <= 90.0
        assert 0.0 <= metrics[f"{learner}_timing_error_ms"] <= 1000.0
    assert metrics["mean_rate_hz"] > 0
    for name in ("raster.png", "readouts.png", "learning_curves.png", "subspace_angles.png",
                 "claims.csv", "session.npz", "report.html", "metrics.json"):
        assert (result.path / name).exists(), name
    saved = json.loads((result.path / "metrics.json").read_text())
    assert saved["three_factor_timing_error_ms"] == pytest.approx(metrics["three_factor_timing_error_ms"])
    arrays = np.load(result.path / "session.npz")
    assert arrays["three_factor_outputs"].shape == (21, 1, 200, 4)
    # FORCE with and without reset see the same spikes and agree until the first switch
    assert np.array_equal(arrays["force_outputs"][:7], arrays["force_reset_outputs"][:7])


def test_what_when_rejects_inconsistent_blocks(tmp_path):
    with pytest.raises((ValueError, ConfigError), match="trials_per_block"):
        run_experiment("what_when", overrides={**TINY, "trials_per_block": (7, 7)},
                       out_root=tmp_path, seed=0, quiet=True)
    with pytest.raises((ValueError, ConfigError), match="probabilities"):
        run_experiment("what_when", overrides={**TINY, "probabilities_after": (0.5, 0.5)},
                       out_root=tmp_path, seed=0, quiet=True)
    # refused before the session runs, not after it when the what score divides by zero
    with pytest.raises((ValueError, ConfigError), match=r"probabilities_after=\(0.0, 0.0, 0.0\) must have a positive sum"):
        run_experiment("what_when", overrides={**TINY, "probabilities_after": (0.0, 0.0, 0.0)},
                       out_root=tmp_path, seed=0, quiet=True)


def test_what_when_on_the_compiled_engine(tmp_path):
    # the same study with the reservoir loop in C (its own noise stream): it runs end to end
    # and the network fires at the eager run's rate within a factor of two
    from kernels.izhikevich.compiled import find_compiler

    if find_compiler() is None:
        pytest.skip("no C compiler: engine='compiled' is unavailable here")
    rates = {engine: run_experiment("what_when", overrides={**TINY, "engine": engine}, out_root=tmp_path,
                                    seed=0, quiet=True).metrics["mean_rate_hz"]
             for engine in ("eager", "compiled")}
    assert 0.5 < rates["compiled"] / rates["eager"] < 2.0
    with pytest.raises(ConfigError, match="engine"):
        run_experiment("what_when", overrides={**TINY, "engine": "jit"}, out_root=tmp_path, seed=0, quiet=True)


def test_what_when_in_degree_beyond_the_network_is_a_config_error(tmp_path):
    # num_neurons=10 (the documented minimum) with the default in_degree=100 made a run
    # directory and then failed in make_reservoir
    with pytest.raises(ConfigError, match="in_degree=100 exceeds num_neurons - 1 = 9"):
        run_experiment("what_when", overrides={**TINY, "num_neurons": 10, "in_degree": 100},
                       out_root=tmp_path, seed=0, quiet=True)
    assert not list(tmp_path.rglob("config.yaml"))


def test_what_when_bins_that_do_not_fit_the_steps_are_a_config_error(tmp_path):
    # dt 0.3 ms (allowed) with the default 5 ms bins made a run directory, then failed in the session
    with pytest.raises(ConfigError, match=r"bin_ms=5.0 must be a whole number of steps dividing the trial"):
        run_experiment("what_when", overrides={**TINY, "dt_ms": 0.3}, out_root=tmp_path, seed=0, quiet=True)
    assert not list(tmp_path.rglob("config.yaml"))
