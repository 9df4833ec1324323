"""Izhikevich 2003 population and the functional neuron step."""
import math

import numpy as np
import pytest
import torch

from neuro.reservoir.izhikevich import (
    IzhikevichParams,
    IzhikevichState,
    heterogeneous_izhikevich,
    izhikevich_step,
    resting_state,
)


def test_heterogeneous_parameters_follow_izhikevich_2003():
    params, is_exc = heterogeneous_izhikevich(1000, seed=3, dtype=torch.float64)
    assert params.a.shape == (1, 1000) and is_exc.dtype == torch.bool
    assert int(is_exc.sum()) == 800 and bool(is_exc[:800].all())  # his ordering: E first
    a, b, c, d = (x[0] for x in params[:4])
    e, i = is_exc, ~is_exc
    assert torch.all(a[e] == 0.02) and torch.all(b[e] == 0.2)
    # c = -65 + 15 r^2 and d = 8 - 6 r^2 share one r per neuron: (c + 65) / 15 == (8 - d) / 6
    torch.testing.assert_close((c[e] + 65) / 15, (8 - d[e]) / 6, rtol=0, atol=1e-12)
    assert c[e].min() >= -65 and c[e].max() <= -50 and d[e].min() >= 2 and d[e].max() <= 8
    # inhibitory: a = 0.02 + 0.08 r, b = 0.25 - 0.05 r with the same r
    torch.testing.assert_close((a[i] - 0.02) / 0.08, (0.25 - b[i]) / 0.05, rtol=0, atol=1e-12)
    assert torch.all(c[i] == -65) and torch.all(d[i] == 2)
    # r ~ U(0, 1): its mean over 800 neurons is 0.5 +- 4 sd (sd = sqrt(1/12/800))
    r_exc = ((c[e] + 65) / 15).sqrt()
    assert abs(float(r_exc.mean()) - 0.5) < 4 * math.sqrt(1 / 12 / 800)


def test_population_is_seeded_and_fraction_configurable():
    p1, e1 = heterogeneous_izhikevich(50, excitatory_fraction=0.5, seed=7)
    p2, _ = heterogeneous_izhikevich(50, excitatory_fraction=0.5, seed=7)
    p3, _ = heterogeneous_izhikevich(50, excitatory_fraction=0.5, seed=np.random.default_rng(1))
    assert int(e1.sum()) == 25
    assert torch.equal(p1.c, p2.c) and not torch.equal(p1.c, p3.c)


def _reference_step(a, b, c, d, current, dt, v, u):
    """Izhikevich's MATLAB step in plain Python floats (his expression order), one neuron.
    Returns (v, u, spiked, v_before_reset)."""
    h = dt / 2
    for _ in range(2):
        v = v + h * (0.04 * v * v + 5 * v + 140 - u + current)
    u = u + dt * a * (b * v - u)
    if v >= 30:
        return c, u + d, True, v
    return v, u, False, v


@pytest.mark.parametrize("kind", ["regular", "chattering", "fast"])
def test_single_neuron_matches_reference_step(kind):
    # Classic firing patterns of Izhikevich 2003, Fig. 2: (a, b, c, d), I = 10, dt = 0.5 ms.
    # Each step is compared with his formula applied to the same (v, u): same equations,
    # different rounding order, so float64 agreement to ~1e-12 relative; the spike decision
    # must agree except within 1e-9 mV of the threshold.
    a, b, c, d = {"regular": (0.02, 0.2, -65, 8), "chattering": (0.02, 0.2, -50, 2),
                  "fast": (0.1, 0.2, -65, 2)}[kind]
    params = IzhikevichParams(*(torch.tensor([[x]], dtype=torch.float64) for x in (a, b, c, d)))
    state = resting_state(params)
    current = torch.full((1, 1), 10.0, dtype=torch.float64)
    num_spikes = 0
    for _ in range(2000):
        v0, u0 = float(state.v_mv[0, 0]), float(state.u[0, 0])
        v_ref, u_ref, spiked_ref, v_peak = _reference_step(a, b, c, d, 10.0, 0.5, v0, u0)
        state, s = izhikevich_step(state, params, current, 0.5)
        if abs(v_peak - 30.0) > 1e-9:
            assert bool(s[0, 0]) == spiked_ref
            assert float(state.v_mv[0, 0]) == pytest.approx(v_ref, rel=1e-12, abs=1e-12)
        assert float(state.u[0, 0]) == pytest.approx(u_ref, rel=1e-12, abs=1e-12)
        num_spikes += int(s[0, 0])
    # tonic firing at I = 10: regular spiking ~ 10-15 Hz, chattering and fast spiking faster
    assert num_spikes >= 10


def test_batch_rows_are_independent_and_step_is_pure():
    params, _ = heterogeneous_izhikevich(20, seed=1, dtype=torch.float64)
    state = resting_state(params, batch_size=3)
    current = torch.stack([torch.full((20,), x, dtype=torch.float64) for x in (0.0, 5.0, 15.0)])
    v_before = state.v_mv.clone()
    batch = state
    singles = [resting_state(params) for _ in range(3)]
    for _ in range(400):
        batch, s_batch = izhikevich_step(batch, params, current, 1.0)
        for k in range(3):
            singles[k], s_k = izhikevich_step(singles[k], params, current[k : k + 1], 1.0)
            assert torch.equal(s_batch[k : k + 1], s_k)
    for k in range(3):
        assert torch.equal(batch.v_mv[k : k + 1], singles[k].v_mv)
    assert torch.equal(state.v_mv, v_before)


