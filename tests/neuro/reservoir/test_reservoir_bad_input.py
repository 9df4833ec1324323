"""Bad input to the reservoir API gets a TypeError/ValueError naming the argument,
the offending value or shape and (where the message has it) what is allowed."""
import math
import re
from types import SimpleNamespace

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
from neuro.reservoir.training import spike_counts_from_trace

NAN = math.nan
E = re.escape

# Messages shared by several entry points.
FLOAT_DTYPE_INT64 = E("dtype=torch.int64; allowed: a floating torch.dtype such as torch.float32, torch.float64")
STATE_DTYPE_F64 = E("state.neurons.v_mv has dtype torch.float64; expected the params' dtype torch.float32 "
                    "(use state_to(state, dtype=...))")
FEATURES_F64 = E("features has dtype torch.float64; expected torch.float32 (the model dtype)")


@pytest.fixture(scope="module")
def net():
    return make_reservoir(12, 2, batch_size=2, in_degree=3, seed=0)


def _izh():
    params, _ = heterogeneous_izhikevich(4)
    return params, resting_state(params, 2)


@pytest.mark.parametrize("call, error, match", [
    pytest.param(lambda: heterogeneous_izhikevich(5, refractory_ms="a"), TypeError,
                 E("refractory_ms must be a finite real number in [0.0, inf), got 'a' (str)"),
                 id="izhikevich-refractory_ms-str"),
    pytest.param(lambda: heterogeneous_izhikevich(5, refractory_ms=math.inf), ValueError,
                 E("refractory_ms must be a finite real number in [0.0, inf), got inf"),
                 id="izhikevich-refractory_ms-inf"),
    pytest.param(lambda: heterogeneous_izhikevich(5, v_peak_mv=NAN), ValueError,
                 E("v_peak_mv must be a finite real number in (-inf, inf), got nan"),
                 id="izhikevich-v_peak_mv-nan"),
    pytest.param(lambda: heterogeneous_izhikevich(5, dtype=torch.int64), TypeError, FLOAT_DTYPE_INT64,
                 id="izhikevich-dtype-int64"),
    pytest.param(lambda: izhikevich_step(_izh()[1], _izh()[0], np.zeros((2, 4)), 0.5), TypeError,
                 E("current must be a torch.Tensor, got ndarray"),
                 id="izhikevich_step-current-ndarray"),
    pytest.param(lambda: izhikevich_step(_izh()[1]._replace(v_mv=torch.zeros(2, 4, dtype=torch.long)), _izh()[0],
                                         torch.zeros(2, 4), 0.5), TypeError,
                 E("state.v_mv has dtype torch.int64; allowed: a floating dtype"),
                 id="izhikevich_step-state.v_mv-int64"),
    pytest.param(lambda: izhikevich_step(resting_state(heterogeneous_izhikevich(4)[0], 2), _izh()[0]._replace(
                     a=torch.full((1, 4), 0.02, dtype=torch.float64)), torch.zeros(2, 4), 0.5), TypeError,
                 E("params.a has dtype torch.float64; expected state.v_mv's dtype torch.float32"),
                 id="izhikevich_step-params-float64"),  # was a float64 state, silently
    pytest.param(lambda: spike_counts_from_trace(torch.zeros(2, 5, 4), torch.zeros(2, 3), 0.9), ValueError,
                 E("trace must be [B, T, N] and previous [B, N] of the same B and N, got [2, 5, 4] and [2, 3]"),
                 id="spike_counts_from_trace-previous-shape"),
    pytest.param(lambda: izhikevich_step(_izh()[1]._replace(refractory_left_ms=torch.zeros(3)),
                                         _izh()[0]._replace(refractory_ms=1.0), torch.zeros(2, 4), 0.5),
                 ValueError, E("state.refractory_left_ms has shape [3]; expected [2, 4] (= state.v_mv) or None"),
                 id="izhikevich_step-refractory_left_ms-shape"),
    pytest.param(lambda: make_reservoir(10, 1, in_degree=2, input_scale="a"), TypeError,
                 E("input_scale must be a finite real number in (-inf, inf), got 'a' (str)"),
                 id="make_reservoir-input_scale-str"),
    pytest.param(lambda: make_reservoir(10, 1, in_degree=2, noise_std="a"), TypeError,
                 E("noise_std='a' must be a float >= 0 or a [10] tensor of them"),
                 id="make_reservoir-noise_std-str"),
    pytest.param(lambda: make_reservoir(10, 1, in_degree=2, synapse_tau_ms=True), ValueError,
                 E("synapse_tau_ms=True must be a finite number > 0 (ms)"),
                 id="make_reservoir-synapse_tau_ms-bool"),
])
def test_neurons_and_builder(call, error, match):
    with pytest.raises(error, match=match):
        call()


