"""The reservoir step and simulate: dense-matrix oracle, fast path == pure step, batching,
noise, divergence and argument errors."""
import dataclasses
import math
import pickle

import numpy as np
import pytest
import torch

from neuro.reservoir.connectivity import SynapseList, dense_weights
from neuro.reservoir.izhikevich import IzhikevichState
from neuro.reservoir.network import (
    ReservoirState,
    SimulationDiverged,
    draw_noise,
    make_reservoir,
    reservoir_step,
    simulate,
)


def _random_state(params, generator):
    b, n = params.batch_size, params.num_neurons
    v = torch.empty(b, n, dtype=params.dtype).uniform_(-75.0, 35.0, generator=generator)
    u = params.neurons.b * v + torch.empty(b, n, dtype=params.dtype).uniform_(-2, 2, generator=generator)
    current = torch.empty(b, n, dtype=params.dtype).uniform_(0, 5, generator=generator)
    trace = torch.empty(b, n, dtype=params.dtype).uniform_(0, 1, generator=generator)
    return ReservoirState(IzhikevichState(v, u), current, trace, 7)


@pytest.mark.parametrize("synapse,batch,neurons", [("delta", 2, 200), ("exponential", 2, 200),
                                                   ("delta", 2, 2100), ("exponential", 1, 4200)])
