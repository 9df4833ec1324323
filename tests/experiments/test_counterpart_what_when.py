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


def test_test_latencies_may_not_be_pretraining_latencies(tmp_path):
    from experiments.config import ConfigError
    with pytest.raises((ValueError, ConfigError), match="pretrain_latencies_ms"):
        run_experiment("counterpart_what_when", overrides={**TINY, "pretrain_latencies_ms": (200.0, 250.0)},
                       out_root=tmp_path, seed=0, quiet=True)
