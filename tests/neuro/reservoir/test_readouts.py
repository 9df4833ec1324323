"""Three-factor and FORCE readouts: hand-computed steps, least-squares oracle, errors."""
import math

import pytest
import torch

from kernels.three_factor import three_factor_step
from neuro.reservoir.force import FORCEReadout
from neuro.reservoir.three_factor import ThreeFactorReadout

# float64 throughout: the oracles are exact algebra, so agreement is to rounding
# (~1e-15 relative per op; a few hundred ops stay well under 1e-10).
TOL = 1e-10


def _random(shape, generator):
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def test_three_factor_step_matches_hand_computation_element_by_element():
    g = torch.Generator().manual_seed(0)
    batch, readouts, features = 2, 3, 4
    readout = ThreeFactorReadout(readouts, features, learning_rate=(0.1, 0.2, 0.05),
                                 eligibility_tau_ms=10.0, dt_ms=0.5, online=(True, False, True))
    state = readout.initial_state(batch, weights=_random((batch, readouts, features), g),
                                  dtype=torch.float64)
    state = state._replace(eligibility=_random((batch, features), g).abs(),
                           pending=_random((batch, readouts, features), g))
    x = _random((batch, features), g).abs()
    y = _random((batch, readouts), g)
    gate = torch.rand((batch, readouts), generator=g, dtype=torch.float64)
    new, z = readout.step(state, x, y, gate)

    a = math.exp(-0.5 / 10.0)
    rates = (0.1, 0.2, 0.05)
    for b in range(batch):
        e_new = [a * state.eligibility[b, j].item() + (1 - a) * x[b, j].item()
                 for j in range(features)]
        for m in range(readouts):
            z_hand = sum(state.weights[b, m, j].item() * x[b, j].item() for j in range(features))
            assert abs(z[b, m].item() - z_hand) < TOL
            err = y[b, m].item() - z_hand
            for j in range(features):
                change = rates[m] * gate[b, m].item() * err * e_new[j]
                w_old, p_old = state.weights[b, m, j].item(), state.pending[b, m, j].item()
                if m == 1:  # offline row: W frozen, change accumulated
                    assert new.weights[b, m, j].item() == w_old
                    assert abs(new.pending[b, m, j].item() - (p_old + change)) < TOL
                else:
                    assert abs(new.weights[b, m, j].item() - (w_old + change)) < TOL
                    assert new.pending[b, m, j].item() == p_old
            assert all(abs(new.eligibility[b, j].item() - e_new[j]) < TOL for j in range(features))


def test_zero_decay_is_the_gated_delta_rule_over_many_steps():
    g = torch.Generator().manual_seed(1)
    batch, readouts, features, steps = 3, 2, 5, 40
    readout = ThreeFactorReadout(readouts, features, learning_rate=0.3, eligibility_tau_ms=0.0)
    state = readout.initial_state(batch, dtype=torch.float64)
    memory = torch.zeros(batch, readouts, features, dtype=torch.float64)
    for _ in range(steps):
        k = _random((batch, features), g)
        k = k / k.norm(dim=-1, keepdim=True)
        v = _random((batch, readouts), g)
        gate = torch.rand((batch, readouts), generator=g, dtype=torch.float64)
        state, _ = readout.step(state, k, v, gate)
        beta = 0.3 * gate
        memory = memory + beta.unsqueeze(-1) * (v - torch.einsum("bmd,bd->bm", memory, k)).unsqueeze(-1) * k.unsqueeze(1)
    assert torch.allclose(state.weights, memory, atol=TOL, rtol=0)


def test_offline_rows_accumulate_then_consolidate_and_gate_zero_freezes():
    g = torch.Generator().manual_seed(2)
    readout = ThreeFactorReadout(2, 3, learning_rate=0.5, online=False, eligibility_tau_ms=5.0)
    state = readout.initial_state(1, weights=_random((1, 2, 3), g), dtype=torch.float64)
    start = state.weights.clone()
    total = torch.zeros_like(start)
    for _ in range(10):
        x = _random((1, 3), g)
        y = _random((1, 2), g)
        before = state
        state, z = readout.step(state, x, y, torch.ones(2, dtype=torch.float64))
        total += state.pending - before.pending
        assert torch.equal(z, torch.einsum("bmd,bd->bm", start, x))  # W frozen all trial
    assert torch.equal(state.weights, start)
    consolidated = readout.consolidate(state)
    assert torch.allclose(consolidated.weights, start + total, atol=TOL, rtol=0)
    assert torch.count_nonzero(consolidated.pending) == 0
    frozen, _ = readout.step(consolidated, _random((1, 3), g), _random((1, 2), g),
                             torch.zeros(2, dtype=torch.float64))
    assert torch.equal(frozen.weights, consolidated.weights)
    assert torch.count_nonzero(frozen.pending) == 0


