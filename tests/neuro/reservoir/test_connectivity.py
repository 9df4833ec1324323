"""Random and user wiring, Dale's sign rule, memory check and the event table."""
import dataclasses
import math
import resource

import numpy as np
import pytest
import scipy.sparse
import torch

from neuro.reservoir.connectivity import (
    SynapseList,
    build_event_table,
    dense_weights,
    fixed_in_degree_synapses,
)
from neuro.reservoir.network import make_reservoir


def _dense(params):
    return dense_weights(params.synapses, params.num_neurons, params.batch_size)


def test_fixed_in_degree_exact_distinct_no_autapses_and_batches_differ():
    params, _ = make_reservoir(300, 1, in_degree=40, batch_size=3, seed=2, dtype=torch.float64)
    w = _dense(params)
    mask = w != 0
    assert torch.all(mask.sum(dim=2) == 40)  # every neuron receives exactly K
    assert not bool(mask.diagonal(dim1=1, dim2=2).any())
    counts = torch.bincount(params.synapses.batch_index * 300 * 300 + params.synapses.post_index * 300
                            + params.synapses.pre_index)
    assert int(counts.max()) == 1  # no repeated (pre, post) pair
    assert not torch.equal(mask[0], mask[1])
    again, _ = make_reservoir(300, 1, in_degree=40, batch_size=3, seed=2, dtype=torch.float64)
    assert torch.equal(_dense(again), w)


@pytest.mark.parametrize("num_neurons,in_degree", [(7, 2), (7, 5)])  # sparse and dense regimes
def test_fixed_in_degree_is_uniform_over_partners(num_neurons, in_degree):
    # Each of the N - 1 candidates of a neuron is picked with probability K / (N - 1).
    # 20000 rows per neuron: binomial sd of a frequency <= 0.0036; bound at 5 sd.
    generator = torch.Generator().manual_seed(0)
    _, pre, post = fixed_in_degree_synapses(num_neurons, in_degree, 20000, generator, "cpu")
    freq = torch.zeros(num_neurons, num_neurons, dtype=torch.float64)
    freq.index_put_((post, pre), torch.ones_like(pre, dtype=torch.float64), accumulate=True)
    freq /= 20000
    p = in_degree / (num_neurons - 1)
    off = ~torch.eye(num_neurons, dtype=torch.bool)
    sd = math.sqrt(p * (1 - p) / 20000)
    assert float((freq[off] - p).abs().max()) < 5 * sd
    assert float(freq.diagonal().abs().max()) == 0.0


def test_bernoulli_density_and_no_autapses():
    n, p = 400, 0.05
    params, _ = make_reservoir(n, 0, connection_prob=p, batch_size=2, seed=4)
    mask = _dense(params) != 0
    count = int(mask.sum())
    pairs = 2 * n * (n - 1)
    # binomial count: mean pairs * p, sd sqrt(pairs p (1-p)); bound at 5 sd
    assert abs(count - pairs * p) < 5 * math.sqrt(pairs * p * (1 - p))
    assert not bool(mask.diagonal(dim1=1, dim2=2).any())


def test_dale_sign_rule_and_scales():
    params, _ = make_reservoir(500, 0, in_degree=50, weight_scale=2.0, inhibitory_scale=3.0, seed=1,
                               dtype=torch.float64)
    syn = params.synapses
    from_exc = params.is_excitatory[syn.pre_index]
    assert torch.all(syn.weight[from_exc] > 0) and torch.all(syn.weight[from_exc] <= 2.0)
    assert torch.all(syn.weight[~from_exc] < 0) and torch.all(syn.weight[~from_exc] >= -6.0)
    # U(0, scale) magnitudes: mean scale / 2, sd of the mean scale / sqrt(12 n); 5 sd bound
    mags = syn.weight[from_exc]
    assert abs(float(mags.mean()) - 1.0) < 5 * 2.0 / math.sqrt(12 * mags.numel())


def test_user_matrix_dense_and_sparse_wire_the_reservoir():
    rng = np.random.default_rng(0)
    n = 60
    matrix = rng.normal(size=(n, n)) * (rng.random((n, n)) < 0.2)
    for given in (matrix, torch.as_tensor(matrix), scipy.sparse.csr_matrix(matrix), scipy.sparse.coo_array(matrix)):
        params, _ = make_reservoir(n, 1, connectivity=given, sign_rule="as_given", batch_size=2,
                                   dtype=torch.float64)
        w = _dense(params)
        assert torch.equal(w[0], torch.as_tensor(matrix)) and torch.equal(w[1], w[0])
    params, _ = make_reservoir(n, 1, connectivity=matrix, weight_scale=0.5, dtype=torch.float64)
    expected = np.abs(matrix) * 0.5 * np.where(params.is_excitatory.numpy(), 1.0, -2.0)[None, :]
    np.testing.assert_array_equal(_dense(params)[0].numpy(), expected)


