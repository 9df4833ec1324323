"""bench_hmmglm end to end on a short problem (a); the dynamax peer only if it imports."""
import importlib.util

import pytest

from experiments.runner import run_experiment

SMALL = {"num_timesteps": 1500, "repeats": 1, "em_iters": 3, "reference_bases": False}


def test_bench_hmmglm_without_peer(tmp_path):
    result = run_experiment("bench_hmmglm", overrides={**SMALL, "peer_iters": 0, "restart_batch": 3,
                                                                "restart_dtypes": ("float64", "float32")},
                            out_root=tmp_path, seed=0, quiet=True)
    metrics = result.metrics
    assert metrics["peer_available"] is False
    # the batched-restart timing ran in both dtypes: 1 and 3 restarts, at most em_iters
    # iterations each
    assert metrics["restart_batch_size"] == 3
    for prefix in ("", "float32_"):
        for label in ("one", "all"):
            assert 1 <= metrics[f"{prefix}restart_batch_{label}_em_iterations"] <= SMALL["em_iters"]
            assert metrics[f"{prefix}restart_batch_{label}_em_seconds_per_iteration"] > 0
        assert metrics[f"{prefix}restart_batch_em_time_ratio"] > 0
        assert metrics[f"{prefix}restart_batch_init_time_ratio"] > 0
        for name in ("restart_batch_one_fit_seconds", "restart_batch_all_fit_seconds",
                     "sweep_batch_all_fit_seconds", "restart_batch_fit_time_ratio",
                     "sweep_batch_fit_time_ratio"):
            assert metrics[f"{prefix}{name}"] > 0
        for label in ("restart_batch_one", "restart_batch_all", "sweep_batch_all"):
            assert 1 <= metrics[f"{prefix}{label}_fit_iterations"] <= 100
        # the sweep's first point (stickiness 0) is the lone fit: the batch runs at least as long
        assert (metrics[f"{prefix}sweep_batch_all_fit_iterations"]
                >= metrics[f"{prefix}restart_batch_one_fit_iterations"])
    assert metrics["ours_seconds_per_iteration"] > 0
    assert metrics["ours_forward_backward_us_per_step"] > 0
    assert 0.0 <= metrics["ours_converged_state_accuracy"] <= 1.0
    assert metrics["ours_converged_iterations"] <= 100
    # the fit (parameters chosen by maximum likelihood) beats the generating parameters in-sample
    assert metrics["ours_converged_log_likelihood"] > metrics["true_log_likelihood"]
    assert (result.path / "hmmglm_benchmark.csv").exists()


@pytest.mark.skipif(importlib.util.find_spec("dynamax") is None, reason="dynamax (optional peer) not installed")
def test_bench_hmmglm_with_dynamax_peer(tmp_path):
    result = run_experiment("bench_hmmglm", overrides={**SMALL, "peer_iters": 2},
                            out_root=tmp_path, seed=0, quiet=True)
    metrics = result.metrics
    assert metrics["peer_available"] is True
    assert metrics["em_iteration_time_ratio"] > 0
    assert metrics["forward_backward_time_ratio"] > 0
    # ours ran em_iters = 3, the peer 2: the comparison with the peer uses ours' own run of
    # 2 iterations from the same start (same stopping point), not the 3-iteration one
    assert metrics["ours_iterations"] == 3 and metrics["ours_at_peer_iters_iterations"] == 2
    assert metrics["em_iteration_time_ratio"] == pytest.approx(
        metrics["ours_at_peer_iters_seconds_per_iteration"] / metrics["peer_seconds_per_iteration"])
    assert metrics["em_iteration_cpu_time_ratio"] == pytest.approx(
        metrics["ours_at_peer_iters_cpu_seconds_per_iteration"] / metrics["peer_cpu_seconds_per_iteration"])
    # same start, same model, same iterations: both improve on the start and stay close
    assert abs(metrics["peer_log_likelihood"] - metrics["ours_at_peer_iters_log_likelihood"]) < 0.01 * abs(
        metrics["ours_at_peer_iters_log_likelihood"])