def test_kernel_does_not_modify_its_inputs():
    g = torch.Generator().manual_seed(3)
    args = [_random(s, g) for s in [(2, 3, 4), (2, 3, 4), (2, 4), (2, 4), (2, 3), (2, 3)]]
    copies = [a.clone() for a in args]
    three_factor_step(*args, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64), 0.9,
                      torch.tensor([True, False, True]))
    assert all(torch.equal(a, c) for a, c in zip(args, copies))


def _ridge(xs, ys, alpha, w0):
    """Closed form W = (alpha W0 + sum y x^T)(alpha I + sum x x^T)^{-1}."""
    d = xs.shape[-1]
    gram = alpha * torch.eye(d, dtype=xs.dtype) + xs.T @ xs
    return torch.linalg.solve(gram, (alpha * w0 + ys.T @ xs).T).T


@pytest.mark.parametrize("update_every", [1, 3])
def test_force_equals_ridge_regression_on_seen_samples(update_every):
    g = torch.Generator().manual_seed(4)
    batch, readouts, features, steps, alpha = 2, 3, 6, 50, 0.7
    readout = FORCEReadout(readouts, features, alpha=alpha, update_every=update_every)
    w0 = _random((batch, readouts, features), g)
    state = readout.initial_state(batch, weights=w0, dtype=torch.float64)
    xs = _random((steps, batch, features), g)
    ys = _random((steps, batch, readouts), g)
    for t in range(steps):
        state, _z = readout.step(state, xs[t], ys[t])
    seen = torch.arange(0, steps, update_every)
    for b in range(batch):
        expected = _ridge(xs[seen, b], ys[seen, b], alpha, w0[b])
        assert torch.allclose(state.weights[b], expected, atol=1e-9, rtol=0)
        p_expected = torch.linalg.inv(alpha * torch.eye(features, dtype=torch.float64)
                                      + xs[seen, b].T @ xs[seen, b])
        assert torch.allclose(state.inverse_correlation[b], p_expected, atol=1e-9, rtol=0)
    assert state.step == steps


def test_force_inplace_step_equals_the_pure_step():
    g = torch.Generator().manual_seed(7)
    readout = FORCEReadout(3, 5, alpha=0.5, update_every=2)
    pure = readout.initial_state(2, dtype=torch.float64)
    inplace = readout.initial_state(2, dtype=torch.float64)
    for _ in range(11):
        x, y = _random((2, 5), g), _random((2, 3), g)
        pure, z_pure = readout.step(pure, x, y)
        inplace, z_inplace = readout.step(inplace, x, y, inplace=True)
        assert torch.allclose(z_pure, z_inplace, atol=TOL, rtol=0)
    assert torch.allclose(pure.weights, inplace.weights, atol=TOL, rtol=0)
    assert torch.allclose(pure.inverse_correlation, inplace.inverse_correlation, atol=TOL, rtol=0)
    assert pure.step == inplace.step == 11


def test_force_reset_restarts_ridge_from_the_current_weights_for_selected_networks():
    g = torch.Generator().manual_seed(5)
    readout = FORCEReadout(2, 4, alpha=2.0, update_every=1)
    state = readout.initial_state(2, dtype=torch.float64)
    for _ in range(20):
        state, _ = readout.step(state, _random((2, 4), g), _random((2, 2), g))
    kept_p = state.inverse_correlation[1].clone()
    state = readout.reset(state, networks=torch.tensor([True, False]))
    assert torch.allclose(state.inverse_correlation[0], torch.eye(4, dtype=torch.float64) / 2.0)
    assert torch.equal(state.inverse_correlation[1], kept_p)
    w_at_reset = state.weights[0].clone()
    xs, ys = _random((15, 2, 4), g), _random((15, 2, 2), g)
    for t in range(15):
        state, _ = readout.step(state, xs[t], ys[t])
    expected = _ridge(xs[:, 0], ys[:, 0], 2.0, w_at_reset)
    assert torch.allclose(state.weights[0], expected, atol=1e-9, rtol=0)
    full = readout.reset(state)
    assert torch.allclose(full.inverse_correlation, torch.eye(4, dtype=torch.float64).expand(2, 4, 4) / 2.0)


