"""simulate(engine="compiled") against the eager engine (the oracle, itself bit-identical to Brian2
in float64): identical bits on the same noise, the same statistics on its own noise."""
import math

import numpy as np
import pytest
import torch

from kernels.izhikevich import compiled
from neuro.reservoir.network import SimulationDiverged, make_reservoir, simulate

pytestmark = pytest.mark.skipif(compiled.find_compiler() is None, reason="no C compiler on this machine")


def _noise(batch, steps, n, dtype, seed=5):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, n, generator=generator, dtype=dtype) * (5.0 / math.sqrt(0.5))


def _assert_same_run(eager, fast):
    assert eager.num_spikes == fast.num_spikes
    for a, b in zip(eager.spikes, fast.spikes):
        assert torch.equal(a, b)
    for a, b in ((eager.state.neurons.v_mv, fast.state.neurons.v_mv), (eager.state.neurons.u, fast.state.neurons.u),
                 (eager.state.synaptic_current, fast.state.synaptic_current), (eager.state.trace, fast.state.trace)):
        assert torch.equal(a, b)
    assert eager.state.step == fast.state.step
    assert (eager.trace is None) == (fast.trace is None)
    if eager.trace is not None:  # the recorded per-step traces [B, T, N]
        assert torch.equal(eager.trace, fast.trace)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("synapse, batch, num_neurons, shared, num_inputs", [
    ("delta", 1, 150, False, 0),          # the eager single-network step
    ("delta", 3, 200, False, 2),          # inputs, independent wirings
    ("exponential", 8, 520, True, 0),     # B * N >= 4096: the eager batched step, shared rows
    ("exponential", 8, 520, False, 3),
])
def test_same_noise_gives_identical_bits(monkeypatch, dtype, synapse, batch, num_neurons, shared, num_inputs):
    # exact equality: both engines evaluate the same IEEE operations in the same order, each
    # rounded once (no FMA contraction in the C build), and deliver spikes in the same order.
    # A spike buffer of B * N slots (the least allowed) makes C return after every step
    # with a spike and the loop resume: counted below.
    monkeypatch.setattr(compiled, "MIN_SPIKE_CAPACITY", 0)
    monkeypatch.setattr(compiled, "SPIKE_CAPACITY_PER_NEURON", 1)
    calls = []
    original_init = compiled.CompiledRun.__init__

    def counting_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        function = self.function
        self.function = lambda *call: calls.append(1) or function(*call)

    monkeypatch.setattr(compiled.CompiledRun, "__init__", counting_init)
    params, state = make_reservoir(num_neurons, num_inputs, batch_size=batch, in_degree=40, seed=1, dtype=dtype,
                                   synapse=synapse, shared_wiring=shared,
                                   weight_scale=5.0 if synapse == "delta" else 0.5)
    steps = 160
    noise = _noise(batch, steps, num_neurons, dtype)
    inputs = (torch.randn(batch, steps, num_inputs, generator=torch.Generator().manual_seed(2), dtype=dtype)
              if num_inputs else None)
    kwargs = {"num_steps": None if num_inputs else steps, "noise": noise, "block_steps": 47}
    eager = simulate(params, state, inputs, 0.5, **kwargs)
    fast = simulate(params, state, inputs, 0.5, engine="compiled", **kwargs)
    assert eager.num_spikes > 50  # the run exercises delivery and reset
    assert len(calls) > math.ceil(steps / 47)  # more C calls than drive blocks: resumptions
    _assert_same_run(eager, fast)
    # a continued run (state.step > 0, non-zero traces and synaptic currents) stays identical,
    # here with the per-step traces recorded
    continued = [simulate(params, run.state, inputs, 0.5, engine=engine, record_trace=True, **kwargs)
                 for run, engine in ((eager, "eager"), (fast, "compiled"))]
    assert continued[0].trace.shape == (batch, steps, num_neurons)
    _assert_same_run(*continued)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_drawn_noise_is_the_generators_stream_times_the_noise_std(dtype):
    # The engine's noise current is z * (noise_std / sqrt(dt)) with z the generator's stream
    # (tested against N(0, 1) in tests/kernels/test_izhikevich_compiled.py) in (step,
    # network, neuron) order: feeding that current to the eager engine reproduces the run
    # bit for bit (N a multiple of the 4 lanes, so no draws are skipped between networks).
    batch, n, steps, dt_ms = 3, 240, 120, 0.5
    params, state = make_reservoir(n, 0, batch_size=batch, in_degree=30, seed=0, dtype=dtype)
    fast = simulate(params, state, None, dt_ms, num_steps=steps, seed=77, engine="compiled")
    z = compiled.standard_normal(compiled.rng_state(77), steps * batch * n).view(steps, batch, n)
    noise = z.to(dtype).transpose(0, 1) * (params.noise_std / math.sqrt(dt_ms))
    eager = simulate(params, state, None, dt_ms, num_steps=steps, noise=noise)
    assert eager.num_spikes > 0
    _assert_same_run(eager, fast)


