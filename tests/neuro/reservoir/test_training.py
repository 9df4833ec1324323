"""The online training loop against a hand-written step-by-step loop, and its errors."""
import numpy as np
import pytest
import torch

from neuro.reservoir.build import make_reservoir
from neuro.reservoir.force import FORCEReadout
from neuro.reservoir.simulation import simulate
from neuro.reservoir.step import reservoir_step
from neuro.reservoir.task import Block, WhatWhenTask
from neuro.reservoir.three_factor import ThreeFactorReadout
from neuro.reservoir.training import Learner, readout_features, run_session, spike_counts_from_trace

DT = 1.0


def _setup(num_neurons=40, dtype=torch.float64):
    task = WhatWhenTask(blocks=(Block(3, 80.0, (0.6, 0.3)), Block(3, 120.0, (0.3, 0.6))),
                        trial_ms=250.0, cue_onset_ms=20.0, cue_ms=30.0, stimulus_ms=30.0,
                        target_width_ms=15.0, anticipation_ms=20.0, gate_before_ms=40.0,
                        gate_after_ms=30.0, cue_trace_tau_ms=100.0)
    # no noise: the reservoir is deterministic, so run_session (fast path) and a
    # reservoir_step loop see identical spikes (A1 documents bit-identity in float64)
    params, state = make_reservoir(num_neurons, task.num_inputs, in_degree=10, noise_std=0.0,
                                   input_scale=15.0, synapse="exponential", synapse_tau_ms=20.0,
                                   weight_scale=1.0, seed=3, dtype=dtype)
    features = num_neurons + 1
    three = ThreeFactorReadout(task.num_readouts, features, learning_rate=(1e-2, 2e-3, 2e-3),
                               eligibility_tau_ms=10.0, dt_ms=DT, online=(True, False, False))
    force = FORCEReadout(task.num_readouts, features, alpha=0.5, update_every=3)
    learners = [Learner("three", three, three.initial_state(1, dtype=dtype)),
                Learner("force", force, force.initial_state(1, dtype=dtype)),
                Learner("force_reset", force, force.initial_state(1, dtype=dtype), True)]
    return task, params, state, learners


def test_run_session_equals_a_step_by_step_loop():
    task, params, state, learners = _setup()
    session = task.sample(0)
    offset = torch.full((1, params.num_neurons), 0.05, dtype=torch.float64)
    scale = torch.full((1, params.num_neurons), 2.0, dtype=torch.float64)
    record = run_session(task, session, params, state, learners, DT, seed=0, bin_ms=5.0,
                         feature_offset=offset, feature_scale=scale, record_spikes=(1,))

    states = {learner.name: learner.state for learner in learners}
    outputs = {learner.name: [] for learner in learners}
    probes = {learner.name: [] for learner in learners}
    for trial in range(session.num_trials):
        if trial == task.block_starts()[1]:
            states["force_reset"] = learners[2].readout.reset(states["force_reset"])
        arrays = task.trial(session, trial, DT, dtype=torch.float64)
        trial_outputs = {name: [] for name in states}
        trial_probes = {name: [] for name in states}
        start_weights = {name: value.weights.clone() for name, value in states.items()}
        for t in range(arrays.inputs.shape[0]):
            state, _ = reservoir_step(state, params, arrays.inputs[t:t + 1], DT)
            x = torch.cat([(state.trace - offset) / scale, torch.ones(1, 1, dtype=torch.float64)], -1)
            for learner in learners:
                if learner.name == "three":
                    states["three"], z = learner.readout.step(states["three"], x, arrays.target[t], arrays.gate[t])
                else:
                    states[learner.name], z = learner.readout.step(states[learner.name], x, arrays.target[t])
                trial_outputs[learner.name].append(z)
                trial_probes[learner.name].append(start_weights[learner.name][0] @ x[0])
        states["three"] = learners[0].readout.consolidate(states["three"])
        for name, values in trial_outputs.items():
            binned = torch.stack(values)[:, 0].reshape(-1, 5, task.num_readouts).mean(1)
            outputs[name].append(binned.numpy())
            probes[name].append(torch.stack(trial_probes[name]).reshape(-1, 5, task.num_readouts).mean(1).numpy())
    # float64: the two loops run the same arithmetic, up to summation order in bmm / bins
    for learner in record.learners:
        assert np.allclose(record.outputs[learner.name][:, 0], np.stack(outputs[learner.name]),
                           atol=1e-9, rtol=1e-9)
        assert np.allclose(record.probe_outputs[learner.name][:, 0], np.stack(probes[learner.name]),
                           atol=1e-9, rtol=1e-9)
        assert torch.allclose(learner.state.weights, states[learner.name].weights, atol=1e-9, rtol=1e-9)
        assert np.allclose(record.weights[learner.name][-1], states[learner.name].weights.numpy(), atol=1e-5)
    assert record.outputs["three"].shape == (6, 1, 50, 3)
    assert record.target.shape == record.ideal.shape == record.gate.shape == (6, 50, 3)
    assert set(record.spikes) == {1}
    # the reset made the two FORCE learners differ only from the second block on
    first_block = slice(0, 3)
    assert np.array_equal(record.outputs["force"][first_block], record.outputs["force_reset"][first_block])
    assert not np.allclose(record.outputs["force"][3:], record.outputs["force_reset"][3:])


def test_population_rate_from_traces_matches_the_raster():
    task, params, state, _ = _setup(dtype=torch.float64)
    arrays = task.trial(task.sample(0), 0, DT, dtype=torch.float64)
    warm = simulate(params, state, arrays.inputs.unsqueeze(0), DT, record="none")
    result = simulate(params, warm.state, arrays.inputs.unsqueeze(0), DT, record="dense", record_trace=True)
    decay = float(np.exp(-DT / params.trace_tau_ms))
    counts = spike_counts_from_trace(result.trace, warm.state.trace, decay)
    assert result.num_spikes > 0
    assert torch.allclose(counts, result.spikes.sum(-1).double(), atol=1e-9)


