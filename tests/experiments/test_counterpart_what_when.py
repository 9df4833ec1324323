"""counterpart_what_when: the bin-level trials equal the task's own arrays, streaming equals the
meta-training path, and a tiny end-to-end run writes every metric and figure."""
import numpy as np
import pytest
import torch

from experiments import what_when
from experiments._counterpart_learners import Counterpart, TrialShapes
from experiments.runner import run_experiment


def _task():
    return what_when.build_task(what_when.Config(trials_per_block=(15, 15, 15)))


def test_composed_trials_equal_the_task_arrays_binned():
    task = _task()
    session = task.sample(np.random.default_rng(1))
    shapes = TrialShapes(task, 0.5, 10.0)
    inputs, target, ideal = shapes.trials(session.latency_ms, session.identity, session.probabilities)
    for trial in (0, 17, 33, 44):
        arrays = task.trial(session, trial, 0.5, dtype=torch.float64)
        binned = lambda a: a.numpy().reshape(-1, 20, a.shape[-1]).mean(1)
        # float32 storage of bin means of O(1) values: 1e-6
        assert np.allclose(inputs[trial].numpy(), binned(arrays.inputs), atol=1e-6)
        assert np.allclose(target[trial].numpy(), binned(arrays.target), atol=1e-6)
        assert np.allclose(ideal[trial].numpy(), binned(arrays.ideal), atol=1e-6)


@pytest.mark.parametrize("kind", ["fast_weights", "gated_fast_weights", "softmax"])
def test_streaming_trials_equals_the_episode_path(kind):
    task = _task()
    session = task.sample(np.random.default_rng(2))
    shapes = TrialShapes(task, 0.5, 10.0)
    inputs, target, _ = shapes.trials(session.latency_ms[:7], session.identity[:7], session.probabilities[:7])
    model = Counterpart(kind, task.num_inputs, task.num_readouts, inputs.shape[1], pattern="D", model_dim=8,
                        key_dim=6, context_trials=3, seed=0)
    with torch.no_grad():
        batched = model.episode(inputs[None], target[None])[0]
    state, streamed = None, []
    for trial in range(7):
        prediction, state = model.stream_trial(state, inputs[trial], target[trial])
        streamed.append(prediction)
    # float32, chunked vs per-trial writes and a different softmax grouping: 1e-5
    assert torch.allclose(torch.stack(streamed), batched, atol=1e-5)
    assert torch.count_nonzero(streamed[0]) == 0                      # empty memory predicts nothing


TINY = {"reservoir.num_neurons": 60, "reservoir.in_degree": 20, "reservoir.dt_ms": 1.0,
        "reservoir.trials_per_block": (7, 7, 7), "reservoir.evaluation_trials": 4, "reservoir.recovery_window": 2,
        "pretrain_steps": 3, "pretrain_batch": 2, "pretrain_trials": 4, "model_dim": 8, "key_dim": 8,
        "context_trials": 3, "timing_trials": 1}


def test_end_to_end_tiny_run(tmp_path):
    result = run_experiment("counterpart_what_when", overrides=TINY, out_root=tmp_path, seed=0, quiet=True)
    m = result.metrics
    for learner in ("three_factor", "force", "force_reset", "fast_weights", "gated_fast_weights", "softmax"):
        for key in ("timing_error_ms", "what_probability_corr", "latency_recovery_trials",
                    "probability_recovery_trials", "seconds_per_trial", "macs_per_trial"):
            assert f"{learner}_{key}" in m
        assert 0 <= m[f"{learner}_timing_error_ms"] <= 1000
        assert m[f"{learner}_macs_per_trial"] > 0
    for name in ("performance.png", "outputs.png", "cost.png", "meta_training.png", "learners.csv", "outputs.npz"):
        assert (result.path / name).exists(), name
    with np.load(result.path / "outputs.npz") as arrays:  # every learner stays finite (the
        for name in arrays.files:                          # unclamped features once blew one up)
            assert np.isfinite(arrays[name]).all(), name


def test_verdict_ignores_recoveries_from_a_performance_at_or_below_zero():
    from experiments._counterpart_analysis import verdict

    metrics = {}
    for name, (reference, trials) in {"never_learned": (-0.2, 0.0), "learned": (0.6, 5.0)}.items():
        for label in ("latency", "probability"):
            metrics[f"{name}_{label}_reference_performance"] = reference
            metrics[f"{name}_{label}_recovery_trials"] = trials
        metrics.update({f"{name}_when_performance_final": 0.5, f"{name}_what_performance_final": 0.5,
                        f"{name}_seconds_per_trial": 0.01, f"{name}_macs_per_trial": 1e6})
    best, _ = verdict(metrics, ["never_learned", "learned"])
    assert best == "learned"


def test_test_latencies_may_not_be_pretraining_latencies(tmp_path):
    from experiments.config import ConfigError
    with pytest.raises((ValueError, ConfigError), match="pretrain_latencies_ms"):
        run_experiment("counterpart_what_when", overrides={**TINY, "pretrain_latencies_ms": (200.0, 250.0)},
                       out_root=tmp_path, seed=0, quiet=True)


def test_the_ideal_output_scores_zero_timing_error_and_full_performance():
    # timing is measured against the ideal target's own peak at the same bin resolution,
    # so a perfect readout scores 0 ms (against the onset it scored half a bin)
    from experiments import counterpart_what_when
    from experiments._counterpart_analysis import score

    task = _task()
    session = task.sample(np.random.default_rng(2))
    config = counterpart_what_when.Config(reservoir=what_when.Config(trials_per_block=(15, 15, 15),
                                                                     evaluation_trials=5))
    shapes = TrialShapes(task, config.reservoir.dt_ms, config.bin_ms)
    _, _, ideal = shapes.trials(session.latency_ms, session.identity, session.probabilities)
    ideal = ideal.double().numpy()
    metrics, _, _ = score(config, task, session, shapes, ideal, {"perfect": ideal}, {"perfect": 0.0},
                          {"perfect": 1.0})
    assert metrics["perfect_timing_error_ms"] == 0.0
    assert metrics["perfect_when_performance_final"] == 1.0 and metrics["perfect_what_performance_final"] == 1.0
