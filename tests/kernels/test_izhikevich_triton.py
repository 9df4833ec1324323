"""Triton Izhikevich step vs the torch reference: same raster, same state."""
import pytest
import torch

from kernels.izhikevich import izhikevich_network_step_, naive_izhikevich_network_step_
from tests.kernels.conftest import DEVICE


def _network(batch, num_neurons, in_degree, synapse, dtype, seed):
    """Izhikevich 2003 population (80/20 E/I) with fixed in-degree, as the event table of
    ``kernels/izhikevich/naive.py``: row b*N+j lists the state slots a spike of j hits."""
    gen = torch.Generator().manual_seed(seed)
    n = num_neurons
    r = torch.rand(batch, n, generator=gen, dtype=torch.float64)
    excitatory = torch.arange(n) < int(0.8 * n)
    a = torch.where(excitatory, 0.02, 0.02 + 0.08 * r)
    b = torch.where(excitatory, 0.2, 0.25 - 0.05 * r)
    c = torch.where(excitatory, -65 + 15 * r ** 2, -65.0)
    d = torch.where(excitatory, 8 - 6 * r ** 2, 2.0)
    slots = 3 * n + 1
    offset = 0 if synapse == "delta" else 2 * n
    rows = [[[] for _ in range(n)] for _ in range(batch)]
    for bi in range(batch):
        for post in range(n):
            pre = torch.randperm(n - 1, generator=gen)[:in_degree]
            pre = pre + (pre >= post).long()  # no autapses
            for j in pre.tolist():
                weight = 0.5 * float(torch.rand(1, generator=gen)) * (1 if excitatory[j] else -2)
                rows[bi][j].append((bi * slots + offset + post, weight))
    width = max(len(r_) for rr in rows for r_ in rr) + 1
    targets = torch.empty(batch * n, width, dtype=torch.int64)
    weights = torch.zeros(batch * n, width, dtype=torch.float64)
    for bi in range(batch):
        for j in range(n):
            row = bi * n + j
            targets[row] = bi * slots + 3 * n  # padding -> sink
            for col, (slot, weight) in enumerate(sorted(rows[bi][j])):
                targets[row, col], weights[row, col] = slot, weight
            targets[row, -1], weights[row, -1] = bi * slots + n + j, d[bi, j]  # u += d
    dt = 0.5
    params = {"half_step_ms": torch.tensor(dt / 2, dtype=dtype),
              "k1": torch.tensor(0.04 * dt / 2, dtype=dtype),
              "k2": torch.tensor(1 + 5 * dt / 2, dtype=dtype),
              "u_decay": (1 - a * dt).to(dtype), "u_v_gain": (a * b * dt).to(dtype),
              "v_reset": c.to(dtype), "v_peak_mv": torch.tensor(30.0, dtype=dtype)}
    state = torch.zeros(batch, slots, dtype=dtype)
    state[:, :n] = -65.0
    state[:, n:2 * n] = (b * -65.0).to(dtype)
    to = lambda x: x.to(DEVICE) if isinstance(x, torch.Tensor) else x
    params = {k: to(v) for k, v in params.items()}
    return to(state), to(targets), to(weights.to(dtype)), params


def _run(step, state, targets, weights, params, drives, synapse_decay):
    n = drives.shape[-1]
    state = state.clone()
    spikes = torch.empty(drives.shape[1:], dtype=torch.bool, device=DEVICE)
    scratch = torch.empty(drives.shape[1:], dtype=state.dtype, device=DEVICE)
    syn = state[:, 2 * n:3 * n] if synapse_decay is not None else None
    raster = []
    for drive in drives:
        index = step(state, state[:, :n], state[:, n:2 * n], syn, drive, spikes, scratch,
                     scratch.clone(), targets, weights, synapse_decay=synapse_decay, **params)
        raster.append(spikes.clone())
        assert torch.equal(index, spikes.view(-1).nonzero().view(-1))
    return torch.stack(raster), state