def test_force_without_reset_anneals_its_learning_rate():
    # P only shrinks: the same new sample moves the weights less after more data
    g = torch.Generator().manual_seed(6)
    readout = FORCEReadout(1, 5, alpha=1.0, update_every=1)
    fresh = readout.initial_state(1, dtype=torch.float64)
    trained = fresh
    for _ in range(200):
        trained, _ = readout.step(trained, _random((1, 5), g), _random((1, 1), g))
    x, y = _random((1, 5), g), torch.full((1, 1), 10.0, dtype=torch.float64)
    moved_fresh = (readout.step(fresh, x, y)[0].weights - fresh.weights).norm()
    moved_trained = (readout.step(trained, x, y)[0].weights - trained.weights).norm()
    assert moved_trained < 0.2 * moved_fresh


@pytest.mark.parametrize("kwargs, match", [
    ({"num_readouts": 0, "num_features": 3}, "num_readouts"),
    ({"num_readouts": 2, "num_features": -1}, "num_features"),
    ({"num_readouts": 2, "num_features": 3, "learning_rate": -0.1}, "learning_rate"),
    ({"num_readouts": 2, "num_features": 3, "learning_rate": (0.1,)}, "learning_rate"),
    ({"num_readouts": 2, "num_features": 3, "online": (True, False, True)}, "online"),
    ({"num_readouts": 2, "num_features": 3, "eligibility_tau_ms": -1.0}, "eligibility_tau_ms"),
    ({"num_readouts": 2, "num_features": 3, "dt_ms": 1.5}, "dt_ms"),
    ({"num_readouts": 2, "num_features": 3, "dt_ms": 0.0}, "dt_ms"),
])
def test_three_factor_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ThreeFactorReadout(**kwargs)


