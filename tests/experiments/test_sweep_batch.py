"""Batched sweeps (--batch B): same metrics as one point per task, grouping, fallback."""
import json

import pandas as pd
import pytest

from experiments.config import ConfigError
from experiments.hebbian_recall import Config as HebbianConfig
from experiments.reservoir_rate import Config
from experiments.sweep.executors import LocalPool
from experiments.sweep.runner import run_sweep
from experiments.sweep.spec import build_spec
from experiments.sweep.table import load_frame

NAME = "reservoir_rate"
SMALL = ["num_neurons=50", "in_degree=40", "duration_ms=100", "warmup_ms=20"]


@pytest.fixture(scope="module")
def pool():
    pool = LocalPool(workers=2)
    yield pool
    pool.close()


def compared(frame):
    return frame[["point", "seed", "config_hash", "status"]
                 + [c for c in frame if c.startswith(("config.", "metric."))]]


def test_batched_sweep_gives_the_unbatched_metrics_exactly(tmp_path, pool):
    spec = build_spec(NAME, Config, grid=["drive=0:15:4", "noise_std=2,5"], zip=["num_neurons=40,50",
                      "in_degree=20,40"], sets=SMALL[2:], seed=1)
    plain = run_sweep(spec, out=tmp_path / "plain", pool=pool, report=False)
    batched = run_sweep(spec, out=tmp_path / "batched", pool=pool, batch=3, report=False)
    assert plain.counts == batched.counts == {"complete": 16, "failed": 0, "pending": 0}
    a, meta = load_frame(plain.sweep_dir)
    b, _ = load_frame(batched.sweep_dir)
    # each point's network and noise come from its own seed: batching changes nothing (bit-exact)
    pd.testing.assert_frame_equal(compared(a), compared(b), check_exact=True)
    assert meta["metrics"][0] == "rate_hz" and (a["metric.rate_hz"] > 0).all()
    # rate grows with the drive (at fixed size and noise), as an f-I curve must
    for _, group in a.groupby(["config.num_neurons", "config.noise_std"]):
        assert group.sort_values("config.drive")["metric.rate_hz"].is_monotonic_increasing
    # groups never mix sizes (batch_key): 8 points per size -> batches of 3, 3, 2
    assert sorted(b["batch_size"].tolist()) == sorted([3] * 12 + [2] * 4)
    assert (a["batch_size"] == 1).all()
    for run_dir in b["run_dir"]:  # every batched point has a complete run directory of its own
        status = json.loads((batched.sweep_dir / run_dir / "status.json").read_text())
        assert status["status"] == "complete" and status["batched"] is True
        assert (batched.sweep_dir / run_dir / "rates.npz").exists()


def test_a_failing_batch_is_rerun_point_by_point(tmp_path, pool):
    # weight_scale 100 with 40 inputs per neuron diverges (SimulationDiverged) and takes its
    # batch down; the runner reruns the batch's points alone, so only that point fails
    spec = build_spec(NAME, Config, grid=["weight_scale=1,3,100,2"], sets=SMALL, seed=2)
    result = run_sweep(spec, out=tmp_path / "s", pool=pool, batch=4, report=False)
    frame, _ = load_frame(result.sweep_dir)
    assert result.counts == {"complete": 3, "failed": 1, "pending": 0}
    failed = frame[frame["status"] == "failed"].iloc[0]
    assert failed["config.weight_scale"] == 100.0 and "SimulationDiverged" in failed["error"]
    statuses = [json.loads(p.read_text()) for p in (result.sweep_dir / "runs" / NAME).glob("*/status.json")]
    batch_runs = [s for s in statuses if s.get("batched")]
    assert len(batch_runs) == 4 and all(s["status"] == "failed" and "SimulationDiverged" in s["error"]
                                        for s in batch_runs)  # the batch attempt, recorded
    assert len(statuses) == 8 and (frame["batch_size"] == 1).all()  # then four single runs
    plain = run_sweep(spec, out=tmp_path / "plain", pool=pool, report=False)
    a, _ = load_frame(plain.sweep_dir)
    pd.testing.assert_frame_equal(compared(a), compared(frame), check_exact=True)


def test_batch_needs_run_batch(tmp_path):
    spec = build_spec("hebbian_recall", HebbianConfig, grid=["key_dim=8,16"])
    with pytest.raises(ConfigError, match="has no run_batch"):
        run_sweep(spec, out=tmp_path / "s", batch=2)
    assert not (tmp_path / "s").exists()