@pytest.mark.parametrize("synapse", ["delta", "exponential"])
def test_same_raster_as_reference_500_neurons_200_steps(synapse):
    # float32 with injected noise; same expressions in the same order and (interpreter)
    # the same summation order of arriving spikes: rasters and states agree exactly.
    batch, n = (1, 500) if synapse == "delta" else (2, 250)
    state, targets, weights, params = _network(batch, n, 25, synapse, torch.float32, seed=0)
    gen = torch.Generator().manual_seed(1)
    drives = (140.0 + 4.0 + 6.0 * torch.randn(200, batch, n, generator=gen)).to(DEVICE)
    decay = torch.tensor(0.9, device=DEVICE) if synapse == "exponential" else None
    raster, final = _run(izhikevich_network_step_, state, targets, weights, params, drives,
                         decay)
    ref_raster, ref_final = _run(naive_izhikevich_network_step_, state, targets, weights, params,
                                 drives, decay)
    assert ref_raster.sum() > 100  # the network is active (~10-30 Hz)
    if DEVICE == "cpu":
        assert torch.equal(raster, ref_raster)
        assert torch.equal(final[:, :3 * n], ref_final[:, :3 * n])
    else:
        # GPU atomics sum simultaneous arrivals in any order (ulp-level differences that can
        # flip a spike only after chaotic amplification): the first 50 steps must agree.
        differs = (raster != ref_raster).flatten(1).any(1)
        first = int(differs.nonzero()[0]) if differs.any() else len(differs)
        assert first >= 50


def test_float_scalars_equal_tensor_scalars():
    state, targets, weights, params = _network(1, 64, 8, "delta", torch.float32, seed=3)
    drives = (150.0 + 5.0 * torch.randn(20, 1, 64, generator=torch.Generator().manual_seed(0))
              ).to(DEVICE)
    as_float = {k: (float(v) if v.dim() == 0 else v) for k, v in params.items()}
    r1, s1 = _run(izhikevich_network_step_, state, targets, weights, params, drives, None)
    r2, s2 = _run(izhikevich_network_step_, state, targets, weights, as_float, drives, None)
    if DEVICE == "cpu":
        assert torch.equal(r1, r2) and torch.equal(s1, s2)
    else:  # GPU atomics sum simultaneous arrivals in any order, run to run: early steps agree
        assert not (r1 != r2).flatten(1).any(1)[:10].any()


def test_spike_queue_across_blocks_and_networks():
    # N = 2500 spans three 1024-neuron blocks per network and B = 2: the spike queue is
    # filled by six programs, each reserving its slots atomically; the delivered sums (and
    # so the raster) must still equal the reference's.
    state, targets, weights, params = _network(2, 2500, 10, "delta", torch.float32, seed=4)
    gen = torch.Generator().manual_seed(5)
    drives = (140.0 + 4.0 + 6.0 * torch.randn(40, 2, 2500, generator=gen)).to(DEVICE)
    raster, final = _run(izhikevich_network_step_, state, targets, weights, params, drives, None)
    ref_raster, ref_final = _run(naive_izhikevich_network_step_, state, targets, weights, params,
                                 drives, None)
    assert ref_raster[:, :, 1024:].sum() > 50  # spikes beyond the first block
    if DEVICE == "cpu":
        assert torch.equal(raster, ref_raster)
        assert torch.equal(final[:, :2 * 2500], ref_final[:, :2 * 2500])
    else:  # GPU atomics: arrival order differs at the ulp level; early steps agree
        differs = (raster != ref_raster).flatten(1).any(1)
        assert not differs[:10].any()


@pytest.mark.parametrize("shared", ["u_decay", "u_v_gain", "v_reset"])
def test_a_parameter_shared_across_networks_beside_per_network_ones(shared):
    # One parameter [1, N] (shared by the B networks), the others [B, N]: each has its own
    # batch stride (a sweep of b alone once read a*b*dt with a's stride 0: network 0's for all).
    state, targets, weights, params = _network(3, 200, 10, "delta", torch.float32, seed=6)
    params[shared] = params[shared][:1].contiguous()
    gen = torch.Generator().manual_seed(7)
    drives = (140.0 + 4.0 + 6.0 * torch.randn(60, 3, 200, generator=gen)).to(DEVICE)
    raster, final = _run(izhikevich_network_step_, state, targets, weights, params, drives, None)
    ref_raster, ref_final = _run(naive_izhikevich_network_step_, state, targets, weights, params,
                                 drives, None)
    assert ref_raster.sum() > 50
    if DEVICE == "cpu":
        assert torch.equal(raster, ref_raster)
        assert torch.equal(final[:, :2 * 200], ref_final[:, :2 * 200])
    else:  # GPU atomics: arrival order differs at the ulp level; early steps agree
        assert not (raster != ref_raster).flatten(1).any(1)[:10].any()