def test_user_matrix_errors():
    with pytest.raises(ValueError, match="connectivity has shape"):
        make_reservoir(10, 1, connectivity=np.ones((10, 9)))
    with pytest.raises(ValueError, match="non-finite"):
        make_reservoir(3, 1, connectivity=np.array([[0, np.nan, 0], [0, 0, 0], [0, 0, 0]]))
    with pytest.raises(TypeError, match="connectivity"):
        make_reservoir(3, 1, connectivity=[[0, 1], [1, 0]])
    complex_matrix = np.zeros((3, 3), dtype=complex)
    complex_matrix[0, 1] = 1 + 2j
    for given in (complex_matrix, torch.as_tensor(complex_matrix), scipy.sparse.csr_matrix(complex_matrix)):
        with pytest.raises(TypeError, match=r"connectivity must be real, got dtype (torch\.)?complex"):
            make_reservoir(3, 1, connectivity=given)
    with pytest.raises(ValueError, match="sign_rule"):
        make_reservoir(3, 1, connectivity=np.eye(3), sign_rule="dale")


def test_memory_estimate_refuses_before_allocating():
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="memory_limit_bytes"):
        make_reservoir(10_000_000, 1, in_degree=1000)  # ~10^10 synapses
    with pytest.raises(ValueError, match="memory_limit_bytes"):
        make_reservoir(2000, 1, in_degree=100, memory_limit_bytes=10**6)
    with pytest.raises(ValueError, match="memory_limit_bytes"):
        make_reservoir(2000, 1, connection_prob=0.5, memory_limit_bytes=10**7)
    # Refused from the estimate: the process's peak memory did not grow by the ~40 GB the
    # first network would need (allow 500 MB for the small tables that were built).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib < 500 * 1024
    make_reservoir(200, 1, in_degree=10, memory_limit_bytes=10**7)  # fits


@pytest.mark.parametrize("kwargs,match", [
    ({"in_degree": 10}, "in_degree"),  # K > N - 1
    ({"in_degree": -1}, "in_degree"),
    ({"connection_prob": 1.5, "in_degree": None}, "connection_prob"),
    ({"connection_prob": -0.1}, "connection_prob"),
    ({"in_degree": None}, "in_degree"),
    ({"weight_scale": -1.0}, "weight_scale"),
    ({"synapse": "alpha"}, "synapse"),
    ({"batch_size": 0}, "batch_size"),
    ({"excitatory_fraction": 1.5}, "excitatory_fraction"),
    ({"noise_std": -1.0}, "noise_std"),
    ({"is_excitatory": torch.ones(3, dtype=torch.bool)}, "is_excitatory"),
])
def test_bad_wiring_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_reservoir(10, 1, **{"in_degree": 3, **kwargs})


def test_negative_sizes_raise():
    with pytest.raises(ValueError, match="num_neurons"):
        make_reservoir(-5, 1)
    with pytest.raises(ValueError, match="num_inputs"):
        make_reservoir(5, -1)


def test_event_table_rows_list_outgoing_synapses_and_the_reset():
    n, b = 5, 2
    syn = SynapseList(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 3, 2]), torch.tensor([1, 4, 0, 2]),
                      torch.tensor([1.0, 2.0, 3.0, 4.0]))
    d = torch.arange(10.0, 15.0).unsqueeze(0)
    table = build_event_table(syn, n, b, target_offset=0, reset_increment=d, memory_limit_bytes=10**6)
    slots = 3 * n + 1
    sink = lambda batch: batch * slots + 3 * n
    assert table.targets.shape == (b * n, 3)
    assert table.targets[0].tolist() == [1, 4, n + 0] and table.weights[0].tolist() == [1.0, 2.0, 10.0]
    assert table.targets[3].tolist() == [0, sink(0), n + 3] and table.weights[3].tolist() == [3.0, 0.0, 13.0]
    assert table.targets[n + 2].tolist() == [slots + 2, sink(1), slots + n + 2]
    assert table.weights[n + 2].tolist() == [4.0, 0.0, 12.0]
    exp = build_event_table(syn, n, b, target_offset=2 * n, reset_increment=d, memory_limit_bytes=10**6)
    assert exp.targets[0].tolist() == [2 * n + 1, 2 * n + 4, n]


