"""WhatWhenTask: trial statistics, trial arrays, seeding, every error path."""
import math

import numpy as np
import pytest
import torch

from neuro.reservoir.task import Block, WhatWhenTask, as_numpy_generator


def _task(**kwargs):
    blocks = kwargs.pop("blocks", (Block(30, 300.0, (0.6, 0.3)), Block(20, 500.0, (0.2, 0.2))))
    return WhatWhenTask(blocks=blocks, **kwargs)


def test_identity_frequencies_match_probabilities():
    probabilities = (0.5, 0.25, 0.1)
    task = WhatWhenTask(blocks=(Block(20000, 200.0, probabilities),))
    session = task.sample(seed=7)
    n = session.num_trials
    for k, p in enumerate(probabilities + (1 - sum(probabilities),)):
        label = k if k < len(probabilities) else -1
        frequency = np.mean(session.identity == label)
        # binomial standard error; 5 sigma makes a false failure ~1e-6 per check
        assert abs(frequency - p) < 5 * math.sqrt(p * (1 - p) / n), (k, frequency, p)


def test_blocks_switch_latency_and_probabilities():
    task = _task()
    session = task.sample(seed=0)
    assert task.num_trials == session.num_trials == 50
    assert task.block_starts() == [0, 30]
    assert np.all(session.latency_ms[:30] == 300.0) and np.all(session.latency_ms[30:] == 500.0)
    assert np.all(session.block[:30] == 0) and np.all(session.block[30:] == 1)
    assert np.allclose(session.probabilities[:30], (0.6, 0.3))
    assert np.allclose(session.probabilities[30:], (0.2, 0.2))
    assert set(np.unique(session.identity)) <= {-1, 0, 1}


def test_zero_and_full_probabilities_are_deterministic():
    none = WhatWhenTask(blocks=(Block(100, 200.0, (0.0, 0.0)),)).sample(1)
    assert np.all(none.identity == -1)
    always = WhatWhenTask(blocks=(Block(100, 200.0, (0.0, 1.0)),)).sample(1)
    assert np.all(always.identity == 1)


def test_seeding_reproduces_and_accepts_generators():
    task = _task()
    a, b, c = task.sample(3), task.sample(np.random.default_rng(3)), task.sample(4)
    assert np.array_equal(a.identity, b.identity)
    assert not np.array_equal(a.identity, c.identity)
    generator = torch.Generator().manual_seed(3)
    d, e = task.sample(generator), task.sample(generator)  # a generator is consumed
    assert np.array_equal(d.identity, task.sample(torch.Generator().manual_seed(3)).identity)
    assert not np.array_equal(d.identity, e.identity)


def test_trial_arrays_place_cue_stimulus_targets_and_gate():
    task = _task(what_target="outcome")
    session = task.sample(0)
    dt = 0.5
    trial = int(np.flatnonzero(session.identity == 1)[0])
    arrays = task.trial(session, trial, dt, dtype=torch.float64)
    time_ms = np.arange(task.num_steps(dt)) * dt
    onset = task.cue_onset_ms + session.latency_ms[trial]
    inputs = arrays.inputs.numpy()
    assert inputs.shape == (2000, 3)
    cue = (time_ms >= 100) & (time_ms < 150)
    assert np.all(inputs[cue, 0] == 1) and np.all(inputs[~cue, 0] == 0)
    stim = (time_ms >= onset) & (time_ms < onset + 50)
    assert np.all(inputs[stim, 2] == 1) and np.all(inputs[~stim, 2] == 0)
    assert np.all(inputs[:, 1] == 0)
    target, ideal, gate = (x.numpy() for x in (arrays.target, arrays.ideal, arrays.gate))
    assert time_ms[np.argmax(target[:, 0])] == onset and target[:, 0].max() == 1.0
    # anticipatory what target: peak anticipation_ms before onset, zero from onset on
    assert time_ms[np.argmax(target[:, 2])] == onset - task.anticipation_ms
    assert np.all(target[time_ms >= onset, 1:] == 0)
    assert target[:, 2].max() == 1.0 and np.all(target[:, 1] == 0)  # the outcome, not p
    assert np.isclose(ideal[:, 1].max(), 0.6) and np.isclose(ideal[:, 2].max(), 0.3)
    window = (time_ms >= onset - 150) & (time_ms <= onset + 75)
    assert np.all(gate[window] == 1) and np.all(gate[~window] == task.gate_floor)


