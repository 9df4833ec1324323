"""Bad input to the reservoir API gets a TypeError/ValueError naming the argument."""
import math

import numpy as np
import pytest
import torch

from neuro.reservoir import (
    Block,
    FORCEReadout,
    Learner,
    ThreeFactorReadout,
    WhatWhenTask,
    dense_weights,
    heterogeneous_izhikevich,
    initial_state,
    izhikevich_step,
    make_reservoir,
    readout_features,
    reservoir_step,
    resting_state,
    run_session,
    simulate,
    state_to,
)
from neuro.reservoir import evaluation as ev

NAN = math.nan


@pytest.fixture(scope="module")
def net():
    return make_reservoir(12, 2, batch_size=2, in_degree=3, seed=0)


def _izh():
    params, _ = heterogeneous_izhikevich(4)
    return params, resting_state(params, 2)


@pytest.mark.parametrize("call, error, match", [
    (lambda: heterogeneous_izhikevich(5, refractory_ms="a"), TypeError, "refractory_ms"),
    (lambda: heterogeneous_izhikevich(5, refractory_ms=math.inf), ValueError, "refractory_ms"),
    (lambda: heterogeneous_izhikevich(5, v_peak_mv=NAN), ValueError, "v_peak_mv"),
    (lambda: heterogeneous_izhikevich(5, dtype=torch.int64), TypeError, "dtype"),
    (lambda: izhikevich_step(_izh()[1], _izh()[0], np.zeros((2, 4)), 0.5), TypeError, "current"),
    (lambda: izhikevich_step(_izh()[1]._replace(v_mv=torch.zeros(2, 4, dtype=torch.long)), _izh()[0],
                             torch.zeros(2, 4), 0.5), TypeError, "state.v_mv"),
    (lambda: izhikevich_step(_izh()[1]._replace(refractory_left_ms=torch.zeros(3)),
                             _izh()[0]._replace(refractory_ms=1.0), torch.zeros(2, 4), 0.5),
     ValueError, "refractory_left_ms"),
    (lambda: make_reservoir(10, 1, in_degree=2, input_scale="a"), TypeError, "input_scale"),
    (lambda: make_reservoir(10, 1, in_degree=2, noise_std="a"), TypeError, "noise_std"),
    (lambda: make_reservoir(10, 1, in_degree=2, synapse_tau_ms=True), ValueError, "synapse_tau_ms"),
])
def test_neurons_and_builder(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_simulate_and_step(net):
    params, state = net
    x = torch.zeros(2, 3, 2)
    cases = [
        (lambda: simulate(params, state, np.zeros((2, 3, 2)), seed=0), TypeError, "inputs"),
        (lambda: simulate(params, state, num_steps=3, noise=np.zeros((2, 3, 12))), TypeError, "noise"),
        (lambda: simulate(params, state, x, num_steps="3", seed=0), TypeError, "num_steps"),
        (lambda: simulate(params, state._replace(trace=torch.zeros(1, 12)), x, seed=0), ValueError, "state.trace"),
        (lambda: simulate(params, state_to(state, dtype=torch.float64), x, seed=0), TypeError, "dtype"),
        (lambda: simulate(params, state._replace(step=1.5), x, seed=0), TypeError, "state.step"),
        (lambda: simulate("params", state, x, seed=0), TypeError, "params"),
        (lambda: simulate(params, (1, 2), x, seed=0), TypeError, "state"),
        (lambda: simulate(params, state, x, seed=0, record_trace="yes"), TypeError, "record_trace"),
        (lambda: reservoir_step(state, params, np.zeros((2, 2)), 0.5, generator=torch.Generator()),
         TypeError, "input_signal"),
        (lambda: reservoir_step(state, params, x[:, 0], 0.5, generator=0), TypeError, "generator"),
        (lambda: reservoir_step(state_to(state, dtype=torch.float64), params, x[:, 0], 0.5,
                                generator=torch.Generator()), TypeError, "dtype"),
        (lambda: reservoir_step(state._replace(trace=torch.zeros(12)), params, x[:, 0], 0.5,
                                generator=torch.Generator()), ValueError, "state.trace"),
        (lambda: state_to(state, dtype=torch.int64), TypeError, "dtype"),
        (lambda: params.to(dtype=torch.int64), TypeError, "dtype"),
        (lambda: initial_state(None), TypeError, "params"),
        (lambda: dense_weights(params.synapses, 5, 2), ValueError, "post_index|pre_index"),
        (lambda: dense_weights(params.synapses, 12.0, 2), TypeError, "num_neurons"),
        (lambda: dense_weights((1, 2, 3, 4), 12, 2), TypeError, "synapses"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_readouts():
    three = ThreeFactorReadout(2, 3)
    s3 = three.initial_state(2)
    force = FORCEReadout(2, 3)
    sf = force.initial_state(2)
    f64 = torch.zeros(2, 3, dtype=torch.float64)
    cases = [
        (lambda: ThreeFactorReadout(2, 3, eligibility_tau_ms="a"), TypeError, "eligibility_tau_ms"),
        (lambda: ThreeFactorReadout(2, 3, dt_ms="a"), TypeError, "dt_ms"),
        (lambda: ThreeFactorReadout(2, 3, dt_ms=True), TypeError, "dt_ms"),
        (lambda: three.initial_state(2, dtype=torch.int64), TypeError, "dtype"),
        (lambda: three.initial_state(2, weights=np.zeros((2, 2, 3))), TypeError, "weights"),
        (lambda: three.step(s3, f64, torch.zeros(2, 2), torch.ones(2, 2)), TypeError, "features"),
        (lambda: three.step(s3, np.zeros((2, 3)), torch.zeros(2, 2), torch.ones(2, 2)), TypeError, "features"),
        (lambda: three.step(s3._replace(eligibility=torch.zeros(3)), torch.zeros(2, 3), torch.zeros(2, 2),
                            torch.ones(2, 2)), ValueError, "eligibility"),
        (lambda: three.step(s3._replace(pending=torch.zeros(1, 2, 3)), torch.zeros(2, 3), torch.zeros(2, 2),
                            torch.ones(2, 2)), ValueError, "pending"),
        (lambda: three.consolidate(s3, "a"), TypeError, "scale"),
        (lambda: three.replay(s3, torch.zeros(2, 3), torch.zeros(2, 4, 3, dtype=torch.long), torch.zeros(4, 2),
                              torch.ones(4, 2)), TypeError, "features"),
        (lambda: force.initial_state(2, dtype=torch.int64), TypeError, "dtype"),
        (lambda: force.step(sf, f64, torch.zeros(2, 2)), TypeError, "features"),
        (lambda: force.step(sf._replace(inverse_correlation=torch.zeros(2, 4, 4)), torch.ones(2, 3),
                            torch.zeros(2, 2)), ValueError, "inverse_correlation"),
        (lambda: force.step(sf._replace(step=1.5), torch.ones(2, 3), torch.zeros(2, 2)), TypeError, "step"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def _task():
    return WhatWhenTask((Block(1, 200.0, (0.5,)),), trial_ms=400.0)


def test_task_and_features():
    task = _task()
    session = task.sample(0)
    trace = torch.rand(2, 4, 5)
    cases = [
        (lambda: Block(2, 100.0, 0.5), TypeError, "probabilities"),
        (lambda: WhatWhenTask(Block(2, 200.0, (0.5,))), TypeError, "blocks"),
        (lambda: WhatWhenTask((Block(2, 200.0, (0.5,)),), gate_floor="a"), TypeError, "gate_floor"),
        (lambda: task.num_steps(True), TypeError, "dt_ms"),
        (lambda: task.trial(session, 0.5, 0.5), TypeError, "trial_index"),
        (lambda: task.trial(session, True, 0.5), TypeError, "trial_index"),
        (lambda: task.trial(session, 0, 0.5, dtype=torch.int64), TypeError, "dtype"),
        (lambda: readout_features(trace, clip=NAN), ValueError, "clip"),
        (lambda: readout_features(trace, clip=-1.0), ValueError, "clip"),
        (lambda: readout_features(trace, clip="a"), TypeError, "clip"),
        (lambda: readout_features(trace, offset=torch.zeros(3)), ValueError, "offset"),
        (lambda: readout_features(np.zeros((2, 5))), TypeError, "trace"),
        (lambda: readout_features(trace, bias="no"), TypeError, "bias"),
        (lambda: readout_features(torch.zeros(2, 5, dtype=torch.long)), TypeError, "trace"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_run_session_arguments():
    task = _task()
    session = task.sample(0)
    params, state = make_reservoir(10, task.num_inputs, in_degree=2, seed=0)
    three = ThreeFactorReadout(task.num_readouts, 11)
    learners = [Learner("a", three, three.initial_state(1))]
    run = lambda **kw: run_session(task, session, params, state, **{"learners": learners, "dt_ms": 1.0, **kw})
    cases = [
        ({"bin_ms": NAN}, ValueError, "bin_ms"),
        ({"bin_ms": "a"}, TypeError, "bin_ms"),
        ({"feature_clip": NAN}, ValueError, "feature_clip"),
        ({"feature_clip": -1.0}, ValueError, "feature_clip"),
        ({"feature_offset": torch.zeros(1, 3)}, ValueError, "feature_offset"),
        ({"feature_scale": torch.full((1, 10), NAN)}, ValueError, "feature_scale"),
        ({"feature_scale": torch.zeros(1, 10)}, ValueError, "feature_scale"),
        ({"learners": [("a", 1, 2)]}, TypeError, "learners"),
        ({"learners": [Learner("a", ThreeFactorReadout(task.num_readouts, 5), three.initial_state(1))]},
         ValueError, "num_features"),
        ({"record_spikes": [1.5]}, TypeError, "record_spikes"),
        ({"bias": "no"}, TypeError, "bias"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            run(**kwargs)


@pytest.mark.parametrize("call, error, match", [
    (lambda: ev.peak_times_ms(np.zeros((2, 10)), 0.0), ValueError, "bin_ms"),
    (lambda: ev.peak_times_ms(np.zeros((2, 10)), NAN), ValueError, "bin_ms"),
    (lambda: ev.peak_times_ms(np.zeros((2, 10)), -1.0), ValueError, "bin_ms"),
    (lambda: ev.peak_times_ms(np.zeros((2, 10)), 5.0, NAN), ValueError, "search_from_ms"),
    (lambda: ev.trials_until_within(np.zeros(10), 0, 1.0, window=0), ValueError, "window"),
    (lambda: ev.trials_until_within(np.zeros(10), 0, NAN), ValueError, "tolerance"),
    (lambda: ev.trials_until_within(np.zeros(10), -3, 1.0), ValueError, "switch"),
    (lambda: ev.trials_until_within(np.zeros(10), 1.5, 1.0), TypeError, "switch"),
    (lambda: ev.recovery_trials(np.ones(30), 15, window=0), ValueError, "window"),
    (lambda: ev.recovery_trials(np.ones(30), 15, reference_trials=0), ValueError, "reference_trials"),
    (lambda: ev.recovery_trials(np.ones(30), 15, fraction=NAN), ValueError, "fraction"),
    (lambda: ev.recovery_trials(np.ones(30), 40), ValueError, "switch"),
    (lambda: ev.recovery_trials(np.ones(30), 15.5), TypeError, "switch"),
    (lambda: ev.principal_angles_deg(np.ones((1, 3)), np.ones((1, 4))), ValueError, "first has D=3"),
    (lambda: ev.principal_angles_deg(np.full((1, 3), NAN), np.ones((1, 3))), ValueError, "first"),
    (lambda: ev.random_subspace_angles_deg(1, 1, 3, samples=-1), ValueError, "samples"),
    (lambda: ev.random_subspace_angles_deg(1, 1, 3, seed="a"), TypeError, "seed"),
])
def test_evaluation(call, error, match):
    with pytest.raises(error, match=match):
        call()