# Each call gets (params, state, inputs) from the ``net`` fixture.
@pytest.mark.parametrize("call, error, match", [
    pytest.param(lambda p, s, x: simulate(p, s, np.zeros((2, 3, 2)), seed=0), TypeError,
                 E("inputs must be a torch.Tensor, got ndarray"), id="simulate-inputs-ndarray"),
    pytest.param(lambda p, s, x: simulate(p, s, num_steps=3, noise=np.zeros((2, 3, 12))), TypeError,
                 E("noise must be a torch.Tensor, got ndarray"), id="simulate-noise-ndarray"),
    pytest.param(lambda p, s, x: simulate(p, s, x, num_steps="3", seed=0), TypeError,
                 E("num_steps must be an int >= 0, got '3'"), id="simulate-num_steps-str"),
    pytest.param(lambda p, s, x: simulate(p, s._replace(trace=torch.zeros(1, 12)), x, seed=0), ValueError,
                 E("state.trace has shape [1, 12]; expected [2, 12]"), id="simulate-state.trace-shape"),
    pytest.param(lambda p, s, x: simulate(p, state_to(s, dtype=torch.float64), x, seed=0), TypeError,
                 STATE_DTYPE_F64, id="simulate-state-float64"),
    pytest.param(lambda p, s, x: simulate(p, s._replace(step=1.5), x, seed=0), TypeError,
                 E("state.step=1.5 must be an int"), id="simulate-state.step-float"),
    pytest.param(lambda p, s, x: simulate("params", s, x, seed=0), TypeError,
                 E("params must be a ReservoirParams (from make_reservoir), got str"), id="simulate-params-str"),
    pytest.param(lambda p, s, x: simulate(p, (1, 2), x, seed=0), TypeError,
                 E("state must be a ReservoirState (from make_reservoir / initial_state), got tuple"),
                 id="simulate-state-tuple"),
    pytest.param(lambda p, s, x: simulate(p, s._replace(trace=torch.full((2, 12), torch.nan)), x, seed=0),
                 ValueError, E("state.trace contains NaN or inf"), id="simulate-state.trace-nan"),
    pytest.param(lambda p, s, x: simulate(p, s, None, seed=0), ValueError,
                 E("give inputs [B, T, M], noise [B, T, N] or num_steps (all are None)"),
                 id="simulate-no-length"),
    pytest.param(lambda p, s, x: simulate(p, s, x, seed=0, record_trace="yes"), TypeError,
                 E("record_trace must be True or False, got 'yes' (str)"), id="simulate-record_trace-str"),
    pytest.param(lambda p, s, x: reservoir_step(s, p, np.zeros((2, 2)), 0.5, generator=torch.Generator()),
                 TypeError, E("input_signal must be a torch.Tensor, got ndarray"),
                 id="reservoir_step-input_signal-ndarray"),
    pytest.param(lambda p, s, x: reservoir_step(s, p, x[:, 0], 0.5, generator=0), TypeError,
                 E("generator=0 must be a torch.Generator or None"), id="reservoir_step-generator-int"),
    pytest.param(lambda p, s, x: reservoir_step(state_to(s, dtype=torch.float64), p, x[:, 0], 0.5,
                                                generator=torch.Generator()), TypeError,
                 STATE_DTYPE_F64, id="reservoir_step-state-float64"),
    pytest.param(lambda p, s, x: reservoir_step(s._replace(trace=torch.zeros(12)), p, x[:, 0], 0.5,
                                                generator=torch.Generator()), ValueError,
                 E("state.trace has shape [12]; expected [2, 12]"), id="reservoir_step-state.trace-shape"),
    pytest.param(lambda p, s, x: state_to(s, dtype=torch.int64), TypeError, FLOAT_DTYPE_INT64,
                 id="state_to-dtype-int64"),
    pytest.param(lambda p, s, x: p.to(dtype=torch.int64), TypeError, FLOAT_DTYPE_INT64,
                 id="params.to-dtype-int64"),
    pytest.param(lambda p, s, x: initial_state(None), TypeError,
                 E("params must be a ReservoirParams (from make_reservoir), got NoneType"),
                 id="initial_state-params-None"),
    # pre_index is checked before post_index; the observed range depends on the seeded wiring.
    pytest.param(lambda p, s, x: dense_weights(p.synapses, 5, 2), ValueError,
                 r"synapses\.pre_index holds values in \[\d+, \d+\]; "
                 + E("allowed [0, 5) (batch_size=2, num_neurons=5)"),
                 id="dense_weights-num_neurons-too-small"),
    pytest.param(lambda p, s, x: dense_weights(p.synapses, 12.0, 2), TypeError,
                 E("num_neurons must be an int >= 1, got 12.0"), id="dense_weights-num_neurons-float"),
    pytest.param(lambda p, s, x: dense_weights((1, 2, 3, 4), 12, 2), TypeError,
                 E("synapses must be a SynapseList, got tuple"), id="dense_weights-synapses-tuple"),
])
def test_simulate_and_step(net, call, error, match):
    params, state = net
    x = torch.zeros(2, 3, 2)
    with pytest.raises(error, match=match):
        call(params, state, x)