class _CountingGraph:
    """Stands in for a CUDA graph on the CPU: capturing records the body without running it
    (as CUDA does); a replay runs it again, so the body must use fixed buffers only."""

    def __init__(self, body):
        self.body, self.replays = body, 0

    def replay(self):
        self.replays += 1
        self.body()


@pytest.mark.parametrize("synapse,record_trace,graphs,steps,replays", [
    ("delta", False, False, 75, []), ("exponential", True, False, 75, []),
    # blocks of 16: the first runs eagerly, the next three replay, the last 11 steps eagerly
    ("delta", False, True, 75, [3]), ("exponential", True, True, 75, [3]),
    ("delta", True, True, 47, []),  # two full blocks: too few to pay for a capture
    ("exponential", True, True, 75, None),  # the capture fails: a warning, then eager blocks
])
def test_simulate_on_the_triton_path_takes_spikes_once_per_block(synapse, record_trace, graphs, steps, replays,
                                                                 monkeypatch):
    # The reservoir's simulate on the Triton step records spike flags per step and takes
    # their indices once per block (no per-step host sync); with graphs, full blocks after
    # the first are one captured graph's replays. Either way it must give the reference's
    # run: same raster, traces, state and spike count (interpreter: bit for bit).
    from neuro.reservoir import simulation
    from neuro.reservoir.network import make_reservoir, simulate
    from neuro.reservoir.step import Stepper

    params, state = make_reservoir(120, 2, in_degree=15, batch_size=2, synapse=synapse,
                                   weight_scale=4.0, seed=3, dtype=torch.float32,
                                   device=DEVICE)
    gen = torch.Generator().manual_seed(2)
    inputs = torch.rand(2, steps, 2, generator=gen).to(DEVICE)
    noise = (8 * torch.randn(2, steps, 120, generator=gen)).to(DEVICE)
    run = lambda: simulate(params, state, inputs, 0.5, noise=noise, record="dense",
                           record_trace=record_trace, block_steps=16)

    def per_step_sync(self, drive):
        raise AssertionError("the Triton path of simulate called Stepper.step (a host sync per step)")

    flag_steps = []
    step_flags = Stepper.step_flags

    def counted_step_flags(self, drive, spikes):
        assert self.kernel == "triton"  # no bound torch step shadows the Triton one
        flag_steps.append(1)
        return step_flags(self, drive, spikes)

    captured = []

    def capture(body, device):
        if replays is None:
            raise RuntimeError("operation not permitted when stream is capturing")
        captured.append(_CountingGraph(body))
        return captured[-1]

    with monkeypatch.context() as patch:
        patch.setattr(Stepper, "step", per_step_sync)
        patch.setattr(Stepper, "step_flags", counted_step_flags)
        patch.setattr(simulation, "_use_cuda_graphs", lambda device: graphs)
        if DEVICE == "cpu" or replays is None:
            patch.setattr(simulation, "_capture_block", capture)
        if replays is None:
            with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
                fast = run()
        else:
            fast = run()
    if DEVICE == "cpu":  # a replay runs the body again: every step went through step_flags
        assert len(flag_steps) == steps
        assert [graph.replays for graph in captured] == (replays or [])
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "naive")
    reference = run()
    assert reference.num_spikes > 50
    if DEVICE == "cpu":
        assert fast.num_spikes == reference.num_spikes
        assert torch.equal(fast.spikes, reference.spikes)
        for got, want in ((fast.state.neurons.v_mv, reference.state.neurons.v_mv),
                          (fast.state.neurons.u, reference.state.neurons.u),
                          (fast.state.synaptic_current, reference.state.synaptic_current),
                          (fast.state.trace, reference.state.trace)):
            assert torch.equal(got, want)
        if record_trace:
            assert torch.equal(fast.trace, reference.trace)
    else:  # GPU atomics: arrival order differs at the ulp level; early steps agree
        assert torch.equal(fast.spikes[:, :10], reference.spikes[:, :10])