def test_shared_wiring_repeats_the_pairs_with_new_weights():
    params, _ = make_reservoir(200, 0, in_degree=20, batch_size=3, shared_wiring=True, seed=2,
                               dtype=torch.float64)
    mask = _dense(params) != 0
    assert torch.equal(mask[0], mask[1]) and torch.equal(mask[0], mask[2])
    assert torch.all(mask.sum(dim=2) == 20)
    w = _dense(params)
    assert not torch.equal(w[0], w[1])  # magnitudes drawn per network
    assert torch.equal(torch.sign(w[0]), torch.sign(w[1]))  # Dale's rule fixes the signs


@pytest.mark.parametrize("num_neurons,in_degree,batch_size", [(7, 3, 40), (300, 40, 3), (500, 60, 2), (64, 31, 5)])
def test_cpu_builder_gives_the_torch_builders_synapses(num_neurons, in_degree, batch_size):
    # The CPU path sorts in numpy; it must consume the generator as the torch path does and
    # return the same synapses in the same (batch, pre, post) order, for the same seed.
    from neuro.reservoir.connectivity import _fixed_in_degree_cpu, _fixed_in_degree_torch

    for seed in range(3):
        fast = _fixed_in_degree_cpu(num_neurons, in_degree, batch_size, torch.Generator().manual_seed(seed))
        reference = _fixed_in_degree_torch(num_neurons, in_degree, batch_size,
                                           torch.Generator().manual_seed(seed), "cpu")
        for a, b in zip(fast, reference):
            assert a.dtype == b.dtype == torch.int64 and torch.equal(a, b)
        batch, pre, post = fast
        key = (batch * num_neurons + pre) * num_neurons + post
        assert bool((key[1:] > key[:-1]).all())  # strictly sorted: distinct pairs
        assert torch.all(torch.bincount(batch * num_neurons + post, minlength=batch_size * num_neurons)
                         == in_degree)
        assert not bool((pre == post).any())


def test_event_table_equals_a_row_by_row_reference():
    params, _ = make_reservoir(60, 0, in_degree=9, batch_size=3, seed=7, dtype=torch.float64)
    syn, n, b = params.synapses, 60, 3
    d = params.neurons.d
    table = build_event_table(syn, n, b, target_offset=2 * n, reset_increment=d, memory_limit_bytes=10**7)
    slots = 3 * n + 1
    rows: dict = {}
    for bi, j, i, w in zip(syn.batch_index.tolist(), syn.pre_index.tolist(), syn.post_index.tolist(),
                           syn.weight.tolist()):
        rows.setdefault(bi * n + j, []).append((bi * slots + 2 * n + i, w))
    width = max(len(r) for r in rows.values()) + 1
    assert table.targets.shape == (b * n, width)
    for r in range(b * n):
        bi, j = divmod(r, n)
        expected = rows.get(r, []) + [(bi * slots + 3 * n, 0.0)] * (width - 1 - len(rows.get(r, [])))
        expected.append((bi * slots + n + j, float(d[0, j])))
        assert list(zip(table.targets[r].tolist(), table.weights[r].tolist())) == expected