@pytest.fixture
def readouts():
    three = ThreeFactorReadout(2, 3)
    force = FORCEReadout(2, 3)
    return SimpleNamespace(three=three, s3=three.initial_state(2), force=force, sf=force.initial_state(2),
                           f64=torch.zeros(2, 3, dtype=torch.float64))


# Each call gets the ``readouts`` namespace (three, s3, force, sf, f64).
@pytest.mark.parametrize("call, error, match", [
    pytest.param(lambda r: ThreeFactorReadout(2, 3, eligibility_tau_ms="a"), TypeError,
                 E("eligibility_tau_ms must be a finite real number in [0.0, inf), got 'a' (str)"),
                 id="three_factor-eligibility_tau_ms-str"),
    pytest.param(lambda r: ThreeFactorReadout(2, 3, dt_ms="a"), TypeError,
                 E("dt_ms must be a finite real number in (0.0, 1.0], got 'a' (str)"),
                 id="three_factor-dt_ms-str"),
    pytest.param(lambda r: ThreeFactorReadout(2, 3, dt_ms=True), TypeError,
                 E("dt_ms must be a finite real number in (0.0, 1.0], got True (bool)"),
                 id="three_factor-dt_ms-bool"),
    pytest.param(lambda r: r.three.initial_state(2, dtype=torch.int64), TypeError, FLOAT_DTYPE_INT64,
                 id="three_factor.initial_state-dtype-int64"),
    pytest.param(lambda r: r.three.initial_state(2, weights=np.zeros((2, 2, 3))), TypeError,
                 E("weights must be a torch.Tensor, got ndarray"), id="three_factor.initial_state-weights-ndarray"),
    pytest.param(lambda r: r.three.step(r.s3, r.f64, torch.zeros(2, 2), torch.ones(2, 2)), TypeError,
                 FEATURES_F64, id="three_factor.step-features-float64"),
    pytest.param(lambda r: r.three.step(r.s3, np.zeros((2, 3)), torch.zeros(2, 2), torch.ones(2, 2)), TypeError,
                 E("features must be a torch.Tensor, got ndarray"), id="three_factor.step-features-ndarray"),
    pytest.param(lambda r: r.three.step(r.s3._replace(eligibility=torch.zeros(3)), torch.zeros(2, 3),
                                        torch.zeros(2, 2), torch.ones(2, 2)), ValueError,
                 E("state.eligibility is torch.float32 (3,); expected torch.float32 (2, 3) (state.weights' dtype)"),
                 id="three_factor.step-state.eligibility-shape"),
    pytest.param(lambda r: r.three.step(r.s3._replace(pending=torch.zeros(1, 2, 3)), torch.zeros(2, 3),
                                        torch.zeros(2, 2), torch.ones(2, 2)), ValueError,
                 E("state.pending is torch.float32 (1, 2, 3); expected torch.float32 (2, 2, 3) "
                   "(state.weights' dtype)"),
                 id="three_factor.step-state.pending-shape"),
    pytest.param(lambda r: r.three.consolidate(r.s3, "a"), TypeError,
                 E("scale must be a finite real number in [0.0, inf), got 'a' (str)"),
                 id="three_factor.consolidate-scale-str"),
    pytest.param(lambda r: r.three.replay(r.s3, torch.zeros(2, 3), torch.zeros(2, 4, 3, dtype=torch.long),
                                          torch.zeros(4, 2), torch.ones(4, 2)), TypeError,
                 E("features has dtype torch.int64; expected torch.float32 (the model dtype)"),
                 id="three_factor.replay-features-int64"),
    pytest.param(lambda r: r.force.initial_state(2, dtype=torch.int64), TypeError, FLOAT_DTYPE_INT64,
                 id="force.initial_state-dtype-int64"),
    pytest.param(lambda r: r.force.step(r.sf, r.f64, torch.zeros(2, 2)), TypeError, FEATURES_F64,
                 id="force.step-features-float64"),
    pytest.param(lambda r: r.force.step(r.sf._replace(inverse_correlation=torch.zeros(2, 4, 4)), torch.ones(2, 3),
                                        torch.zeros(2, 2)), ValueError,
                 E("state.inverse_correlation is torch.float32 (2, 4, 4); expected torch.float32 (2, 3, 3)"),
                 id="force.step-state.inverse_correlation-shape"),
    pytest.param(lambda r: r.force.step(r.sf._replace(step=1.5), torch.ones(2, 3), torch.zeros(2, 2)), TypeError,
                 E("state.step=1.5 must be an int"), id="force.step-state.step-float"),
    pytest.param(lambda r: r.three.step(r.s3, torch.zeros(2, 3), torch.zeros(2, 2, dtype=torch.float64),
                                        torch.ones(2, 2)), TypeError,
                 E("target has dtype torch.float64; expected torch.float32 (the model dtype)"),
                 id="three_factor.step-target-float64"),
    pytest.param(lambda r: r.three.step(tuple(r.s3), torch.zeros(2, 3), torch.zeros(2, 2), torch.ones(2, 2)),
                 TypeError, E("state must be a ThreeFactorState (from initial_state), got tuple"),
                 id="three_factor.step-state-tuple"),
    pytest.param(lambda r: r.three.replay(r.s3, torch.zeros(2, 3), torch.zeros(2, 4, 3), np.zeros((4, 2)),
                                          torch.ones(4, 2)), TypeError,
                 E("target must be a torch.Tensor, got ndarray"), id="three_factor.replay-target-ndarray"),
    pytest.param(lambda r: r.force.step(r.sf, torch.ones(2, 3), torch.zeros(2, 2, dtype=torch.float64),
                                        inplace=True), TypeError,
                 E("target has dtype torch.float64; expected torch.float32 (the model dtype)"),
                 id="force.step-target-float64"),
    pytest.param(lambda r: r.force.step(tuple(r.sf), torch.ones(2, 3), torch.zeros(2, 2)), TypeError,
                 E("state must be a FORCEState (from initial_state), got tuple"), id="force.step-state-tuple"),
    pytest.param(lambda r: r.force.reset(r.sf, networks=[True, False]), TypeError,
                 E("networks must be a bool torch.Tensor of shape (2,) or None, got list"),
                 id="force.reset-networks-list"),
])
def test_readouts(readouts, call, error, match):
    with pytest.raises(error, match=match):
        call(readouts)