def test_three_factor_type_errors_and_shape_errors():
    with pytest.raises(TypeError, match="learning_rate"):
        ThreeFactorReadout(2, 3, learning_rate="fast")
    with pytest.raises(TypeError, match="online"):
        ThreeFactorReadout(2, 3, online=(1, 0))
    readout = ThreeFactorReadout(2, 3)
    with pytest.raises(ValueError, match="batch_size"):
        readout.initial_state(0)
    with pytest.raises(ValueError, match="weights"):
        readout.initial_state(1, weights=torch.zeros(1, 3, 2))
    state = readout.initial_state(2)
    with pytest.raises(ValueError, match="features"):
        readout.step(state, torch.zeros(2, 4), torch.zeros(2, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match="target"):
        readout.step(state, torch.zeros(2, 3), torch.zeros(3, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match="gate"):
        readout.step(state, torch.zeros(2, 3), torch.zeros(2, 2), torch.ones(2, 5))
    with pytest.raises(ValueError, match="scale"):
        readout.consolidate(state, scale=-1.0)


def test_force_rejects_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        FORCEReadout(1, 3, alpha=0.0)
    with pytest.raises(TypeError, match="alpha"):
        FORCEReadout(1, 3, alpha="big")
    with pytest.raises(ValueError, match="update_every"):
        FORCEReadout(1, 3, update_every=0)
    with pytest.raises(ValueError, match="num_features"):
        FORCEReadout(1, -3)
    readout = FORCEReadout(2, 3)
    state = readout.initial_state(2)
    with pytest.raises(ValueError, match="features"):
        readout.step(state, torch.zeros(1, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="target"):
        readout.step(state, torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="networks"):
        readout.reset(state, networks=torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="weights"):
        readout.initial_state(2, weights=torch.zeros(2, 2, 4))


def test_replay_equals_online_learning_of_the_offline_rows_only():
    g = torch.Generator().manual_seed(8)
    batch, readouts, features, steps = 2, 3, 4, 25
    online = (True, False, False)
    rates = (0.05, 0.1, 0.2)
    replaying = ThreeFactorReadout(readouts, features, learning_rate=rates, eligibility_tau_ms=3.0,
                                   dt_ms=1.0, online=online, consolidation="replay")
    # oracle: the same rule with the what rows online and the when row frozen
    oracle = ThreeFactorReadout(readouts, features, learning_rate=(0.0, 0.1, 0.2),
                                eligibility_tau_ms=3.0, dt_ms=1.0, online=True)
    start = replaying.initial_state(batch, weights=_random((batch, readouts, features), g),
                                    dtype=torch.float64)
    start = start._replace(eligibility=_random((batch, features), g).abs())
    xs = _random((batch, steps, features), g)
    ys, gates = _random((steps, readouts), g), torch.rand((steps, readouts), generator=g, dtype=torch.float64)
    state = start
    for t in range(steps):
        state, z = replaying.step(state, xs[:, t], ys[t], gates[t])
        assert torch.allclose(z[:, 1:], torch.einsum("bmd,bd->bm", start.weights[:, 1:], xs[:, t]))
    replayed = replaying.replay(state, start.eligibility, xs, ys, gates)
    reference = start
    for t in range(steps):
        reference, _ = oracle.step(reference, xs[:, t], ys[t], gates[t])
    assert torch.allclose(replayed.weights[:, 1:], reference.weights[:, 1:], atol=TOL, rtol=0)
    assert torch.equal(replayed.weights[:, 0], state.weights[:, 0])  # when row: only its live updates
    assert torch.equal(replayed.eligibility, state.eligibility)
    # the online pass deferred the offline rows' changes; the replay supersedes them
    assert state.pending.abs().max() > 0 and not replayed.pending.any()
    with pytest.raises(ValueError, match="consolidation"):
        ThreeFactorReadout(2, 3, consolidation="sleep")
    with pytest.raises(ValueError, match="initial_eligibility"):
        replaying.replay(state, start.eligibility[:1], xs, ys, gates)
    with pytest.raises(ValueError, match="target"):
        replaying.replay(state, start.eligibility, xs, ys[:3], gates)


def test_numpy_scalars_and_arrays_are_accepted_as_hyperparameters_and_stored_as_python_numbers():
    # values from np.linspace / a float32 config array / np.arange: the checks refused them
    # with messages that were false ("alpha must be a real number, got np.float32(2.0)")
    np = pytest.importorskip("numpy")
    force = FORCEReadout(np.int64(2), np.int64(5), alpha=np.float32(0.5), update_every=np.int64(3))
    assert force == FORCEReadout(2, 5, alpha=0.5, update_every=3)
    assert type(force.alpha) is float and type(force.update_every) is int
    state = force.initial_state(np.int64(3))
    assert state.weights.shape == (3, 2, 5)
    three = ThreeFactorReadout(np.int64(2), 5, learning_rate=np.array([1e-3, 2e-3], dtype=np.float32),
                               online=np.array([True, False]))
    assert three.learning_rate == (float(np.float32(1e-3)), float(np.float32(2e-3)))
    assert three.online == (True, False) and type(three.online[1]) is bool
    hash(three)  # a frozen dataclass: an ndarray field made it unhashable
    assert ThreeFactorReadout(2, 5, learning_rate=np.float32(0.5), online=np.bool_(False)) == ThreeFactorReadout(
        2, 5, learning_rate=0.5, online=False)
    assert three.initial_state(np.int64(4)).weights.shape == (4, 2, 5)
    with pytest.raises(ValueError, match="update_every must be a positive int, got np.float64"):
        FORCEReadout(2, 5, update_every=np.float64(2.0))
    with pytest.raises(TypeError, match="online entries must be bool"):
        ThreeFactorReadout(2, 5, online=np.array([1, 0]))


def test_three_factor_learning_rate_is_per_step_not_per_ms():
    """The documented rule dW = eta g e E is a change per step (the module docstring): with
    tau_e = 0 (E = x) and one step from W = 0 the change is eta g y x whatever dt_ms is, so
    1 ms at dt 0.25 learns ~twice 1 ms at dt 0.5. Oracle: the formula; float64, exact
    products, so 1e-15."""
    x = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    y = torch.tensor([[1.0]], dtype=torch.float64)
    g = torch.tensor([[0.5]], dtype=torch.float64)
    for dt in (0.5, 0.25):
        readout = ThreeFactorReadout(1, 2, learning_rate=1e-3, eligibility_tau_ms=0.0, dt_ms=dt)
        state, _ = readout.step(readout.initial_state(1, dtype=torch.float64), x, y, g)
        torch.testing.assert_close(state.weights[0, 0], 1e-3 * 0.5 * 1.0 * x[0], rtol=0, atol=1e-15)
