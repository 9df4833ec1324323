"""Edges an experiment script reaches: long runs (memory that does not grow with the spikes,
chunked runs that continue one run), non-finite inputs, and readouts that break down
(a runaway three-factor rule, float32 FORCE with a tiny alpha), which run_session names."""
import math
import pickle
import re

import pytest
import torch

from kernels.izhikevich import compiled
from neuro.reservoir import simulation
from neuro.reservoir.brian2_backend import Brian2Session
from neuro.reservoir.force import FORCEReadout
from neuro.reservoir.network import make_reservoir, reservoir_step, simulate
from neuro.reservoir.task import Block, WhatWhenTask
from neuro.reservoir.three_factor import ThreeFactorReadout
from neuro.reservoir.training import Learner, ReadoutDiverged, run_session

ENGINES = ["eager", pytest.param("compiled", marks=pytest.mark.skipif(
    compiled.find_compiler() is None, reason="no C compiler on this machine"))]


# --- long runs --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_record_none_keeps_nothing_per_spike(monkeypatch, engine):
    """record="none" used to keep every spike's index to the end of the run (~60 bytes per
    spike at its peak: 10^6 steps of 5k neurons at 8 Hz, ~1 GB, for a run that returns no
    spikes). Now the final trace is accumulated block by block: what reaches the end of the
    run is O(B N), and the final trace and spike count are those of record="indices"."""
    params, state = make_reservoir(30, 0, in_degree=5, batch_size=2, weight_scale=5.0, seed=0,
                                   dtype=torch.float64)
    state = state._replace(trace=torch.rand(2, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    noise = torch.randn(2, 700, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 30
    seen = []
    real = simulation.assemble_result

    def spy(*args, **kwargs):
        seen.extend(a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor))
        return real(*args, **kwargs)

    monkeypatch.setattr(simulation, "assemble_result", spy)
    none = simulate(params, state, None, 0.5, noise=noise, record="none", block_steps=64, engine=engine)
    largest = max(t.numel() for t in seen)
    monkeypatch.setattr(simulation, "assemble_result", real)
    assert none.num_spikes > 5 * 2 * (3 * 30 + 1)  # many more spikes than the state buffer holds values
    assert largest <= 2 * (3 * 30 + 1)  # the state buffer [B, 3N + 1]; nothing per spike
    indices = simulate(params, state, None, 0.5, noise=noise, record="indices", block_steps=64, engine=engine)
    assert none.spikes is None and none.num_spikes == indices.num_spikes
    assert torch.equal(none.state.trace, indices.state.trace)
    assert torch.equal(none.state.neurons.v_mv, indices.state.neurons.v_mv)


def test_final_trace_does_not_depend_on_blocks_or_engine():
    """The final trace r_T = r_0 d^T + sum_t d^(T-1-t) s_t is accumulated per block; its
    powers are rounded once each, so every block size (and the compiled engine's calls)
    gives the same bits, and it agrees with the per-step recursion of reservoir_step to
    rounding (float64: ~T terms of size <= 1)."""
    params, state = make_reservoir(40, 1, in_degree=5, weight_scale=5.0, seed=4, dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    inputs = torch.rand(1, 333, 1, dtype=torch.float64, generator=generator)
    noise = torch.randn(1, 333, 40, dtype=torch.float64, generator=generator) * 10
    runs = [simulate(params, state, inputs, 0.5, noise=noise, block_steps=k, record=record)
            for k in (1, 7, 100) for record in ("indices", "none")]
    if compiled.find_compiler() is not None:
        runs.append(simulate(params, state, inputs, 0.5, noise=noise, engine="compiled", record="none"))
    assert runs[0].num_spikes > 100
    for run in runs[1:]:
        assert torch.equal(run.state.trace, runs[0].state.trace)
    loop = state
    for t in range(333):
        loop, _ = reservoir_step(loop, params, inputs[:, t], 0.5, noise=noise[:, t])
    torch.testing.assert_close(runs[0].state.trace, loop.trace, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("num_neurons,batch,split", [(32, 1, 77), (40, 2, 40), (50, 1, 48)])
def test_a_chunked_run_continues_one_run_bit_for_bit(num_neurons, batch, split):
    """The documented contract (simulation.py): the same torch.Generator passed to both
    calls continues the noise exactly when every draw but the last holds a multiple of 16
    values (B N T1 and B N block_steps), and then v, u, spikes and recorded traces of
    simulate(T1) + simulate(T2) are those of simulate(T1 + T2)."""
    params, state = make_reservoir(num_neurons, 1, in_degree=5, batch_size=batch, seed=1)
    assert (batch * num_neurons * split) % 16 == 0 and (batch * num_neurons * 16) % 16 == 0
    inputs = torch.rand(batch, 200, 1, generator=torch.Generator().manual_seed(0)) * 5
    whole = simulate(params, state, inputs, 0.5, seed=torch.Generator().manual_seed(7), record_trace=True,
                     block_steps=16)
    generator = torch.Generator().manual_seed(7)
    first = simulate(params, state, inputs[:, :split], 0.5, seed=generator, record_trace=True, block_steps=16)
    second = simulate(params, first.state, inputs[:, split:], 0.5, seed=generator, record_trace=True,
                      block_steps=16)
    assert whole.num_spikes == first.num_spikes + second.num_spikes > 10
    for got, want in ((second.state.neurons.v_mv, whole.state.neurons.v_mv),
                      (second.state.neurons.u, whole.state.neurons.u), (second.state.trace, whole.state.trace)):
        assert torch.equal(got, want)
    assert torch.equal(torch.cat([first.trace, second.trace], 1), whole.trace)
    assert torch.equal(torch.cat([first.spikes.step, second.spikes.step + split]), whole.spikes.step)
    assert torch.equal(torch.cat([first.spikes.neuron, second.spikes.neuron]), whole.spikes.neuron)
    assert second.state.step == 200


# --- non-finite and complex inputs --------------------------------------------------------


def test_non_finite_inputs_and_noise_are_value_errors_naming_the_entry():
    """A NaN in the input used to run into the neurons and stop the run with
    SimulationDiverged ("lower dt_ms, the weights or the input"), as if the model were
    unstable; now the bad entry is named before anything runs."""
    params, state = make_reservoir(30, 2, in_degree=5, batch_size=2, seed=0)
    inputs = torch.zeros(2, 20, 2)
    inputs[1, 10, 0] = float("nan")
    with pytest.raises(ValueError, match=re.escape("inputs has a non-finite value (nan) at index [1, 10, 0]")):
        simulate(params, state, inputs, 0.5, seed=0)
    noise = torch.zeros(2, 20, 30)
    noise[0, 3, 7] = -math.inf
    with pytest.raises(ValueError, match=re.escape("noise has a non-finite value (-inf) at index [0, 3, 7]")):
        simulate(params, state, None, 0.5, noise=noise)
    with pytest.raises(ValueError, match=re.escape("input_signal has a non-finite value (inf) at index [0, 1]")):
        reservoir_step(state, params, torch.tensor([[0.0, math.inf], [0.0, 0.0]]), 0.5,
                       generator=torch.Generator())
    step_noise = torch.zeros(2, 30)
    step_noise[1, 2] = float("nan")
    with pytest.raises(ValueError, match=re.escape("noise has a non-finite value (nan) at index [1, 2]")):
        reservoir_step(state, params, torch.zeros(2, 2), 0.5, noise=step_noise)
    with pytest.raises(TypeError, match="inputs has dtype torch.complex64; allowed: a real dtype"):
        simulate(params, state, torch.zeros(2, 20, 2, dtype=torch.complex64), 0.5, seed=0)
    with pytest.raises(ValueError, match=re.escape("inputs has a non-finite value (nan) at index [1, 10, 0]")):
        Brian2Session(params, state, inputs, 0.5, seed=0)  # checked before brian2 is imported
    # integer and bool inputs are finite by construction and still accepted
    assert simulate(params, state, torch.ones(2, 20, 2, dtype=torch.int64), 0.5, seed=0).state.step == 20


def test_brian2_drive_array_is_sized_before_it_is_drawn():
    """The Brian2 backend materialises the per-step drive [T, B*N] in float64 (injected noise
    or any input), ~3 copies at its peak: 10^6 steps of 1000 neurons tried to allocate ~24 GB
    unchecked. It is now checked against memory_limit_bytes before anything is drawn."""
    params, state = make_reservoir(20, 1, in_degree=3, seed=0, memory_limit_bytes=2**20)
    with pytest.raises(ValueError, match=r"num_steps=10000 x batch 1 x 20 neurons.*memory_limit_bytes=1048576"
                                         r".*noise_source='brian2'"):
        Brian2Session(params, state, None, 0.5, num_steps=10_000, seed=0)
    with pytest.raises(ValueError, match="memory_limit_bytes=1048576"):
        Brian2Session(params, state, torch.ones(1, 10_000, 1), 0.5, seed=0, noise_source="brian2")
    Brian2Session(params, state, None, 0.5, num_steps=10_000, seed=0, noise_source="brian2")  # no array
    Brian2Session(params, state, None, 0.5, num_steps=1000, seed=0)  # 0.46 MiB: fits


# --- readouts that break down inside run_session -------------------------------------------


def _session_setup(num_trials=12):
    task = WhatWhenTask(blocks=(Block(num_trials, 80.0, (0.6, 0.3)),), trial_ms=250.0, cue_onset_ms=20.0,
                        cue_ms=30.0, stimulus_ms=30.0, target_width_ms=15.0, anticipation_ms=20.0,
                        gate_before_ms=40.0, gate_after_ms=30.0, cue_trace_tau_ms=100.0)
    params, state = make_reservoir(40, task.num_inputs, in_degree=10, input_scale=15.0, seed=3)
    return task, params, state


def test_a_runaway_three_factor_rule_is_named_not_returned_as_nan():
    """learning_rate = 1 with |x|^2 ~ 40 (the gated delta rule needs eta g |x|^2 < ~2) made the
    weights inf, then NaN; run_session returned NaN outputs without a word."""
    task, params, state = _session_setup(num_trials=3)
    three = ThreeFactorReadout(task.num_readouts, 41, learning_rate=1.0, eligibility_tau_ms=0.0, dt_ms=1.0)
    with pytest.raises(ReadoutDiverged, match=r"learner 'fast' diverged in trial 0: network \(batch index\) 0 "
                                              r"has non-finite weights; lower learning_rate \(now 1.0\).*\|x\|\^2 = ") \
            as caught:
        run_session(task, task.sample(0), params, state, [Learner("fast", three, three.initial_state(1))], 1.0,
                    seed=0)
    again = pickle.loads(pickle.dumps(caught.value))  # a sweep worker sends it back
    assert type(again) is ReadoutDiverged and str(again) == str(caught.value)
    assert (again.learner, again.trial, again.batch_index) == ("fast", 0, 0)
    # a stable rate runs the same session through
    slow = ThreeFactorReadout(task.num_readouts, 41, learning_rate=0.01, eligibility_tau_ms=0.0, dt_ms=1.0)
    record = run_session(task, task.sample(0), params, state, [Learner("slow", slow, slow.initial_state(1))], 1.0,
                         seed=0)
    assert torch.isfinite(record.learners[0].state.weights).all()


def test_float32_force_with_a_tiny_alpha_is_named_when_p_loses_positive_definiteness():
    """P_0 = I / alpha with alpha = 1e-6 in float32: the RLS update cancels catastrophically
    and P stops being positive definite (its weights ended 23x off the ridge solution in a
    200-neuron run), silently. run_session now checks P's diagonal after every trial; the
    same session in float64 is fine."""
    task, params, state = _session_setup()
    force = FORCEReadout(task.num_readouts, 41, alpha=1e-6, update_every=1)
    session = task.sample(0)
    with pytest.raises(ReadoutDiverged, match=r"learner 'force' diverged in trial \d+: network \(batch index\) 0 "
                                              r"has a non-positive diagonal entry of P.*use dtype=torch.float64"):
        run_session(task, session, params, state, [Learner("force", force, force.initial_state(1))], 1.0, seed=0)
    record = run_session(task, session, params, state,
                         [Learner("force", force, force.initial_state(1, dtype=torch.float64))], 1.0, seed=0)
    p = record.learners[0].state.inverse_correlation[0]
    assert torch.linalg.eigvalsh((p + p.T) / 2).min() > 0


def test_force_sizes_its_inverse_correlation_before_allocating_it():
    # 8 networks of 20k features in float64: P alone is 25.6 GB; refused from the estimate
    readout = FORCEReadout(num_readouts=2, num_features=20_000, alpha=1.0)
    with pytest.raises(ValueError, match=r"FORCE's inverse correlation P \[batch_size=8, 20000, 20000\] in "
                                         r"torch.float64 needs about 47\.68 GiB .* memory_limit_bytes"):
        readout.initial_state(8, dtype=torch.float64)
    small = FORCEReadout(num_readouts=2, num_features=100, alpha=2.0)
    with pytest.raises(ValueError, match="memory_limit_bytes=1000"):
        small.initial_state(1, memory_limit_bytes=1000)  # 2 * 100^2 * 4 bytes = 80 kB
    state = small.initial_state(3, memory_limit_bytes=10**6)
    assert torch.equal(state.inverse_correlation, torch.eye(100).expand(3, -1, -1) / 2.0)