def _task():
    return WhatWhenTask((Block(1, 200.0, (0.5,)),), trial_ms=400.0)


@pytest.fixture
def task_inputs():
    task = _task()
    return SimpleNamespace(task=task, session=task.sample(0), trace=torch.rand(2, 4, 5))


# Each call gets the ``task_inputs`` namespace (task, session, trace).
@pytest.mark.parametrize("call, error, match", [
    pytest.param(lambda c: Block(2, 100.0, 0.5), TypeError,
                 E("probabilities=0.5 must be a sequence of floats in [0, 1], one per stimulus identity"),
                 id="Block-probabilities-float"),
    pytest.param(lambda c: WhatWhenTask(Block(2, 200.0, (0.5,))), TypeError,
                 E("blocks must be a non-empty sequence of Block, got Block"), id="WhatWhenTask-blocks-Block"),
    pytest.param(lambda c: WhatWhenTask((Block(2, 200.0, (0.5,)),), gate_floor="a"), TypeError,
                 E("gate_floor must be a real number, got 'a'"), id="WhatWhenTask-gate_floor-str"),
    pytest.param(lambda c: c.task.num_steps(True), TypeError,
                 E("dt_ms must be a finite real number in (0.0, 1.0], got True (bool)"), id="num_steps-dt_ms-bool"),
    pytest.param(lambda c: c.task.trial(c.session, 0.5, 0.5), TypeError,
                 E("trial_index=0.5 must be an int in [0, 1)"), id="trial-trial_index-float"),
    pytest.param(lambda c: c.task.trial(c.session, True, 0.5), TypeError,
                 E("trial_index=True must be an int in [0, 1)"), id="trial-trial_index-bool"),
    pytest.param(lambda c: c.task.trial(c.session, 0, 0.5, dtype=torch.int64), TypeError, FLOAT_DTYPE_INT64,
                 id="trial-dtype-int64"),
    pytest.param(lambda c: readout_features(c.trace, clip=NAN), ValueError,
                 E("clip must be a finite real number in (0.0, inf), got nan"), id="readout_features-clip-nan"),
    pytest.param(lambda c: readout_features(c.trace, clip=-1.0), ValueError,
                 E("clip must be a finite real number in (0.0, inf), got -1.0"), id="readout_features-clip-negative"),
    pytest.param(lambda c: readout_features(c.trace, clip="a"), TypeError,
                 E("clip must be a finite real number in (0.0, inf), got 'a' (str)"), id="readout_features-clip-str"),
    pytest.param(lambda c: readout_features(c.trace, offset=torch.zeros(3)), ValueError,
                 E("offset has shape [3], which does not broadcast against trace [2, 4, 5]"),
                 id="readout_features-offset-shape"),
    pytest.param(lambda c: readout_features(np.zeros((2, 5))), TypeError,
                 E("trace must be a torch.Tensor, got ndarray"), id="readout_features-trace-ndarray"),
    pytest.param(lambda c: readout_features(c.trace, bias="no"), TypeError,
                 E("bias must be True or False, got 'no' (str)"), id="readout_features-bias-str"),
    pytest.param(lambda c: readout_features(torch.zeros(2, 5, dtype=torch.long)), TypeError,
                 E("trace has dtype torch.int64; allowed: a floating dtype"), id="readout_features-trace-int64"),
])
def test_task_and_features(task_inputs, call, error, match):
    with pytest.raises(error, match=match):
        call(task_inputs)