def test_refractory_clamp_holds_v_at_reset():
    params, _ = heterogeneous_izhikevich(10, seed=0, dtype=torch.float64, refractory_ms=5.0)
    state = resting_state(params)
    current = torch.full((1, 10), 60.0, dtype=torch.float64)
    last_spike = torch.full((10,), -1000)
    for t in range(1000):
        state, s = izhikevich_step(state, params, current, 0.5)
        since = (t - last_spike) * 0.5
        clamped = (since <= 5.0) & (since > 0)
        assert torch.all(state.v_mv[0, clamped] == params.c[0, clamped])
        assert not bool(s[0, clamped].any())
        last_spike = torch.where(s[0], torch.tensor(t), last_spike)
    # with strong drive the clamp sets the inter-spike interval to just above 5 ms
    assert int((last_spike >= 0).sum()) == 10


def _held_steps(step):
    """Steps after a spike during which a hard-driven neuron sits at v = c, from ``step``
    (state) -> (state, spikes, v)."""
    held = 0
    while True:
        spikes, v = step()
        if bool(spikes.any()) or float(v) != -65.0:
            return held
        held += 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("refractory_ms,dt_ms", [(1.0, 0.1), (1.0, 0.2), (0.7, 0.1), (0.3, 0.1), (2.0, 0.5),
                                                 (0.25, 0.1), (0.2, 0.5)])
def test_refractory_clamp_lasts_whole_steps_despite_countdown_rounding(dtype, refractory_ms, dt_ms):
    """Oracle: exact rational arithmetic, ceil(refractory / dt) clamped steps. Before the
    fix the float countdown (1.0 - 10 x 0.1 = 1.4e-16 > 0) held (1.0, 0.1) for 11 steps in
    float64 and (1.0, 0.2) for 6 steps in both dtypes."""
    from fractions import Fraction

    from neuro.reservoir.build import make_reservoir
    from neuro.reservoir.step import reservoir_step

    expected = math.ceil(Fraction(str(refractory_ms)) / Fraction(str(dt_ms)))
    # single neuron through izhikevich_step: v above the peak, so the first step spikes
    params = IzhikevichParams(*(torch.tensor([[x]], dtype=dtype) for x in (0.02, 0.2, -65.0, 8.0)),
                              refractory_ms=refractory_ms)
    state = IzhikevichState(torch.tensor([[35.0]], dtype=dtype), torch.tensor([[-13.0]], dtype=dtype),
                            torch.zeros(1, 1, dtype=dtype))
    drive = torch.tensor([[200.0]], dtype=dtype)  # leaves v = c within one step once released
    box = [izhikevich_step(state, params, drive, dt_ms)[0]]

    def neuron_step():
        box[0], spikes = izhikevich_step(box[0], params, drive, dt_ms)
        return spikes, box[0].v_mv

    assert _held_steps(neuron_step) == expected
    # the reservoir step (Stepper's refractory path), one unconnected neuron with c = -65
    res_params, res_state = make_reservoir(1, 1, in_degree=0, noise_std=0.0, refractory_ms=refractory_ms,
                                           excitatory_fraction=0.0, dtype=dtype)  # inhibitory: c = -65
    res_params.input_weights.fill_(1.0)
    signal = torch.tensor([[200.0]], dtype=dtype)
    res_state = res_state._replace(neurons=res_state.neurons._replace(v_mv=torch.full_like(res_state.neurons.v_mv,
                                                                                           35.0)))
    res_box = [reservoir_step(res_state, res_params, signal, dt_ms)[0]]

    def reservoir_neuron_step():
        res_box[0], spikes = reservoir_step(res_box[0], res_params, signal, dt_ms)
        return spikes, res_box[0].neurons.v_mv

    assert _held_steps(reservoir_neuron_step) == expected


@pytest.mark.parametrize("dt", [0.0, -0.1, 1.5, float("nan"), float("inf")])
def test_bad_dt_raises(dt):
    params, _ = heterogeneous_izhikevich(4)
    with pytest.raises(ValueError, match="dt_ms"):
        izhikevich_step(resting_state(params), params, torch.zeros(1, 4), dt)


def test_bad_inputs_raise_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="num_neurons"):
        heterogeneous_izhikevich(-3)
    with pytest.raises(TypeError, match="num_neurons"):
        heterogeneous_izhikevich(2.5)
    with pytest.raises(ValueError, match="excitatory_fraction"):
        heterogeneous_izhikevich(10, excitatory_fraction=1.2)
    with pytest.raises(TypeError, match="seed"):
        heterogeneous_izhikevich(10, seed="x")
    params, _ = heterogeneous_izhikevich(4)
    with pytest.raises(ValueError, match="current"):
        izhikevich_step(resting_state(params), params, torch.zeros(1, 5), 0.5)
    bad_state = IzhikevichState(torch.zeros(1, 4), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="state"):
        izhikevich_step(bad_state, params, torch.zeros(1, 4), 0.5)