def test_cue_trace_channel_decays_from_the_cue_onset():
    task = _task(cue_trace_tau_ms=200.0, input_amplitude=2.0)
    assert task.num_inputs == 4
    arrays = task.trial(task.sample(0), 0, 0.5, dtype=torch.float64)
    time_ms = np.arange(2000) * 0.5
    expected = np.where(time_ms >= 100, 2.0 * np.exp(-(time_ms - 100) / 200.0), 0.0)
    assert np.allclose(arrays.inputs[:, 3].numpy(), expected, rtol=1e-12, atol=0)
    assert _task().num_inputs == 3


def test_probability_targets_and_no_stimulus_trials():
    task = _task(what_target="probability")
    session = task.sample(0)
    trial = int(np.flatnonzero(session.identity == -1)[0])
    arrays = task.trial(session, trial, 1.0)
    assert torch.count_nonzero(arrays.inputs[:, 1:]) == 0
    assert torch.equal(arrays.target, arrays.ideal)
    assert arrays.target[:, 0].max() == 1.0  # the when pulse comes in catch trials too


@pytest.mark.parametrize("make, error, match", [
    (lambda: Block(10, 200.0, (0.7, 0.4)), ValueError, "sum to <= 1"),
    (lambda: Block(10, 200.0, (-0.1, 0.4)), ValueError, "probabilities"),
    (lambda: Block(10, 200.0, ()), ValueError, "probabilities"),
    (lambda: Block(-5, 200.0, (0.5,)), ValueError, "num_trials"),
    (lambda: Block(2.5, 200.0, (0.5,)), TypeError, "num_trials"),
    (lambda: Block(10, -200.0, (0.5,)), ValueError, "latency_ms"),
    (lambda: Block(10, float("nan"), (0.5,)), ValueError, "latency_ms"),
    (lambda: WhatWhenTask(blocks=()), ValueError, "blocks"),
    (lambda: WhatWhenTask(blocks=(Block(5, 200.0, (0.5,)), Block(5, 200.0, (0.2, 0.2)))),
     ValueError, "same number"),
    (lambda: WhatWhenTask(blocks=(Block(5, 900.0, (0.5,)),)), ValueError, "exceeds"),
    (lambda: WhatWhenTask(blocks=(Block(5, 20.0, (0.5,)),)), ValueError, "cue_ms"),
    (lambda: _task(trial_ms=-1.0), ValueError, "trial_ms"),
    (lambda: _task(target_width_ms=0.0), ValueError, "target_width_ms"),
    (lambda: _task(gate_floor=1.5), ValueError, "gate_floor"),
    (lambda: _task(cue_trace_tau_ms=-5.0), ValueError, "cue_trace_tau_ms"),
    (lambda: _task(what_target="sometimes"), ValueError, "what_target"),
    (lambda: _task(cue_ms="long"), TypeError, "cue_ms"),
    (lambda: as_numpy_generator(-1), ValueError, "seed=-1 is out of range"),
    (lambda: as_numpy_generator("seed"), TypeError, "seed"),
    (lambda: _task().num_steps(1.5), ValueError, "dt_ms"),
    (lambda: _task().num_steps(0.0), ValueError, "dt_ms"),
    (lambda: _task().trial(_task().sample(0), 50, 0.5), ValueError, "trial_index"),
])
def test_error_paths(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_session_of_another_task_is_rejected():
    session = WhatWhenTask(blocks=(Block(5, 200.0, (0.5,)),)).sample(0)
    with pytest.raises(ValueError, match="identities"):
        _task().trial(session, 0, 0.5)


def test_numpy_scalars_and_float32_arrays_are_accepted_and_stored_as_python_numbers():
    # Block accepts an ndarray of probabilities, but a float32 one was refused with the false
    # "probabilities must lie in [0, 1], got (np.float32(0.25), ...)"; np.float32 / np.int64
    # latencies, trial counts and task times were TypeErrors ("must be a real number")
    block = Block(np.int64(3), np.float32(200.0), np.array([0.25, 0.5], dtype=np.float32))
    assert block == Block(3, 200.0, (0.25, 0.5))
    assert type(block.num_trials) is int and type(block.latency_ms) is float
    task = WhatWhenTask((block,), trial_ms=np.float32(500.0), gate_floor=np.float64(0.2), cue_ms=np.int64(40))
    assert task == WhatWhenTask((Block(3, 200.0, (0.25, 0.5)),), trial_ms=500.0, gate_floor=0.2, cue_ms=40.0)
    assert type(task.trial_ms) is float and task.num_steps(0.5) == 1000
    assert task.trial(task.sample(0), 0, 0.5).inputs.shape == (1000, 3)
    with pytest.raises(ValueError, match="probabilities must lie in"):
        Block(2, 200.0, np.array([1.5], dtype=np.float32))
