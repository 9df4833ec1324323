"""Brian2 backend against the torch backend: identical rasters with injected noise (float64),
matching firing rates with Brian's own noise, standalone re-runs and the readout refusal."""
import dataclasses
import math
import os
import re

import numpy as np
import pytest
import torch

pytest.importorskip("brian2")

from neuro.reservoir.brian2_backend import Brian2Session, simulate_brian2
from neuro.reservoir.network import make_reservoir, simulate

pytestmark = pytest.mark.brian2


def _inputs_and_noise(batch, steps, neurons, channels, seed, dt=0.5):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.zeros(batch, steps, channels, dtype=torch.float64)
    inputs[:, steps // 4 : steps // 2] = torch.rand(batch, 1, channels, generator=g, dtype=torch.float64) * 3
    noise = torch.randn(batch, steps, neurons, generator=g, dtype=torch.float64) * 5.0 / math.sqrt(dt)
    return inputs, noise


def _assert_same_raster(a, b):
    assert a.num_spikes == b.num_spikes
    assert torch.equal(a.spikes.step, b.spikes.step)
    assert torch.equal(a.spikes.batch_index, b.spikes.batch_index)
    assert torch.equal(a.spikes.neuron, b.spikes.neuron)


def test_numpy_target_reproduces_torch_raster_bit_for_bit_1000_neurons_300_ms():
    # The oracle: same wiring, same injected noise, float64, 300 ms of N = 1000.
    params, state = make_reservoir(1000, 1, in_degree=100, seed=1, dtype=torch.float64)
    inputs, noise = _inputs_and_noise(1, 600, 1000, 1, seed=5)
    ours = simulate(params, state, inputs, 0.5, noise=noise)
    theirs = simulate_brian2(params, state, inputs, 0.5, noise=noise, target="numpy")
    assert ours.num_spikes > 1000
    _assert_same_raster(ours, theirs)
    assert torch.equal(ours.state.neurons.v_mv, theirs.state.neurons.v_mv)
    assert torch.equal(ours.state.neurons.u, theirs.state.neurons.u)
    torch.testing.assert_close(ours.state.trace, theirs.state.trace, rtol=1e-12, atol=1e-12)
    assert set(theirs.timings) == {"setup_s", "compile_s", "loop_s", "total_s"}


@pytest.mark.parametrize("kwargs", [
    {"synapse": "exponential", "synapse_tau_ms": 5.0, "weight_scale": 6.0},
    {"refractory_ms": 2.0, "connection_prob": 0.1, "batch_size": 2},
])
def test_numpy_target_identical_for_exponential_synapses_refractory_and_batches(kwargs):
    params, state = make_reservoir(150, 2, seed=2, dtype=torch.float64, **{"in_degree": 20, **kwargs})
    inputs, noise = _inputs_and_noise(params.batch_size, 300, 150, 2, seed=3)
    ours = simulate(params, state, inputs, 0.5, noise=noise)
    theirs = simulate_brian2(params, state, inputs, 0.5, noise=noise, target="numpy")
    assert ours.num_spikes > 100
    _assert_same_raster(ours, theirs)
    assert torch.equal(ours.state.synaptic_current, theirs.state.synaptic_current)


def test_firing_rates_agree_within_2_percent_with_brians_own_noise():
    # Different random streams: only statistics can agree. 4 networks x 1000 neurons x 1 s
    # (~33k spikes); across noise seeds the rate of one such run varies by ~0.5% (1 sd).
    params, state = make_reservoir(1000, 0, batch_size=4, seed=4)
    ours = simulate(params, state, None, 0.5, num_steps=2000, seed=1)
    theirs = simulate_brian2(params, state, None, 0.5, num_steps=2000, seed=2, noise_source="brian2",
                             target="numpy")
    assert ours.num_spikes > 20000
    assert abs(theirs.num_spikes - ours.num_spikes) / ours.num_spikes < 0.02


def test_on_step_runs_every_step_in_runtime_mode_and_standalone_refuses_it():
    params, state = make_reservoir(80, 1, in_degree=10, seed=6, dtype=torch.float64)
    inputs, noise = _inputs_and_noise(1, 100, 80, 1, seed=1)
    seen = []
    result = simulate_brian2(params, state, inputs, 0.5, noise=noise, target="numpy",
                             on_step=lambda step, spikes: seen.append((step, spikes.clone())))
    assert [s for s, _ in seen] == list(range(100))
    raster = torch.stack([s for _, s in seen], 1)
    assert torch.equal(raster, result.spikes.to_dense(1, 100, 80))
    with pytest.raises(ValueError, match="cpp_standalone"):
        Brian2Session(params, state, inputs, 0.5, noise=noise, target="cpp_standalone", on_step=lambda *a: None)
    # the network is built with or without the per-step call: changing on_step later is named
    session = Brian2Session(params, state, inputs, 0.5, noise=noise, target="numpy")
    session.run()
    session.on_step = lambda *a: None
    with pytest.raises(ValueError, match="on_step was set after this session's network was built"):
        session.run()


def test_argument_errors():
    params, state = make_reservoir(20, 1, in_degree=3, seed=0)
    with pytest.raises(ValueError, match="target"):
        Brian2Session(params, state, None, 0.5, num_steps=10, seed=0, target="genn")
    with pytest.raises(ValueError, match="noise_source"):
        Brian2Session(params, state, None, 0.5, num_steps=10, seed=0, noise_source="file")
    with pytest.raises(ValueError, match="dt_ms"):
        Brian2Session(params, state, None, 2.0, num_steps=10, seed=0)
    with pytest.raises(ValueError, match="seed"):
        Brian2Session(params, state, None, 0.5, num_steps=10)
    with pytest.raises(ValueError, match=r"noise_source='brian2' with noise_std > 0 needs seed="):
        Brian2Session(params, state, None, 0.5, num_steps=10, noise_source="brian2")
    with pytest.raises(ValueError, match="inputs"):
        Brian2Session(params, state, torch.zeros(1, 10, 2), 0.5, seed=0)
    other, _ = make_reservoir(20, 1, in_degree=3, seed=1)
    session = Brian2Session(params, state, None, 0.5, num_steps=10, seed=0)
    with pytest.raises(ValueError, match="wiring"):
        session.run(params=other)


def test_a_rerun_with_noisy_params_needs_the_seed_that_brian2_noise_needs():
    # a session made from noiseless params without seed= accepted noisy params in run(): Brian2's
    # generator then ran unseeded (two identical sessions gave different rasters)
    quiet, state = make_reservoir(20, 1, in_degree=3, seed=0, noise_std=0.0, dtype=torch.float64)
    noisy, _ = make_reservoir(20, 1, in_degree=3, seed=0, noise_std=20.0, dtype=torch.float64)
    session = Brian2Session(quiet, state, None, 0.5, num_steps=10, noise_source="brian2", target="numpy")
    with pytest.raises(ValueError, match=r"noise_source='brian2' with noise_std > 0 needs seed="):
        session.run(params=noisy)
    assert session.run(params=quiet).num_spikes >= 0  # noiseless params still run
    runs = [Brian2Session(quiet, state, None, 0.5, num_steps=40, seed=3, noise_source="brian2",
                          target="numpy").run(params=noisy) for _ in range(2)]
    _assert_same_raster(*runs)  # with seed= the rerun is reproducible


@pytest.mark.slow
def test_cpp_standalone_builds_once_and_reruns_with_new_weights():
    # One compilation (~20-40 s on 2 cores), then a re-run with new weights via run_args.
    # With injected noise the compiled C++ also reproduces our float64 raster.
    params, state = make_reservoir(200, 1, in_degree=20, batch_size=2, seed=1, dtype=torch.float64)
    inputs, noise = _inputs_and_noise(2, 300, 200, 1, seed=0)
    halved = dataclasses.replace(params, synapses=params.synapses._replace(weight=params.synapses.weight * 0.5))
    with Brian2Session(params, state, inputs, 0.5, noise=noise, target="cpp_standalone") as session:
        first = session.run()
        second = session.run(params=halved)
        project = session.directory
        assert os.path.isdir(project)
    assert not os.path.exists(project)  # the session's temporary project is deleted on close
    assert first.timings["compile_s"] > 0 and second.timings["compile_s"] == 0
    _assert_same_raster(simulate(params, state, inputs, 0.5, noise=noise), first)
    _assert_same_raster(simulate(halved, state, inputs, 0.5, noise=noise), second)


def test_per_network_neuron_parameters_reach_brian2():
    # A sweep over neuron constants: a, b, c, d given per network ([B, N]) instead of shared.
    params, state = make_reservoir(120, 1, in_degree=12, batch_size=2, seed=7, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    scale = 1.0 + 0.3 * torch.rand(2, 120, generator=g, dtype=torch.float64)
    neurons = params.neurons._replace(a=params.neurons.a * scale, d=params.neurons.d * scale.flip(0),
                                      c=params.neurons.c.expand(2, 120) + 3.0 * scale)
    swept = dataclasses.replace(params, neurons=neurons)
    inputs, noise = _inputs_and_noise(2, 300, 120, 1, seed=4)
    ours = simulate(swept, state, inputs, 0.5, noise=noise)
    theirs = simulate_brian2(swept, state, inputs, 0.5, noise=noise, target="numpy")
    assert ours.num_spikes > 100
    _assert_same_raster(ours, theirs)
    baseline = simulate(params, state, inputs, 0.5, noise=noise)
    assert baseline.num_spikes != ours.num_spikes  # the per-network constants changed the dynamics


def test_a_continued_run_carries_the_step_counter_and_trace_and_reruns_count_from_zero():
    params, state = make_reservoir(40, 1, in_degree=5, seed=1, dtype=torch.float64)
    inputs, noise = _inputs_and_noise(1, 60, 40, 1, seed=2)
    first = simulate(params, state, inputs[:, :30], 0.5, noise=noise[:, :30])
    ours = simulate(params, first.state, inputs[:, 30:], 0.5, noise=noise[:, 30:])
    seen = []
    session = Brian2Session(params, state, inputs[:, 30:], 0.5, noise=noise[:, 30:], target="numpy",
                            on_step=lambda step, spikes: seen.append(step))
    session.run()
    theirs = session.run(state=first.state)  # another start than the session's own
    _assert_same_raster(ours, theirs)
    assert theirs.state.step == ours.state.step == 60
    assert torch.equal(theirs.state.neurons.v_mv, ours.state.neurons.v_mv)
    torch.testing.assert_close(theirs.state.trace, ours.state.trace, rtol=1e-12, atol=1e-12)
    assert seen == list(range(30)) * 2  # each run's steps count from 0


@pytest.mark.parametrize("num_neurons", [1, 10])
def test_a_network_without_synapses_runs_and_matches_torch(num_neurons):
    # in_degree=0 (or a single neuron): Brian2 refuses a Synapses object that connects nothing,
    # so the backend must build none (it raised a BrianObjectException from deep in Brian2)
    params, state = make_reservoir(num_neurons, 1, in_degree=0, seed=0, dtype=torch.float64)
    inputs, noise = _inputs_and_noise(1, 200, num_neurons, 1, seed=3)
    noise = noise + 10.0  # a depolarising current: every neuron fires
    ours = simulate(params, state, inputs, 0.5, noise=noise)
    theirs = simulate_brian2(params, state, inputs, 0.5, noise=noise, target="numpy")
    assert ours.num_spikes > 0
    _assert_same_raster(ours, theirs)
    assert torch.equal(ours.state.neurons.v_mv, theirs.state.neurons.v_mv)


def test_a_non_finite_state_raises_simulation_diverged_as_the_torch_backend_does():
    # a drive that overflows left NaN in the returned state without a word; the torch
    # backend raises SimulationDiverged for the same run (a finite current so large that v^2
    # overflows within step 4; a NaN in the noise is refused up front as bad input)
    from neuro.reservoir.network import SimulationDiverged

    params, state = make_reservoir(20, 1, in_degree=3, seed=0, dtype=torch.float64)
    noise = torch.zeros(1, 10, 20, dtype=torch.float64)
    noise[0, 4, 7] = 1e200
    with pytest.raises(SimulationDiverged, match="at step 4: network"):
        simulate(params, state, None, 0.5, noise=noise)
    with pytest.raises(SimulationDiverged, match=r"at or before step 9: network \(batch index\) 0, neuron 7 ") as info:
        simulate_brian2(params, state, None, 0.5, noise=noise, target="numpy")
    assert not info.value.exact_step
    strong = torch.full((1, 50, 1), 1e5, dtype=torch.float64)
    with pytest.raises(SimulationDiverged, match="at or before step 49"):
        simulate_brian2(params, state, strong, 0.5, seed=0, target="numpy")


def test_wrong_argument_types_are_named_type_errors():
    # these were AttributeErrors ('numpy.ndarray' object has no attribute 'dim', ...)
    params, state = make_reservoir(20, 1, in_degree=3, seed=0)
    with pytest.raises(TypeError, match="params must be a ReservoirParams"):
        Brian2Session(None, state, None, 0.5, num_steps=10, seed=0)
    with pytest.raises(TypeError, match="state must be a ReservoirState"):
        Brian2Session(params, tuple(state), None, 0.5, num_steps=10, seed=0)
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor, got ndarray"):
        Brian2Session(params, state, np.zeros((1, 10, 1)), 0.5, seed=0)
    with pytest.raises(ValueError, match=re.escape("inputs has shape [10, 1]; expected [1, *, 1]")):
        Brian2Session(params, state, torch.zeros(10, 1), 0.5, seed=0)
    session = Brian2Session(params, state, None, 0.5, num_steps=10, seed=0)
    with pytest.raises(TypeError, match="state must be a ReservoirState"):
        session.run(state=tuple(state))


def test_a_rerun_refuses_params_whose_drive_the_session_cannot_change():
    # the drive array (inputs x input_weights + injected noise drawn with noise_std) is made with
    # the session: run(params=...) with 4x the input weights, or with noise_std 0, silently reran
    # the old drive (same raster as the first run, not the torch run of the new params)
    noisy, state = make_reservoir(20, 1, in_degree=3, seed=0, noise_std=5.0, dtype=torch.float64)
    inputs = torch.zeros(1, 40, 1, dtype=torch.float64)
    inputs[:, 10:20] = 3.0
    quiet = dataclasses.replace(noisy, noise_std=torch.zeros_like(noisy.noise_std))
    session = Brian2Session(noisy, state, inputs, 0.5, seed=1, target="numpy")
    with pytest.raises(ValueError, match="change noise_std"):
        session.run(params=quiet)
    stronger = dataclasses.replace(noisy, input_weights=noisy.input_weights * 4)
    with pytest.raises(ValueError, match="change input_weights"):
        session.run(params=stronger)
    # new recurrent weights are what a re-run can change; explicit noise ignores noise_std
    halved = dataclasses.replace(noisy, synapses=noisy.synapses._replace(weight=noisy.synapses.weight * 0.5))
    _assert_same_raster(session.run(params=halved), simulate(halved, state, inputs, 0.5, seed=1))
    noise = torch.randn(1, 40, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 8
    given = Brian2Session(noisy, state, inputs, 0.5, noise=noise, target="numpy")
    _assert_same_raster(given.run(params=quiet), simulate(quiet, state, inputs, 0.5, noise=noise))
