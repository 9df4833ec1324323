"""bench_reservoir end to end on a tiny configuration (Brian2's numpy target as the peer:
the default cpp_standalone/cython peers compile for 30-60 s)."""
import csv
import math

import pytest

from experiments.runner import run_experiment


@pytest.mark.brian2
def test_bench_reservoir_tiny_run_reports_timings_and_ratios(tmp_path):
    pytest.importorskip("brian2")
    overrides = {"sizes": (200,), "batch_sizes": (1, 3), "batch_num_neurons": 200, "duration_ms": 50.0,
                 "repeats": 2, "brian2_targets": ("numpy",)}
    result = run_experiment("bench_reservoir", overrides=overrides, out_root=tmp_path, seed=0, quiet=True)
    m = result.metrics
    for key in ("n200_ours_loop_s", "n200_ours_whole_s", "n200_numpy_loop_s", "n200_numpy_whole_s", "n200_ours_per_step_cpu_us",
                "n200_ours_per_step_us", "batch1_ours_total_s", "batch3_ours_total_s",
                "batch3_ours_shared_total_s"):
        assert m[key] > 0
    assert m["n200_loop_ratio_vs_numpy"] == pytest.approx(m["n200_ours_loop_s"] / m["n200_numpy_loop_s"])
    assert m["n200_whole_speedup_vs_numpy"] == pytest.approx(m["n200_numpy_whole_s"] / m["n200_ours_whole_s"])
    assert m["n200_ours_per_step_us"] == pytest.approx(m["n200_ours_loop_s"] / 100 * 1e6)
    with open(result.path / "timings.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["backend"] for r in rows] == [
        "torch (ours)", "brian2 numpy"] + ["torch (ours), batched, independent wirings",
                                           "torch (ours), batched, shared wiring"] * 2
    for r in rows:
        steps_per_s = float(r["neuron_steps_per_s"])
        assert steps_per_s == pytest.approx(int(r["batch_size"]) * 200 * 100 / float(r["loop_s"]))
        assert 1.0 < float(r["rate_hz"]) < 40.0  # the same ~8 Hz network on both backends
        assert float(r["synaptic_events_per_s"]) > 0
    assert not any(k.startswith("target_") for k in m)  # the targets are defined at the sizes only
    assert (result.path / "report.html").exists()


def test_bench_reservoir_without_peers_and_bad_peer(tmp_path):
    overrides = {"sizes": (120,), "batch_sizes": (2,), "batch_num_neurons": 120, "duration_ms": 20.0,
                 "repeats": 1, "brian2_targets": ()}
    result = run_experiment("bench_reservoir", overrides=overrides, out_root=tmp_path, seed=1, quiet=True)
    assert result.metrics["batch2_ours_total_s"] > 0
    assert not any("numpy" in k or "standalone" in k for k in result.metrics)
    assert math.isfinite(result.metrics["n120_ours_per_step_us"])
    with pytest.raises(Exception, match="brian2_targets"):
        run_experiment("bench_reservoir", overrides={**overrides, "brian2_targets": ("genn",)},
                       out_root=tmp_path, seed=1, quiet=True)