def test_one_step_matches_dense_matrix_oracle(synapse, batch, neurons):
    # Oracle written from the equations with a dense W (not the event table), float64:
    # same operations in a different order, so agreement to ~1e-12 (values ~1e2 mV).
    # B * N >= 4096 takes the kernel's indexed reset instead of the masked one.
    params, _ = make_reservoir(neurons, 3, in_degree=30, batch_size=batch, synapse=synapse, synapse_tau_ms=4.0,
                               input_scale=2.0, seed=5, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    state = _random_state(params, g)
    x = torch.rand(batch, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(batch, neurons, generator=g, dtype=torch.float64)
    dt = 0.5
    new, spikes = reservoir_step(state, params, x, dt, noise=noise)

    w = dense_weights(params.synapses, neurons, batch)
    a, b, c, d = params.neurons.a, params.neurons.b, params.neurons.c, params.neurons.d
    current = torch.einsum("bnm,bm->bn", params.input_weights, x) + noise
    if synapse == "exponential":
        current = current + state.synaptic_current
    v, u = state.neurons.v_mv, state.neurons.u
    for _ in range(2):
        v = v + dt / 2 * (0.04 * v * v + 5 * v + 140 - u + current)
    u = u + dt * a * (b * v - u)
    s = v >= 30
    assert int(s.sum()) > 5  # the random state puts some neurons over threshold
    assert torch.equal(spikes, s)
    recurrent = torch.einsum("bij,bj->bi", w, s.double())
    if synapse == "delta":
        v_expected, i_expected = v + recurrent, state.synaptic_current  # unused by delta synapses
    else:
        v_expected, i_expected = v, state.synaptic_current * math.exp(-dt / 4.0) + recurrent
    v_expected = torch.where(s, c.expand_as(v), v_expected)
    u_expected = u + d * s
    torch.testing.assert_close(new.neurons.v_mv, v_expected, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(new.neurons.u, u_expected, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(new.synaptic_current, i_expected, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(new.trace, state.trace * math.exp(-dt / 20.0) + s, rtol=1e-12, atol=1e-12)
    assert new.step == 8
    assert not torch.equal(new.neurons.v_mv, state.neurons.v_mv)  # state was not modified in place
    assert torch.all(state.neurons.v_mv <= 35.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("synapse,refractory_ms", [("delta", 0.0), ("exponential", 0.0), ("delta", 2.0)])
def test_simulate_equals_a_loop_of_pure_steps_bit_for_bit(dtype, synapse, refractory_ms):
    params, state = make_reservoir(150, 2, in_degree=20, batch_size=2, synapse=synapse, weight_scale=4.0,
                                   refractory_ms=refractory_ms, seed=3, dtype=dtype)
    g = torch.Generator().manual_seed(2)
    steps = 130  # not a multiple of the block size
    inputs = torch.rand(2, steps, 2, generator=g, dtype=dtype)
    noise = torch.randn(2, steps, 150, generator=g, dtype=dtype) * 8
    result = simulate(params, state, inputs, 0.5, noise=noise, record="dense", record_trace=True, block_steps=16)
    loop_state, rasters, traces = state, [], []
    for t in range(steps):
        loop_state, s = reservoir_step(loop_state, params, inputs[:, t], 0.5, noise=noise[:, t])
        rasters.append(s)
        traces.append(loop_state.trace)
    assert torch.equal(result.spikes, torch.stack(rasters, 1))
    assert result.num_spikes == int(result.spikes.sum()) > 50
    assert torch.equal(result.trace, torch.stack(traces, 1))
    for got, want in ((result.state.neurons.v_mv, loop_state.neurons.v_mv),
                      (result.state.neurons.u, loop_state.neurons.u),
                      (result.state.synaptic_current, loop_state.synaptic_current)):
        assert torch.equal(got, want)
    assert result.state.step == steps
    # without record_trace the final trace is formed from the spike record in closed form
    indices = simulate(params, state, inputs, 0.5, noise=noise)
    tol = 1e-5 if dtype == torch.float32 else 1e-12  # rounding of ~T terms of size <= 1
    torch.testing.assert_close(indices.state.trace, loop_state.trace, rtol=tol, atol=tol)
    dense = indices.spikes.to_dense(2, steps, 150)
    assert torch.equal(dense, result.spikes)


def _take_network(params, k):
    syn = params.synapses
    keep = syn.batch_index == k
    synapses = SynapseList(torch.zeros_like(syn.batch_index[keep]), syn.pre_index[keep], syn.post_index[keep],
                           syn.weight[keep])
    return dataclasses.replace(params, synapses=synapses, input_weights=params.input_weights[k : k + 1])


def test_batched_networks_evolve_independently():
    params, state = make_reservoir(120, 1, in_degree=15, batch_size=3, seed=8, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    inputs = torch.rand(3, 200, 1, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 200, 120, generator=g, dtype=torch.float64) * 7
    batched = simulate(params, state, inputs, 0.5, noise=noise, record="dense")
    for k in range(3):
        single_params = _take_network(params, k)
        single_state = ReservoirState(IzhikevichState(state.neurons.v_mv[k : k + 1], state.neurons.u[k : k + 1]),
                                      state.synaptic_current[k : k + 1], state.trace[k : k + 1], 0)
        single = simulate(single_params, single_state, inputs[k : k + 1], 0.5, noise=noise[k : k + 1], record="dense")
        assert torch.equal(single.spikes[0], batched.spikes[k])


def test_drawn_noise_is_seeded_and_has_the_documented_scale():
    params, state = make_reservoir(300, 0, in_degree=20, noise_std=4.0, seed=1)
    a = simulate(params, state, None, 0.25, num_steps=300, seed=11)
    b = simulate(params, state, None, 0.25, num_steps=300, seed=11)
    c = simulate(params, state, None, 0.25, num_steps=300, seed=np.random.default_rng(3))
    assert torch.equal(a.spikes.step, b.spikes.step) and torch.equal(a.spikes.neuron, b.spikes.neuron)
    assert a.num_spikes != c.num_spikes or not torch.equal(a.spikes.neuron, c.spikes.neuron)
    # std noise_std / sqrt(dt): 4 / 0.5 = 8; 300 x 400 draws, sd of the std estimate ~ 8 / sqrt(2 * 1.2e5)
    drawn = draw_noise(params, (400, 1, 300), 0.25, torch.Generator().manual_seed(0))
    assert abs(float(drawn.std()) - 8.0) < 5 * 8.0 / math.sqrt(2 * 1.2e5)
    quiet, quiet_state = make_reservoir(50, 0, in_degree=5, noise_std=0.0, seed=1)
    silent = simulate(quiet, quiet_state, None, 0.5, num_steps=200)  # no seed needed without noise
    assert silent.num_spikes == 0  # the resting state is a fixed point without input


def test_default_network_fires_at_a_plausible_rate():
    # Izhikevich 2003's network fires at ~10 Hz; our default (documented) at ~8 Hz.
    params, state = make_reservoir(1000, 0, seed=0)
    result = simulate(params, state, None, 0.5, num_steps=1000, seed=0)
    rate_hz = result.num_spikes / 1000 / 0.5
    assert 4.0 < rate_hz < 15.0


@pytest.mark.parametrize("where", ["simulate", "step"])
def test_divergence_names_step_batch_and_neuron(where):
    params, state = make_reservoir(40, 1, in_degree=5, batch_size=3, seed=2, dtype=torch.float64)
    noise = torch.zeros(3, 60, 40, dtype=torch.float64)
    # a finite current so large that v^2 overflows within step 37 (a NaN in the noise is
    # refused up front as bad input, see test_long_runs_and_bad_values.py)
    noise[1, 37, 5] = 1e200
    inputs = torch.zeros(3, 60, 1, dtype=torch.float64)
    with pytest.raises(SimulationDiverged) as info:
        if where == "simulate":
            simulate(params, state, inputs, 0.5, noise=noise, block_steps=16)
        else:
            for t in range(60):
                state, _ = reservoir_step(state, params, inputs[:, t], 0.5, noise=noise[:, t])
    error = info.value
    assert (error.step, error.batch_index, error.neuron) == (37, 1, 5)
    assert "step 37" in str(error) and "batch index) 1" in str(error) and "neuron 5" in str(error)
    # a process-pool or Dask worker pickles it to send it back
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is SimulationDiverged and str(again) == str(error)
    assert (again.step, again.batch_index, again.neuron, again.exact_step) == (37, 1, 5, True)


def test_argument_errors_name_the_argument():
    params, state = make_reservoir(30, 2, in_degree=5, seed=0)
    x = torch.zeros(1, 10, 2)
    with pytest.raises(ValueError, match="dt_ms"):
        simulate(params, state, x, 1.5, seed=0)
    with pytest.raises(ValueError, match="dt_ms"):
        reservoir_step(state, params, x[:, 0], 0.0, generator=torch.Generator())
    with pytest.raises(ValueError, match="inputs"):
        simulate(params, state, torch.zeros(1, 10, 3), 0.5, seed=0)
    with pytest.raises(ValueError, match="inputs"):
        simulate(params, state, torch.zeros(10, 2), 0.5, seed=0)
    with pytest.raises(ValueError, match="input_signal"):
        reservoir_step(state, params, torch.zeros(2, 2), 0.5, generator=torch.Generator())
    with pytest.raises(ValueError, match="noise"):
        simulate(params, state, x, 0.5, noise=torch.zeros(1, 9, 30))
    with pytest.raises(ValueError, match="seed"):
        simulate(params, state, x, 0.5)
    with pytest.raises(ValueError, match="generator"):
        reservoir_step(state, params, x[:, 0], 0.5)
    with pytest.raises(ValueError, match="record"):
        simulate(params, state, x, 0.5, seed=0, record="raster")
    with pytest.raises(ValueError, match="num_steps"):
        simulate(params, state, None, 0.5, num_steps=-1, seed=0)
    with pytest.raises(ValueError, match="num_steps"):
        simulate(params, state, x, 0.5, num_steps=11, seed=0)
    with pytest.raises(ValueError, match="state"):
        simulate(params, state._replace(neurons=IzhikevichState(torch.zeros(2, 30), torch.zeros(2, 30))),
                 x, 0.5, seed=0)


def test_params_and_state_move_between_dtypes_keeping_the_wiring():
    params, state = make_reservoir(100, 2, in_degree=10, seed=3)
    from neuro.reservoir.network import state_to

    as64 = params.to(dtype=torch.float64)
    assert as64.dtype == torch.float64 and as64.event_table.weights.dtype == torch.float64
    assert torch.equal(as64.synapses.pre_index, params.synapses.pre_index)
    assert torch.equal(as64.event_table.targets, params.event_table.targets)
    state64 = state_to(state, dtype=torch.float64)
    assert state64.neurons.v_mv.dtype == torch.float64 and state64.step == state.step
    x = torch.zeros(1, 50, 2, dtype=torch.float64)
    noise = torch.randn(1, 50, 100, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 20
    # float32 weights widened to float64 exactly: the float64 run sees the same numbers
    assert torch.equal(as64.synapses.weight, params.synapses.weight.double())
    result = simulate(as64, state64, x, 0.5, noise=noise)
    assert result.state.neurons.v_mv.dtype == torch.float64 and result.num_spikes > 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("synapse,batch,neurons,shared", [("delta", 2, 300, False), ("exponential", 2, 300, False),
                                                          ("delta", 3, 1400, False), ("exponential", 3, 1400, False),
                                                          ("delta", 3, 1400, True), ("exponential", 3, 1400, True),
                                                          ("delta", 1, 4099, False)])  # B * N not a multiple of 8
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bound_stepper_equals_the_kernel_step(synapse, batch, neurons, shared, threads, dtype):
    # The bound step (used by simulate on CPU) must be the same computation as
    # izhikevich_network_step_ (used by reservoir_step): compare op for op. Below 4096
    # neurons (B * N) it is kernels.izhikevich.naive.network_stepper (one thread: put_;
    # several threads: scatter_add_); from 4096 on its batched branch (scatter_add_,
    # indexed reset; shared wiring: targets from network 0's rows, the B*N-row table unbuilt).
    from kernels.izhikevich.naive import izhikevich_network_step_
    from neuro.reservoir.step import Stepper, _state_buffer

    params, state = make_reservoir(neurons, 0, in_degree=30, batch_size=batch, synapse=synapse,
                                   weight_scale=4.0, seed=9, shared_wiring=shared, dtype=dtype)
    table = params.event_table
    assert (table.shared_targets is not None) == shared
    g = torch.Generator().manual_seed(0)
    drives = 140.0 + 9.0 * torch.randn(80, batch, neurons, generator=g, dtype=dtype)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        bound = Stepper(params, _state_buffer(state, params), 0.5, None)
        quiet = Stepper(params, _state_buffer(state, params), 0.5, None, fill_spikes=False)
    finally:
        torch.set_num_threads(previous_threads)
    plain = Stepper(params, _state_buffer(state, params), 0.5, None, bind=False)
    assert bound.step.__name__ == "step" and "network_stepper" in bound.step.__qualname__
    assert "stepper" not in plain.step.__qualname__
    if shared:
        assert table._targets is None  # the bound steps did not build the B*N-row table
    num_spikes = 0
    for drive in drives:
        a = bound.step(drive)
        c = quiet.step(drive)
        b = izhikevich_network_step_(plain.buffer, plain.v, plain.u, plain.synaptic_current, drive, plain.spikes,
                                     plain.scratch_hc, plain.scratch_t, table.targets, table.weights,
                                     plain.half_step, plain.k1, plain.k2, plain.u_decay, plain.u_v_gain,
                                     params.neurons.c, plain.v_peak, plain.synapse_decay)
        assert torch.equal(a.view(-1), b) and torch.equal(c.view(-1), b)  # bound steps return [S, 1]
        assert torch.equal(bound.spikes, plain.spikes)
        num_spikes += a.numel()
    assert num_spikes > 20 * batch  # delivery was exercised
    assert torch.equal(bound.buffer, plain.buffer) and torch.equal(quiet.buffer, plain.buffer)
    if shared:  # the lazily built table is network 0's rows shifted by b (3N + 1)
        rows = table.targets.view(batch, neurons, -1)
        for k in range(batch):
            assert torch.equal(rows[k], table.shared_targets + k * (3 * neurons + 1))


@pytest.mark.parametrize("refractory_ms,record_trace", [(0.0, False), (2.0, True)])
def test_simulate_returns_ordinary_tensors_from_its_inference_mode_loop(refractory_ms, record_trace):
    # The loop runs in torch.inference_mode; what simulate returns must be ordinary tensors
    # (in-place updates allowed outside inference mode), and a second simulate continues it.
    params, state = make_reservoir(120, 0, in_degree=10, batch_size=2, refractory_ms=refractory_ms,
                                   weight_scale=4.0, seed=1)
    first = simulate(params, state, None, 0.5, num_steps=60, seed=0, record_trace=record_trace)
    tensors = [first.state.neurons.v_mv, first.state.neurons.u, first.state.synaptic_current, first.state.trace,
               *first.spikes]
    if refractory_ms:
        tensors.append(first.state.neurons.refractory_left_ms)
    if record_trace:
        tensors.append(first.trace)
    assert first.num_spikes > 0 and not any(t.is_inference() for t in tensors)
    for t in tensors:
        t.add_(0)  # would raise for an inference tensor
    second = simulate(params, first.state, None, 0.5, num_steps=60, seed=1)
    assert second.state.step == 120 and second.num_spikes > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_drawn_noise_scaled_by_normal_equals_a_separate_multiply(dtype):
    # With one noise_std for all neurons draw_noise lets normal_ scale (z * std + 0.0); the
    # values must be those of unit draws times std, bit for bit, in every shape the loops use
    # (per step [B, N], blocks [T, B, N], sizes not multiples of torch's 16-value chunks).
    for neurons, shape in ((300, (3, 2, 300)), (37, (5, 1, 37)), (37, (1, 37))):
        params, _ = make_reservoir(neurons, 0, in_degree=5, noise_std=4.0, seed=1, dtype=dtype)
        assert params.uniform_noise_std
        drawn = draw_noise(params, shape, 0.25, torch.Generator().manual_seed(3))
        unit = torch.empty(shape, dtype=dtype).normal_(generator=torch.Generator().manual_seed(3))
        assert torch.equal(drawn, unit * (params.noise_std / math.sqrt(0.25)))
    varied = torch.linspace(1.0, 5.0, 40, dtype=torch.float64)
    params, _ = make_reservoir(40, 0, in_degree=5, noise_std=varied, seed=1, dtype=dtype)
    assert not params.uniform_noise_std
    drawn = draw_noise(params, (6, 1, 40), 0.5, torch.Generator().manual_seed(3))
    unit = torch.empty(6, 1, 40, dtype=dtype).normal_(generator=torch.Generator().manual_seed(3))
    assert torch.equal(drawn, unit * (params.noise_std / math.sqrt(0.5)))


def test_the_noise_alone_fixes_the_number_of_steps():
    params, state = make_reservoir(20, 1, in_degree=3, seed=0)
    noise = 6 * torch.randn(1, 30, 20, generator=torch.Generator().manual_seed(0))
    implicit = simulate(params, state, noise=noise, record="dense")
    explicit = simulate(params, state, num_steps=30, noise=noise, record="dense")
    assert implicit.state.step == 30 and torch.equal(implicit.spikes, explicit.spikes)


@pytest.mark.parametrize("value", [np.float32(4.0), np.int64(4)])
def test_numpy_scalar_time_constants_are_accepted(value):
    # a float32 config array's entries: ReservoirParams refused them with the false
    # "synapse_tau_ms=np.float32(4.0) must be a finite number > 0 (ms)"
    params, state = make_reservoir(30, 1, in_degree=3, seed=0, synapse="exponential",
                                   synapse_tau_ms=value, trace_tau_ms=value)
    reference, _ = make_reservoir(30, 1, in_degree=3, seed=0, synapse="exponential",
                                  synapse_tau_ms=4.0, trace_tau_ms=4.0)
    assert type(params.synapse_tau_ms) is float and params.trace_tau_ms == 4.0
    noise = torch.randn(1, 50, 30, generator=torch.Generator().manual_seed(0)) * 10
    ours = simulate(params, state, None, 0.5, noise=noise, record="dense", record_trace=True)
    theirs = simulate(reference, state, None, 0.5, noise=noise, record="dense", record_trace=True)
    assert torch.equal(ours.spikes, theirs.spikes) and torch.equal(ours.trace, theirs.trace)
    with pytest.raises(ValueError, match="synapse_tau_ms"):
        make_reservoir(30, 1, in_degree=3, synapse="exponential", synapse_tau_ms=np.float32(0.0))


def test_per_class_noise_std_at_one_ms_reproduces_izhikevich_thalamic_input():
    """Izhikevich 2003: I = [5 randn (excitatory); 2 randn (inhibitory)] per 1 ms step. The
    documented recipe noise_std = where(E, 5, 2) with dt = 1 ms draws exactly those scales;
    the default (5 for all, our choice) does not. 200 steps x 80 / 20 neurons = 16000 / 4000
    draws per class: the sd of a std estimate is std / sqrt(2 * draws), 5 sd < 6% of it."""
    probe, _ = make_reservoir(100, 0, in_degree=5, seed=2)
    assert torch.all(probe.noise_std == 5.0)  # the default, documented as our choice
    noise_std = torch.where(probe.is_excitatory, 5.0, 2.0)
    params, _ = make_reservoir(100, 0, in_degree=5, seed=2, noise_std=noise_std, dtype=torch.float64)
    drawn = draw_noise(params, (200, 1, 100), 1.0, torch.Generator().manual_seed(5))[:, 0]
    for mask, std in ((params.is_excitatory, 5.0), (~params.is_excitatory, 2.0)):
        values = drawn[:, mask]
        assert abs(float(values.std()) - std) < 5 * std / math.sqrt(2 * values.numel())


def test_is_excitatory_sets_the_neuron_types_as_well_as_the_weight_signs():
    # the override reached only the weights' signs: a neuron given as inhibitory kept the
    # regular-spiking a, b, c, d of the first 80% and an "excitatory" one the fast-spiking set
    exc = torch.tensor([False, True, True, True, True])
    params, _ = make_reservoir(5, 1, in_degree=2, is_excitatory=exc, seed=0, dtype=torch.float64)
    r = torch.rand(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # the neuron draw
    expected = {"a": torch.where(exc, 0.02, 0.02 + 0.08 * r), "b": torch.where(exc, 0.2, 0.25 - 0.05 * r),
                "c": torch.where(exc, -65.0 + 15.0 * r * r, -65.0), "d": torch.where(exc, 8.0 - 6.0 * r * r, 2.0)}
    for name, value in expected.items():
        torch.testing.assert_close(getattr(params.neurons, name)[0], value, rtol=0, atol=1e-15)
    assert torch.equal(params.is_excitatory, exc)
    from_inhibitory = params.synapses.pre_index == 0
    assert bool((params.synapses.weight[from_inhibitory] <= 0).all())
    assert bool((params.synapses.weight[~from_inhibitory] >= 0).all())
    # the default assignment, given explicitly, builds the same network
    default, _ = make_reservoir(5, 1, in_degree=2, seed=0, dtype=torch.float64)
    given, _ = make_reservoir(5, 1, in_degree=2, seed=0, dtype=torch.float64, is_excitatory=torch.arange(5) < 4)
    for name in "abcd":
        assert torch.equal(getattr(default.neurons, name), getattr(given.neurons, name))
    assert torch.equal(default.synapses.weight, given.synapses.weight)