@pytest.fixture
def session_run():
    """run(**kwargs): run_session on a 10-neuron reservoir with one valid learner unless kwargs replace it."""
    task = _task()
    session = task.sample(0)
    params, state = make_reservoir(10, task.num_inputs, in_degree=2, seed=0)
    three = ThreeFactorReadout(task.num_readouts, 11)
    learners = [Learner("a", three, three.initial_state(1))]
    run = lambda **kw: run_session(task, session, params, state, **{"learners": learners, "dt_ms": 1.0, **kw})
    return SimpleNamespace(task=task, three=three, run=run)


# Each entry builds the bad keyword arguments from the ``session_run`` namespace.
@pytest.mark.parametrize("kwargs, error, match", [
    pytest.param(lambda c: {"bin_ms": NAN}, ValueError,
                 E("bin_ms must be a finite real number in (0.0, inf), got nan"), id="bin_ms-nan"),
    pytest.param(lambda c: {"bin_ms": "a"}, TypeError,
                 E("bin_ms must be a finite real number in (0.0, inf), got 'a' (str)"), id="bin_ms-str"),
    pytest.param(lambda c: {"feature_clip": NAN}, ValueError,
                 E("feature_clip must be a finite real number in (0.0, inf), got nan"), id="feature_clip-nan"),
    pytest.param(lambda c: {"feature_clip": -1.0}, ValueError,
                 E("feature_clip must be a finite real number in (0.0, inf), got -1.0"), id="feature_clip-negative"),
    pytest.param(lambda c: {"feature_offset": torch.zeros(1, 3)}, ValueError,
                 E("feature_offset has shape [1, 3]; expected [1, 10]"), id="feature_offset-shape"),
    pytest.param(lambda c: {"feature_scale": torch.full((1, 10), NAN)}, ValueError,
                 E("feature_scale has 10 entries that are not finite and > 0"), id="feature_scale-nan"),
    pytest.param(lambda c: {"feature_scale": torch.zeros(1, 10)}, ValueError,
                 E("feature_scale has 10 entries that are not finite and > 0"), id="feature_scale-zero"),
    pytest.param(lambda c: {"learners": [("a", 1, 2)]}, TypeError,
                 E("learners must hold Learner(name, readout, state) tuples, got [('a', 1, 2)]"),
                 id="learners-plain-tuple"),
    pytest.param(lambda c: {"learners": [Learner("a", ThreeFactorReadout(c.task.num_readouts, 5),
                                                 c.three.initial_state(1))]}, ValueError,
                 E("learner 'a' has a readout of num_readouts=2, num_features=5; expected 2 and 11 "
                   "(task readouts, neurons + bias)"),
                 id="learners-num_features"),
    pytest.param(lambda c: {"record_spikes": [1.5]}, TypeError,
                 E("record_spikes=[1.5] must hold int trial indices"), id="record_spikes-float"),
    pytest.param(lambda c: {"bias": "no"}, TypeError,
                 E("bias must be True or False, got 'no' (str)"), id="bias-str"),
])
def test_run_session_arguments(session_run, kwargs, error, match):
    with pytest.raises(error, match=match):
        session_run.run(**kwargs(session_run))