@pytest.mark.parametrize("synapse", ["delta", "exponential"])
def test_tiled_event_table_of_shared_pairs_equals_the_general_build(synapse, monkeypatch):
    from neuro.reservoir import connectivity

    params, _ = make_reservoir(150, 0, in_degree=12, batch_size=4, shared_wiring=True, synapse=synapse, seed=3)
    d = torch.rand(4, 150, generator=torch.Generator().manual_seed(0))  # one d per network
    offset = 0 if synapse == "delta" else 300
    assert connectivity._same_pairs_in_every_network(params.synapses, 4)
    tiled = build_event_table(params.synapses, 150, 4, offset, d, 10**8)
    assert tiled._targets is None and tiled.shared_targets.shape == (150, tiled.weights.shape[1])
    monkeypatch.setattr(connectivity, "_same_pairs_in_every_network", lambda *args: False)
    general = build_event_table(params.synapses, 150, 4, offset, d, 10**8)
    assert general.shared_targets is None
    assert torch.equal(tiled.targets, general.targets) and torch.equal(tiled.weights, general.weights)
    assert tiled.targets is tiled.targets  # built once, then kept
    independent, _ = make_reservoir(150, 0, in_degree=12, batch_size=4, seed=3)
    assert not connectivity._same_pairs_in_every_network(independent.synapses, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_sign_rule_weights_equal_one_draw(dtype, monkeypatch):
    # The CPU path draws U(0, 1) and multiplies in chunks; the generator fills serially, so
    # the values must be those of one draw of every magnitude, bit for bit (chunk of 7 here).
    from neuro.reservoir import connectivity
    from neuro.reservoir.connectivity import sign_rule_weights

    monkeypatch.setattr(connectivity, "WEIGHT_CHUNK", 7)
    g = torch.Generator().manual_seed(0)
    is_excitatory = torch.rand(40, generator=g) < 0.8
    pre = torch.randint(0, 40, (100,), generator=g)
    scale = torch.where(is_excitatory, 3.0, -2.0 * 3.0).double()
    drawn = sign_rule_weights(pre, is_excitatory, 3.0, 2.0, torch.Generator().manual_seed(5), dtype)
    once = torch.rand(100, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.equal(drawn, (once * scale[pre]).to(dtype))
    given = torch.randn(100, generator=g, dtype=torch.float64)
    assert torch.equal(sign_rule_weights(pre, is_excitatory, 3.0, 2.0, None, dtype, magnitude=given),
                       (given.abs() * scale[pre]).to(dtype))


def test_a_synapse_list_in_any_order_wires_the_same_network():
    # SynapseList is documented in (batch, pre, post) order; one given in another order is
    # sorted, so the event table (and every simulation) equals the sorted list's
    from neuro.reservoir import simulate

    params, state = make_reservoir(60, 1, batch_size=2, in_degree=6, seed=3)
    syn = params.synapses
    shuffle = torch.randperm(syn.weight.numel(), generator=torch.Generator().manual_seed(0))
    shuffled = dataclasses.replace(params, synapses=SynapseList(*(x[shuffle] for x in syn)))
    assert torch.equal(dense_weights(shuffled.synapses, 60, 2), dense_weights(syn, 60, 2))
    assert torch.equal(shuffled.event_table.targets, params.event_table.targets)
    assert torch.equal(shuffled.event_table.weights, params.event_table.weights)
    noise = 6 * torch.randn(2, 50, 60, generator=torch.Generator().manual_seed(1))
    a = simulate(params, state, None, num_steps=50, noise=noise, record="dense")
    b = simulate(shuffled, state, None, num_steps=50, noise=noise, record="dense")
    assert torch.equal(a.spikes, b.spikes) and a.num_spikes > 0


@pytest.mark.parametrize("field, value, error, message", [
    ("pre_index", [7], ValueError, r"synapses.pre_index holds values in \[7, 7\]; allowed \[0, 3\)"),
    ("post_index", [9], ValueError, r"synapses.post_index holds values in \[9, 9\]; allowed \[0, 3\)"),
    ("batch_index", [1], ValueError, r"synapses.batch_index holds values in \[1, 1\]; allowed \[0, 1\) \(batch_size=1, num_neurons=3\)"),
    ("batch_index", [0.0], TypeError, r"synapses.batch_index must be an integer tensor, got torch.float32"),
    ("post_index", [0, 1], ValueError, r"synapses' fields must have one length; post_index has 2"),
])
def test_bad_synapse_lists_are_named(field, value, error, message):
    base, _ = make_reservoir(3, 0, in_degree=0, seed=0)
    fields = {"batch_index": torch.tensor([0]), "pre_index": torch.tensor([0]),
              "post_index": torch.tensor([1]), "weight": torch.tensor([1.0])}
    fields[field] = torch.tensor(value)
    with pytest.raises(error, match=message):
        dataclasses.replace(base, synapses=SynapseList(**fields))


def test_int32_indices_are_taken_as_int64():
    params, _ = make_reservoir(30, 1, batch_size=2, in_degree=4, seed=1)
    narrow = SynapseList(*(x.int() for x in params.synapses[:3]), params.synapses.weight)
    rebuilt = dataclasses.replace(params, synapses=narrow)
    assert rebuilt.synapses.pre_index.dtype == torch.long
    assert torch.equal(rebuilt.event_table.targets, params.event_table.targets)


@pytest.mark.parametrize("sparse", [False, True])
def test_a_given_matrix_too_large_for_the_batch_is_refused_before_it_is_copied(sparse):
    # 100 copies of a dense 1000 x 1000 matrix: ~10^8 synapses, ~5 GB of lists and table. The
    # check runs on the nonzero counts, before the per-network lists are repeated B times.
    matrix = np.ones((1000, 1000)) - np.eye(1000)
    given = scipy.sparse.csr_matrix(matrix) if sparse else matrix
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match=r"the connectivity needs about 5\.2\d GiB.*memory_limit_bytes=1000000000"):
        make_reservoir(1000, 1, batch_size=100, connectivity=given, memory_limit_bytes=10**9)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib < 500 * 1024
    make_reservoir(1000, 1, batch_size=2, connectivity=given, memory_limit_bytes=10**9)  # two copies fit
