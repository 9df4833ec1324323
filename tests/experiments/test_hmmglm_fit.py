"""hmmglm_fit: one scored fit; a batched sweep (one fit_sweep per seed) gives every point the
metrics of its own run."""
import numpy as np
import pandas as pd
import pytest

from experiments.hmmglm_fit import Config, batch_key
from experiments.runner import run_experiment
from experiments.sweep.executors import LocalPool
from experiments.sweep.runner import run_sweep
from experiments.sweep.spec import build_spec
from experiments.sweep.table import load_frame

SMALL = ["problem=reference", "num_timesteps=1500", "test_length=600", "num_iters=40"]


def test_a_fit_recovers_the_reference_problem(tmp_path):
    result = run_experiment("hmmglm_fit", overrides=dict(s.split("=") for s in SMALL),
                            out_root=tmp_path, seed=2, quiet=True)
    metrics = result.metrics
    # 1500 bins of problem (a) (the states differ mainly in coupling): EM finds them
    assert metrics["state_accuracy"] > 0.8 and metrics["weight_correlation"] > 0.5
    assert metrics["converged"] == 1.0 and 1 <= metrics["em_iterations"] < 40
    # the fitted model is no better on held-out data than the truth, beyond sampling noise
    assert metrics["gap_to_truth_bits_per_spike"] > -0.05
    assert (result.path / "fit.npz").exists()


def _plain_and_batched(tmp_path, grid, prior, repeats, batch):
    """The same sweep run point by point and in batches of ``batch``: two tables, rows in
    (point, seed) order, after checking that no point failed either way."""
    spec = build_spec("hmmglm_fit", Config, grid=grid, sets=SMALL + [f"prior={prior}"],
                      repeats=repeats, seed=3)
    pool = LocalPool(workers=1)
    try:
        plain = run_sweep(spec, out=tmp_path / "plain", pool=pool, report=False)
        batched = run_sweep(spec, out=tmp_path / "batched", pool=pool, batch=batch, report=False)
    finally:
        pool.close()
    assert plain.counts == batched.counts
    assert plain.counts["failed"] == plain.counts["pending"] == 0
    tables = []
    for result, size in ((plain, 1), (batched, batch)):
        frame, _ = load_frame(result.sweep_dir)
        assert (frame["batch_size"] == size).all()
        tables.append(frame.sort_values(["point", "seed"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(tables[0][["point", "seed"]], tables[1][["point", "seed"]])
    return tables


def test_batched_sweep_gives_each_point_its_own_runs_metrics(tmp_path):
    a, b = _plain_and_batched(tmp_path, ["prior_sigma=0.05,1.0", "stickiness=0,200"], "gaussian",
                              repeats=2, batch=8)
    assert len(a) == 8
    exact = ["metric.em_iterations", "metric.converged", "metric.state_accuracy"]
    pd.testing.assert_frame_equal(a[exact], b[exact], check_exact=True)
    # float64 EM in a batch of 8 (two seeds, two fit_sweep calls) vs alone: batched sums
    # round differently (~1e-15), which tens of iterations leave below 1e-8
    for column in [c for c in a if c.startswith("metric.") and c not in exact]:
        np.testing.assert_allclose(b[column], a[column], rtol=1e-8, atol=1e-10, err_msg=column)
    # the hyperparameters matter: a narrow prior ties the states' couplings to their common
    # mean, a MAP fit further from the maximum likelihood: lower training log-likelihood at
    # every (seed, stickiness)
    paired = a.pivot_table(index=["seed", "config.stickiness"], columns="config.prior_sigma",
                           values="metric.train_log_likelihood")
    assert (paired[0.05] < paired[1.0]).all(), paired


def test_batched_onehot_sweep_over_the_strength_floor(tmp_path):
    # the one-hot prior's identifiability guard is swept in one batched EM, with the same
    # metrics as the points' own runs; a floor above most true strengths changes the fit
    a, b = _plain_and_batched(tmp_path, ["strength_floor=0.1,1.2"], "onehot", repeats=1, batch=2)
    assert len(a) == 2
    for column in [c for c in a if c.startswith("metric.")]:
        np.testing.assert_allclose(b[column], a[column], rtol=1e-8, atol=1e-10, err_msg=column)
    assert a["metric.train_log_likelihood"].nunique() == 2


def test_batch_key_ignores_only_the_swept_hyperparameters():
    base = Config()
    assert batch_key(base) == batch_key(Config(prior_sigma=2.0, stickiness=9.0,
                                               transition_concentration=3.0))
    assert batch_key(base) != batch_key(Config(num_timesteps=100))
    assert batch_key(base) != batch_key(Config(prior="onehot"))


def test_run_batch_refuses_configs_that_cannot_share_a_fit():
    from experiments.hmmglm_fit import run_batch

    with pytest.raises(ValueError, match="differ beyond the swept hyperparameters"):
        run_batch([Config(), Config(num_timesteps=100)], [None, None])