def test_readout_features_standardise_and_append_bias():
    trace = torch.arange(6.0).reshape(1, 2, 3)
    x = readout_features(trace, offset=torch.ones(1, 1, 3), scale=torch.full((1, 1, 3), 2.0))
    assert torch.equal(x, torch.tensor([[[-0.5, 0.0, 0.5, 1.0], [1.0, 1.5, 2.0, 1.0]]]))
    assert torch.equal(readout_features(trace, bias=False), trace)
    clipped = readout_features(trace, offset=torch.ones(1, 1, 3), clip=2.5)
    assert torch.equal(clipped, torch.tensor([[[-1.0, 0.0, 1.0, 1.0], [2.0, 2.5, 2.5, 1.0]]]))


def test_run_session_rejects_mismatches():
    task, params, state, learners = _setup()
    session = task.sample(0)
    with pytest.raises(ValueError, match="bin_ms"):
        run_session(task, session, params, state, learners, DT, bin_ms=3.3)
    with pytest.raises(ValueError, match="unique"):
        run_session(task, session, params, state, [learners[0], learners[0]], DT)
    wrong = learners[0]._replace(state=learners[0].readout.initial_state(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="weights of shape"):
        run_session(task, session, params, state, [wrong], DT)
    other, _ = make_reservoir(40, 7, noise_std=0.0, in_degree=10, seed=0)
    with pytest.raises(ValueError, match="input channels"):
        run_session(task, session, other, state, learners, DT)
    with pytest.raises(ValueError, match="dt_ms"):
        run_session(task, session, params, state, learners, 2.0)
    # 5.2 ms rounds to 10 steps of 0.5 ms: the bins would be 5 ms while the record said 5.2
    with pytest.raises(ValueError, match=r"bin_ms=5.2 must be a whole number of steps"):
        run_session(task, session, params, state, learners, 0.5, bin_ms=5.2)
    other_task = WhatWhenTask(blocks=(Block(4, 80.0, (0.6, 0.3)), Block(2, 120.0, (0.3, 0.6))),
                              trial_ms=250.0, cue_onset_ms=20.0, cue_ms=30.0, stimulus_ms=30.0)
    with pytest.raises(ValueError, match=r"session has blocks of \[4, 2\] trials .* the task's blocks have \[3, 3\]"):
        run_session(task, other_task.sample(0), params, state, learners, DT)
    with pytest.raises(TypeError, match="record_spikes=5 must be an iterable"):
        run_session(task, session, params, state, learners, DT, record_spikes=5)
    with pytest.raises(ValueError, match=r"record_spikes=\[99\] must hold trial indices in \[0, 6\)"):
        run_session(task, session, params, state, learners, DT, record_spikes=[99])
    swapped = learners[0]._replace(state=learners[1].state)
    with pytest.raises(TypeError, match="has a ThreeFactorReadout but a state of type FORCEState"):
        run_session(task, session, params, state, [swapped], DT)
    with pytest.raises(TypeError, match="progress must be callable"):
        run_session(task, session, params, state, learners, DT, progress=1)


def test_trial_refuses_session_entries_that_do_not_fit_the_task():
    task, *_ = _setup()
    session = task.sample(0)
    late = session._replace(latency_ms=np.full(6, 500.0))
    with pytest.raises(ValueError, match=r"session.latency_ms\[0\]=500.0: the stimulus .* must end within"):
        task.trial(late, 0, DT)
    with pytest.raises(ValueError, match=r"session.identity\[2\]=5; allowed: -1 \(none\) .. 1"):
        task.trial(session._replace(identity=np.array([0, 1, 5, 0, 1, 0])), 2, DT)
    with pytest.raises(ValueError, match=r"session.probabilities must be \[trials, 2\]"):
        task.trial(session._replace(probabilities=np.ones(6)), 0, DT)
    with pytest.raises(ValueError, match=r"session has blocks of \[3, 3\] trials \(block index \[0, 0, 0, -1"):
        task.check_session(session._replace(block=-session.block))
    with pytest.raises(ValueError, match=r"session.block must be a 1-D integer array, got float64 of shape \(6,\)"):
        task.check_session(session._replace(block=session.block.astype(float)))


def test_run_session_on_the_compiled_engine_equals_the_eager_engine():
    from kernels.izhikevich.compiled import find_compiler

    if find_compiler() is None:
        pytest.skip("no C compiler for the compiled engine")
    # noise-free reservoir: both engines then compute the same bits (inputs, exponential
    # synapses, recorded traces), so the whole training record must be identical
    task, params, state, learners = _setup()
    session = task.sample(0)
    records = [run_session(task, session, params, state, learners, DT, seed=0, record_spikes=(1,), engine=engine)
               for engine in ("eager", "compiled")]
    eager, fast = records
    for name in eager.outputs:
        assert np.array_equal(eager.outputs[name], fast.outputs[name])
        assert np.array_equal(eager.weights[name], fast.weights[name])
    assert np.array_equal(eager.population_rate_hz, fast.population_rate_hz)
    assert torch.equal(eager.reservoir.neurons.v_mv, fast.reservoir.neurons.v_mv)
    assert all(torch.equal(a, b) for a, b in zip(eager.spikes[1], fast.spikes[1]))
    with pytest.raises(ValueError, match="engine="):
        run_session(task, session, params, state, learners, DT, seed=0, engine="jit")