@pytest.mark.parametrize("call, error, match", [
    pytest.param(lambda: ev.peak_times_ms(np.zeros((2, 10)), 0.0), ValueError,
                 E("bin_ms must be a finite real number in (0.0, inf), got 0.0"), id="peak_times_ms-bin_ms-zero"),
    pytest.param(lambda: ev.peak_times_ms(np.zeros((2, 10)), NAN), ValueError,
                 E("bin_ms must be a finite real number in (0.0, inf), got nan"), id="peak_times_ms-bin_ms-nan"),
    pytest.param(lambda: ev.peak_times_ms(np.zeros((2, 10)), -1.0), ValueError,
                 E("bin_ms must be a finite real number in (0.0, inf), got -1.0"), id="peak_times_ms-bin_ms-negative"),
    pytest.param(lambda: ev.peak_times_ms(np.zeros((2, 10)), 5.0, NAN), ValueError,
                 E("search_from_ms must be a finite real number in (-inf, inf), got nan"),
                 id="peak_times_ms-search_from_ms-nan"),
    pytest.param(lambda: ev.trials_until_within(np.zeros(10), 0, 1.0, window=0), ValueError,
                 E("window must be >= 1, got 0"), id="trials_until_within-window-zero"),
    pytest.param(lambda: ev.trials_until_within(np.zeros(10), 0, NAN), ValueError,
                 E("tolerance must be a finite real number in [0.0, inf), got nan"),
                 id="trials_until_within-tolerance-nan"),
    pytest.param(lambda: ev.trials_until_within(np.zeros(10), -3, 1.0), ValueError,
                 E("switch must be >= 0, got -3"), id="trials_until_within-switch-negative"),
    pytest.param(lambda: ev.trials_until_within(np.zeros(10), 1.5, 1.0), TypeError,
                 E("switch must be an int >= 0, got 1.5"), id="trials_until_within-switch-float"),
    pytest.param(lambda: ev.recovery_trials(np.ones(30), 15, window=0), ValueError,
                 E("window must be >= 1, got 0"), id="recovery_trials-window-zero"),
    pytest.param(lambda: ev.recovery_trials(np.ones(30), 15, reference_trials=0), ValueError,
                 E("reference_trials must be >= 1, got 0"), id="recovery_trials-reference_trials-zero"),
    pytest.param(lambda: ev.recovery_trials(np.ones(30), 15, fraction=NAN), ValueError,
                 E("fraction must be a finite real number in (0.0, 1.0], got nan"), id="recovery_trials-fraction-nan"),
    pytest.param(lambda: ev.recovery_trials(np.ones(30), 15, fraction=2.0), ValueError,
                 E("fraction must be a finite real number in (0.0, 1.0], got 2.0"), id="recovery_trials-fraction-above-1"),
    pytest.param(lambda: ev.recovery_trials(np.ones(30), 40), ValueError,
                 E("switch=40 is past the end of performance (30 trials)"), id="recovery_trials-switch-past-end"),
    pytest.param(lambda: ev.recovery_trials(np.ones(30), 15.5), TypeError,
                 E("switch must be an int >= 0, got 15.5"), id="recovery_trials-switch-float"),
    pytest.param(lambda: ev.principal_angles_deg(np.ones((1, 3)), np.ones((1, 4))), ValueError,
                 E("first has D=3 features, second has D=4; they must match"), id="principal_angles_deg-D-mismatch"),
    pytest.param(lambda: ev.principal_angles_deg(np.full((1, 3), NAN), np.ones((1, 3))), ValueError,
                 E("first must be a finite [k, D] array, got shape [1, 3] with non-finite entries"),
                 id="principal_angles_deg-first-nan"),
    pytest.param(lambda: ev.random_subspace_angles_deg(1, 1, 3, samples=-1), ValueError,
                 E("samples must be >= 1, got -1"), id="random_subspace_angles_deg-samples-negative"),
    pytest.param(lambda: ev.random_subspace_angles_deg(1, 1, 3, seed="a"), TypeError,
                 E("seed='a' has type str; allowed: an int >= 0, numpy.random.Generator, torch.Generator"),
                 id="random_subspace_angles_deg-seed-str"),
])
def test_evaluation(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- large sizes: the recorded arrays are sized against memory_limit_bytes before any step runs


def test_simulate_refuses_oversize_trace_record_before_running():
    """record_trace=True for T = 10^9 steps would need [1, 10^9, 20] float32 = 80 GB: a
    ValueError naming record_trace, num_steps and memory_limit_bytes (the old code went
    straight into torch.empty and failed inside the allocator, or swapped)."""
    from neuro.reservoir import make_reservoir, simulate

    params, state = make_reservoir(20, 0, in_degree=2, seed=0, memory_limit_bytes=2**20)
    with pytest.raises(ValueError, match=r"record_trace=True.*num_steps=1000000000.*memory_limit_bytes"):
        simulate(params, state, num_steps=10**9, seed=0, record_trace=True)
    with pytest.raises(ValueError, match=r'record="dense".*memory_limit_bytes'):
        simulate(params, state, num_steps=10**9, seed=0, record="dense")


def test_recording_bytes_counts_trace_and_raster():
    from neuro.reservoir.simulation import recording_bytes

    assert recording_bytes(2, 100, 50, "indices", False, torch.float32) == 0
    assert recording_bytes(2, 100, 50, "none", True, torch.float32) == 2 * 100 * 50 * 4
    assert recording_bytes(2, 100, 50, "dense", True, torch.float64) == 2 * 100 * 50 * 9


def test_simulate_keeps_one_spike_tensor_per_block_not_per_step(monkeypatch):
    """The eager path joins a block's per-step spike indices once per block: 1000 steps in
    blocks of 100 leave 10 pieces to concatenate at the end, not 1000 (each per-step
    tensor kept ~0.7 kB: 10^7 steps grew by ~7 GB even with record="none")."""
    from neuro.reservoir import make_reservoir, simulation

    params, state = make_reservoir(30, 0, in_degree=3, seed=0)
    sizes = []
    real_cat = torch.cat

    def counting_cat(tensors, *args, **kwargs):
        sizes.append(len(tensors))
        return real_cat(tensors, *args, **kwargs)

    monkeypatch.setattr(simulation.torch, "cat", counting_cat)
    result = simulation.simulate(params, state, num_steps=1000, seed=0, record="none", block_steps=100)
    monkeypatch.setattr(simulation.torch, "cat", real_cat)
    assert result.num_spikes > 0
    assert max(sizes) <= 100


def test_reservoir_params_name_a_wrong_noise_std_or_neuron_shape(net):
    # each is [1 or B, N]: a noise_std of another shape was accepted (one repeated value: used
    # as if right; varied values: a RuntimeError from torch in the first step), as were
    # neuron constants of another shape (IndexError / RuntimeError from deep in a step)
    import dataclasses

    params, state = net  # B = 2, N = 12
    for value in (torch.ones(5), torch.ones(3, 12), torch.rand(12)):
        with pytest.raises(ValueError, match=E(f"noise_std has shape {list(value.shape)}; expected [1 or 2, 12]")):
            dataclasses.replace(params, noise_std=value)
    for name, value in (("c", torch.full((3, 12), -65.0)), ("a", torch.full((12,), 0.02))):
        with pytest.raises(ValueError, match=E(f"neurons.{name} has shape {list(value.shape)}; expected [1 or 2, 12]")):
            dataclasses.replace(params, neurons=params.neurons._replace(**{name: value}))
    per_network = dataclasses.replace(params, noise_std=torch.full((2, 12), 3.0))  # [B, N] is fine
    assert simulate(per_network, state, None, 0.5, num_steps=4, seed=0).state.step == 4


def test_make_reservoir_names_a_bad_device():
    # were torch's RuntimeError ("Expected one of cpu, cuda, ...") from the first allocation
    with pytest.raises(ValueError, match=E("device must be a torch.device or a device string such as 'cpu' "
                                           "or 'cuda:0', got 'gpu'")):
        make_reservoir(10, 1, in_degree=2, device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_make_reservoir_on_cuda_without_cuda_says_so():
    # was torch's AssertionError "Torch not compiled with CUDA enabled"
    with pytest.raises(ValueError, match=r"device='cuda', but torch sees no CUDA device here"):
        make_reservoir(10, 1, in_degree=2, device="cuda")