def test_column_sliced_tables_give_the_reference_raster():
    # targets / weights as views into wider tables (row stride > K+1): the kernels index
    # them as dense rows, so the Triton path must not read the neighbouring columns.
    state, targets, weights, params = _network(2, 40, 5, "delta", torch.float32, seed=0)
    wide_targets = torch.cat([targets, torch.zeros_like(targets)], dim=1)
    wide_weights = torch.cat([weights, torch.full_like(weights, 99.0)], dim=1)
    sliced_targets = wide_targets[:, :targets.shape[1]]
    sliced_weights = wide_weights[:, :weights.shape[1]]
    assert not sliced_targets.is_contiguous() and not sliced_weights.is_contiguous()
    gen = torch.Generator().manual_seed(1)
    drives = (140.0 + 5.0 * torch.randn(50, 2, 40, generator=gen)).to(DEVICE)
    raster, final = _run(izhikevich_network_step_, state, sliced_targets, sliced_weights, params,
                         drives, None)
    ref_raster, ref_final = _run(naive_izhikevich_network_step_, state, targets, weights, params,
                                 drives, None)
    # float32, same expressions and summation order under the interpreter: exact
    assert raster.any() and torch.equal(raster, ref_raster) and torch.equal(final, ref_final)


def test_the_no_sync_step_refuses_buffers_it_cannot_write_in_place():
    # step_flags and the CUDA-graph stepper write state and spikes as dense arrays: a strided
    # view (e.g. record[:, t] of a [B, T, N] raster) would have its neighbours overwritten
    from kernels.izhikevich.triton import izhikevich_step_no_sync_

    state, drive = torch.zeros(2, 13, device=DEVICE), torch.zeros(2, 4, device=DEVICE)
    strided = torch.zeros(2, 8, dtype=torch.bool, device=DEVICE)[:, ::2]
    with pytest.raises(ValueError, match=r"spikes must be contiguous .* got strides \(8, 2\)"):
        izhikevich_step_no_sync_(state, drive, strided, None, None, 0.25, 0.0, 0.0, None, None, None, 30.0)
    with pytest.raises(ValueError, match=r"state must be contiguous"):
        izhikevich_step_no_sync_(torch.zeros(2, 26, device=DEVICE)[:, ::2], drive,
                                 torch.zeros(2, 4, dtype=torch.bool, device=DEVICE),
                                 None, None, 0.25, 0.0, 0.0, None, None, None, 30.0)


def test_the_no_sync_step_refuses_parameters_it_would_read_outside_of():
    # izhikevich_step_no_sync_ (called directly by the reservoir's Stepper, without the
    # dispatcher's checks) indexes u_decay, u_v_gain and v_reset as [B or 1, N] rows: a [B, 1]
    # column was read outside its two elements (garbage, NaN voltages) instead of refused.
    from kernels.izhikevich.triton import izhikevich_step_no_sync_

    state, drive = torch.zeros(2, 13, device=DEVICE), torch.zeros(2, 4, device=DEVICE)
    spikes = torch.zeros(2, 4, dtype=torch.bool, device=DEVICE)
    table = torch.full((8, 1), 12, dtype=torch.int64, device=DEVICE)
    shared = torch.ones(1, 4, device=DEVICE)
    column = torch.ones(2, 1, device=DEVICE)
    for u_decay, u_v_gain, v_reset, name in ((column, shared, shared, "u_decay"),
                                             (shared, column, shared, "u_v_gain"),
                                             (shared, shared, column, "v_reset")):
        with pytest.raises(ValueError, match=rf"{name} must have shape \[B, N\] = \[2, 4\] .* got \[2, 1\]"):
            izhikevich_step_no_sync_(state, drive, spikes, table, torch.zeros(8, 1, device=DEVICE), 0.25,
                                     0.01, 2.25, u_decay, u_v_gain, v_reset, 30.0)
