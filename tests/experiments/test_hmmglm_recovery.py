"""hmmglm_recovery end to end on a small problem: metrics, table, figures, claim verdict."""
import csv

import pytest

from experiments.runner import run_experiment


def test_hmmglm_recovery_small(tmp_path):
    result = run_experiment(
        "hmmglm_recovery",
        overrides={"train_lengths": (800, 1600), "test_length": 800, "num_states": 2,
                   "num_neurons": 6, "num_iters": 15},
        out_root=tmp_path, seed=1, quiet=True)
    metrics = result.metrics
    for prior in ("none", "gaussian", "onehot"):
        for length in (800, 1600):
            assert 0.0 <= metrics[f"{prior}_state_accuracy_T{length}"] <= 1.0
            assert 0.0 <= metrics[f"{prior}_type_accuracy_off_diagonal_T{length}"] <= 1.0
    assert isinstance(metrics["onehot_helps_most_with_little_data"], bool)
    assert metrics["true_heldout_bits_per_spike"] > 0
    with open(result.path / "recovery.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    for name in ("coupling_matrices", "learned_prior", "state_raster", "loglik_curves"):
        assert (result.path / f"{name}.png").exists()


def test_hmmglm_recovery_rejects_unknown_prior(tmp_path):
    with pytest.raises(ValueError, match="priors"):
        run_experiment("hmmglm_recovery", overrides={"priors": ("laplace",), "train_lengths": (300,),
                                                     "num_neurons": 3, "num_states": 2},
                       out_root=tmp_path, seed=0, quiet=True)


def test_hmmglm_recovery_refuses_one_state_as_a_config_error(tmp_path):
    # num_states=1 passed the config (min 1) and the run then failed in paper_problem
    # ("num_states must be >= 2"), after its run directory had been made
    from experiments.config import ConfigError

    with pytest.raises(ConfigError, match="num_states"):
        run_experiment("hmmglm_recovery", overrides={"num_states": 1, "train_lengths": (300,), "num_neurons": 3},
                       out_root=tmp_path, seed=0, quiet=True)
    assert not list(tmp_path.rglob("metrics.json")) and not list(tmp_path.rglob("config.yaml"))