def test_drawn_noise_is_deterministic_per_seed(monkeypatch):
    from neuro.reservoir import simulation_compiled

    params, state = make_reservoir(300, 0, batch_size=2, in_degree=30, seed=0)
    run = lambda seed: simulate(params, state, None, 0.5, num_steps=200, seed=seed, engine="compiled")
    first, again, other = run(3), run(3), run(4)
    assert first.num_spikes > 0
    _assert_same_run(first, again)
    monkeypatch.setattr(simulation_compiled, "CALL_NEURON_STEPS", 7 * 600)  # 7 steps per call
    _assert_same_run(first, run(3))  # one noise stream, whatever the calls
    assert not torch.equal(first.state.neurons.v_mv, other.state.neurons.v_mv)
    by_generator = [simulate(params, state, None, 0.5, num_steps=200, engine="compiled",
                             seed=torch.Generator().manual_seed(9)) for _ in range(2)]
    _assert_same_run(*by_generator)
    np_generator = simulate(params, state, None, 0.5, num_steps=200, engine="compiled",
                            seed=np.random.default_rng(1))
    assert np_generator.state.step == 200
    with pytest.raises(ValueError, match="noise_std > 0 needs seed="):
        simulate(params, state, None, 0.5, num_steps=5, engine="compiled")


def test_drawn_noise_gives_the_eager_firing_rates():
    # Same networks, each engine with its own N(0, sigma^2) noise stream: the per-network mean
    # rates over 1 s must agree within 4 standard errors of the difference (the se from the
    # spread of the 16 per-network rates of each engine; 8 Hz x 1 s x 400 neurons ~ 3k
    # spikes per network, so a 10% error in the noise std would shift rates by many se).
    params, state = make_reservoir(400, 0, batch_size=16, in_degree=40, seed=0)
    steps = 2000
    rates = {}
    for engine in ("eager", "compiled"):
        result = simulate(params, state, None, 0.5, num_steps=steps, seed=11, engine=engine)
        counts = torch.bincount(result.spikes.batch_index, minlength=16).double()
        rates[engine] = counts / params.num_neurons / (steps * 0.5 / 1000.0)
    difference = float(rates["compiled"].mean() - rates["eager"].mean())
    standard_error = math.sqrt(sum(float(r.var()) / r.numel() for r in rates.values()))
    assert 2.0 < float(rates["eager"].mean()) < 30.0
    assert abs(difference) < 4 * standard_error + 1e-9, (rates, difference, standard_error)
    assert abs(difference) / float(rates["eager"].mean()) < 0.05


def test_divergence_names_the_same_step_network_and_neuron():
    params, state = make_reservoir(100, 0, batch_size=3, in_degree=10, seed=0, dtype=torch.float64)
    noise = _noise(3, 40, 100, torch.float64)
    noise[1, 23, 57] = 1e200  # finite; v^2 overflows within step 23 (non-finite noise is refused up front)
    errors = []
    for engine in ("eager", "compiled"):
        with pytest.raises(SimulationDiverged) as caught:
            simulate(params, state, None, 0.5, num_steps=40, noise=noise, engine=engine, block_steps=16)
        errors.append(caught.value)
    eager, fast = errors
    assert (fast.step, fast.batch_index, fast.neuron) == (eager.step, eager.batch_index, eager.neuron) == (23, 1, 57)
    assert not math.isfinite(fast.value) and not math.isfinite(eager.value)


def test_unsupported_options_are_refused():
    params, state = make_reservoir(30, 0, in_degree=5, seed=0)
    with pytest.raises(ValueError, match="engine='fast'; allowed: 'eager', 'compiled'"):
        simulate(params, state, None, 0.5, num_steps=3, seed=0, engine="fast")
    refractory, refractory_state = make_reservoir(30, 0, in_degree=5, seed=0, refractory_ms=1.0)
    with pytest.raises(ValueError, match="refractory_ms=1.0"):
        simulate(refractory, refractory_state, None, 0.5, num_steps=3, seed=0, engine="compiled")
