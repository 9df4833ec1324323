"""hebbian_recall: the load-1 metric against the saved recall table."""
import csv

import numpy as np

from experiments.runner import run_experiment


def _run(tmp_path, load_ratios):
    result = run_experiment("hebbian_recall", overrides={"key_dim": 16, "trials": 5, "load_ratios": load_ratios},
                            out_root=tmp_path, seed=0, quiet=True)
    with open(result.path / "recall.csv") as handle:
        rows = list(csv.DictReader(handle))
    return result.metrics, rows


def test_bit_error_at_load_1_is_the_measured_one_in_any_order(tmp_path):
    # loads given in decreasing order: np.interp on an unsorted axis reported the error at
    # load 0.25 (0.009) as the one at load 1 (0.148)
    metrics, rows = _run(tmp_path, (4.0, 2.0, 1.0, 0.5, 0.25))
    at_1 = [float(r["bit_error"]) for r in rows if float(r["load_ratio"]) == 1.0]
    assert metrics["bit_error_at_load_1"] == at_1[0]
    loads = [float(r["load_ratio"]) for r in rows]
    assert loads == sorted(loads)


def test_bit_error_at_load_1_is_nan_when_load_1_is_not_measured(tmp_path):
    # loads (2, 4): the old metric was the error at load 2, extrapolated flat to load 1
    metrics, _ = _run(tmp_path, (2.0, 4.0))
    assert np.isnan(metrics["bit_error_at_load_1"])
