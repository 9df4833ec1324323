"""Recurrent connectivity of B independent reservoirs, and its event-driven table.

Synapses are kept as a ``SynapseList`` (COO, sorted by batch, presynaptic, postsynaptic
neuron) and turned into a padded outgoing-synapse table for event-driven delivery:
row ``b * N + j`` lists the flat state slots that a spike of neuron j of network b
increments, and by how much (``kernels/izhikevich/naive.py`` documents the layout).

Random wiring (our choices where the papers are silent, all documented here):
* ``fixed_in_degree``: every neuron receives exactly K synapses from K distinct other
  neurons drawn uniformly (no autapses). Drawn on the device: K draws with replacement
  per row, duplicates redrawn until none are left; the procedure is symmetric under
  relabelling the candidates, so every K-subset is equally likely. On a CPU the row
  sorts and the final (batch, pre) sort run in numpy (vectorised small-integer sorts),
  with the same draws: the same synapses as the torch path for the same seed.
* ``bernoulli``: each ordered pair (j -> i), i != j, exists with probability p, drawn in
  row chunks so the N x N mask is never allocated at once.
* E/I sign rule (Dale): weights leaving an excitatory neuron are >= 0, weights leaving
  an inhibitory neuron <= 0. Magnitudes ``weight_scale * U(0, 1)`` (Izhikevich 2003),
  times ``inhibitory_scale`` for inhibitory presynaptic neurons.
* A user matrix W (dense or scipy.sparse, W[i, j] = weight from j onto i, so that the
  drive is W @ spikes) wires a real connectome; see ``matrix_synapses``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DEFAULT_MEMORY_LIMIT_BYTES",
    "EventTable",
    "SynapseList",
    "bernoulli_synapses",
    "build_event_table",
    "check_memory",
    "dense_weights",
    "estimate_connectivity_bytes",
    "fixed_in_degree_synapses",
    "matrix_synapses",
    "sign_rule_weights",
]

DEFAULT_MEMORY_LIMIT_BYTES = 4 * 2**30
WEIGHT_CHUNK = 2**18  # synapses per chunk of the CPU weight draw (2 MB of float64)


class SynapseList(NamedTuple):
    """Synapses of B networks, each a Tensor [E]; the builders sort them by (batch, pre, post),
    and ``ReservoirParams`` needs (batch, pre) order (``checked_synapses``)."""

    batch_index: Tensor
    pre_index: Tensor
    post_index: Tensor
    weight: Tensor


class EventTable:
    """Padded outgoing-synapse table: ``targets`` int64 [B*N, K+1] flat slots of the state
    buffer [B, 3N+1] (padding -> the sink slot 3N), ``weights`` [B*N, K+1]; the last column
    is the neuron's own ``u`` slot with weight d (the spike-triggered u reset).

    ``shared_targets`` [N, K+1]: network 0's rows when every network has its (pre, post)
    pairs, else None. Row b * N + j of ``targets`` is then row j plus b (3N + 1), and
    ``targets`` is only built (and kept) when first read: the batched CPU step reads the
    N shared rows, so a sweep over one wiring never allocates the B*N-row index table.
    """

    __slots__ = ("_targets", "shared_targets", "weights")

    def __init__(self, targets: Tensor | None, weights: Tensor, shared_targets: Tensor | None = None):
        if targets is None and shared_targets is None:
            raise ValueError("EventTable needs targets or shared_targets (both are None)")
        self._targets, self.weights, self.shared_targets = targets, weights, shared_targets

    @property
    def targets(self) -> Tensor:
        if self._targets is None:
            shared = self.shared_targets
            n, width = shared.shape
            batch_size = self.weights.shape[0] // n
            shift = (torch.arange(batch_size, device=shared.device) * (3 * n + 1)).view(batch_size, 1, 1)
            self._targets = (shared.unsqueeze(0) + shift).view(batch_size * n, width)
        return self._targets


def estimate_connectivity_bytes(num_neurons: int, batch_size: int, synapses_per_network: float,
                                max_out_degree: float, weight_bytes: int) -> int:
    """Peak bytes to build and hold the connectivity: synapse list (3 int64 + weight per
    synapse), sort keys and permutation (2 int64), the padded table (int64 + weight per
    slot), all for B networks."""
    num_synapses = batch_size * synapses_per_network
    list_bytes = num_synapses * (3 * 8 + weight_bytes)
    sort_bytes = num_synapses * 2 * 8
    table_bytes = batch_size * num_neurons * (max_out_degree + 1) * (8 + weight_bytes)
    return math.ceil(list_bytes + sort_bytes + table_bytes)


def check_memory(estimate_bytes: int, memory_limit_bytes: int, what: str) -> None:
    """Raise ValueError before allocating when the estimate exceeds the limit."""
    if estimate_bytes > memory_limit_bytes:
        raise ValueError(
            f"{what} needs about {estimate_bytes / 2**30:.2f} GiB, above "
            f"memory_limit_bytes={memory_limit_bytes} ({memory_limit_bytes / 2**30:.2f} GiB); "
            "lower the size, in-degree, connection probability or batch size, or raise "
            "memory_limit_bytes"
        )


def _expected_max_degree(mean: float, count: int) -> float:
    """A generous estimate of the largest of ``count`` ~Poisson(mean) out-degrees."""
    return mean + 6.0 * math.sqrt(max(mean, 1.0)) + math.log(max(count, 2)) + 1.0


def fixed_in_degree_synapses(num_neurons: int, in_degree: int, batch_size: int,
                             generator: torch.Generator, device) -> tuple[Tensor, Tensor, Tensor]:
    """(batch, pre, post) int64 of B networks where each neuron has exactly ``in_degree``
    distinct presynaptic partners (no autapses), sorted by (batch, pre, post).

    On a CPU the sorts run in numpy (``_fixed_in_degree_cpu``: ~7x faster for 32 networks
    of 1k), elsewhere in torch; both consume the generator identically and sort the same
    keys, so they return the same synapses for the same seed."""
    if in_degree == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, empty
    if 2 * in_degree <= num_neurons - 1 and torch.device(device).type == "cpu":
        return _fixed_in_degree_cpu(num_neurons, in_degree, batch_size, generator)
    return _fixed_in_degree_torch(num_neurons, in_degree, batch_size, generator, device)


def _fixed_in_degree_torch(num_neurons: int, in_degree: int, batch_size: int,
                           generator: torch.Generator, device) -> tuple[Tensor, Tensor, Tensor]:
    """``fixed_in_degree_synapses`` in torch ops (any device; the reference of the CPU path)."""
    rows = batch_size * num_neurons
    num_candidates = num_neurons - 1
    if 2 * in_degree > num_candidates:
        # Dense regime: K smallest of uniform keys per row (row chunks bound the memory).
        picks = []
        chunk = max(1, 2**24 // max(num_candidates, 1))
        for start in range(0, rows, chunk):
            keys = torch.rand(min(chunk, rows - start), num_candidates, generator=generator, device=device)
            picks.append(keys.topk(in_degree, dim=1, largest=False).indices)
        draws = torch.cat(picks)
    else:
        draws = torch.randint(0, num_candidates, (rows, in_degree), generator=generator, device=device)
        draws, _ = draws.sort(dim=1)
        pending = torch.arange(rows, device=device)  # rows that may still hold duplicates
        while pending.numel():
            block = draws[pending]
            duplicate = torch.zeros_like(block, dtype=torch.bool)
            duplicate[:, 1:] = block[:, 1:] == block[:, :-1]
            count = int(duplicate.sum())
            if count == 0:
                break
            block[duplicate] = torch.randint(0, num_candidates, (count,), generator=generator, device=device)
            draws[pending] = block.sort(dim=1).values
            pending = pending[duplicate.any(dim=1)]
    post_flat = torch.arange(rows, device=device).repeat_interleave(in_degree)
    post = post_flat % num_neurons
    batch = post_flat // num_neurons
    pre = draws.reshape(-1)
    pre = pre + (pre >= post).long()  # skip the neuron itself
    return _sorted_by_pre(batch, pre, post, num_neurons)


def _fixed_in_degree_cpu(num_neurons: int, in_degree: int, batch_size: int,
                         generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """The sparse regime (2K <= N - 1) of ``_fixed_in_degree_torch`` with numpy sorts.

    Same draws from ``generator`` in the same order, the same row sorts and duplicate
    redraws (numpy's row sort of small integers is vectorised, torch's is not), and the
    same final order: a stable sort of each network's presynaptic indices (int16 radix sort
    when N <= 32768) replaces torch's stable sort of the keys b * N + pre."""
    n, k = num_neurons, in_degree
    rows = batch_size * n
    num_candidates = n - 1
    # int16 / int32 draws: the same values as int64 draws from the same generator state
    small = torch.int16 if n <= 2**15 else torch.int32
    draw = lambda count: torch.randint(0, num_candidates, (count,), generator=generator, dtype=small).numpy()
    draws = torch.randint(0, num_candidates, (rows, k), generator=generator, dtype=small).numpy()
    draws.sort(axis=1)
    pending = np.arange(rows)  # rows that may still hold duplicates
    while pending.size:
        block = draws[pending]
        duplicate = np.zeros(block.shape, dtype=bool)
        np.equal(block[:, 1:], block[:, :-1], out=duplicate[:, 1:])
        count = int(np.count_nonzero(duplicate))
        if count == 0:
            break
        block[duplicate] = draw(count)
        block.sort(axis=1)
        draws[pending] = block
        pending = pending[duplicate.any(axis=1)]
    post_of_row = np.tile(np.arange(n, dtype=draws.dtype), batch_size)[:, None]
    pre = draws + (draws >= post_of_row)  # skip the neuron itself; still < N
    pre = pre.reshape(batch_size, n * k)
    # Stable per network: within one presynaptic neuron the synapses keep their (post) order.
    order = np.argsort(pre, axis=1, kind="stable")
    pre.sort(axis=1)  # the same values as pre gathered by ``order`` (faster than the gather)
    pre_sorted = pre.astype(np.int64).reshape(-1)
    post_sorted = np.floor_divide(order, k, out=order).reshape(-1)  # slot i belongs to post i // K
    batch = torch.arange(batch_size).unsqueeze(1).expand(batch_size, n * k).reshape(-1)
    return batch, torch.from_numpy(pre_sorted), torch.from_numpy(post_sorted)


def bernoulli_synapses(num_neurons: int, connection_prob: float, batch_size: int,
                       generator: torch.Generator, device) -> tuple[Tensor, Tensor, Tensor]:
    """(batch, pre, post) int64: each pair j -> i (i != j) present with probability p."""
    batches, pres, posts = [], [], []
    chunk = max(1, 2**24 // num_neurons)
    for b in range(batch_size):
        for start in range(0, num_neurons, chunk):
            stop = min(start + chunk, num_neurons)
            mask = torch.rand(stop - start, num_neurons, generator=generator, device=device) < connection_prob
            mask[torch.arange(stop - start, device=device), torch.arange(start, stop, device=device)] = False
            pre, post = mask.nonzero(as_tuple=True)
            pres.append(pre + start)
            posts.append(post)
            batches.append(torch.full_like(post, b))
    return torch.cat(batches), torch.cat(pres), torch.cat(posts)


def _check_matrix_shape(shape, num_neurons: int) -> None:
    if tuple(shape) != (num_neurons, num_neurons):
        raise ValueError(f"connectivity has shape {list(shape)}; expected [{num_neurons}, {num_neurons}]")


def _check_matrix_memory(out_degrees: np.ndarray, num_neurons: int, batch_size: int, weight_bytes: int,
                         memory_limit_bytes: int) -> None:
    """``check_memory`` for B copies of a matrix with these per-presynaptic nonzero counts [N]."""
    max_out = float(out_degrees.max()) if out_degrees.size else 0.0
    check_memory(estimate_connectivity_bytes(num_neurons, batch_size, float(out_degrees.sum()), max_out,
                                             weight_bytes), memory_limit_bytes, "the connectivity")


def _sorted_by_pre(batch: Tensor, pre: Tensor, post: Tensor, num_neurons: int):
    """Reorder synapses given in (batch, post) order to (batch, pre, post) order: a stable
    sort on batch * N + pre keeps post ascending inside each presynaptic group."""
    key = batch * num_neurons + pre
    if key.numel() and int(key.max()) < 2**31:  # int32 keys sort about twice as fast
        key = key.int()
    order = torch.sort(key, stable=True).indices
    return batch.index_select(0, order), pre.index_select(0, order), post.index_select(0, order)


def matrix_synapses(matrix, num_neurons: int, batch_size: int, device, dtype: torch.dtype,
                    weight_bytes: int, memory_limit_bytes: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(batch, pre, post, weight) of a user matrix W [N, N] (W[i, j]: j onto i), dense
    (numpy / torch) or scipy.sparse, copied into every one of the B networks. The memory of
    the B copies and their table is checked (``check_memory``) from the nonzero count and the
    largest out-degree before any synapse list is built."""
    dtype_kind = getattr(getattr(matrix, "dtype", None), "kind", None)  # numpy and scipy
    if dtype_kind == "c" or (isinstance(matrix, torch.Tensor) and matrix.is_complex()):
        raise TypeError(f"connectivity must be real, got dtype {matrix.dtype}")
    if type(matrix).__module__.startswith("scipy.sparse"):
        coo = matrix.tocoo()
        _check_matrix_shape(coo.shape, num_neurons)
        out_degrees = np.bincount(np.asarray(coo.col)[np.asarray(coo.data) != 0], minlength=num_neurons)
        _check_matrix_memory(out_degrees, num_neurons, batch_size, weight_bytes, memory_limit_bytes)
        post = torch.as_tensor(np.asarray(coo.row), dtype=torch.long)
        pre = torch.as_tensor(np.asarray(coo.col), dtype=torch.long)
        value = torch.as_tensor(np.asarray(coo.data, dtype=np.float64))
    elif isinstance(matrix, (np.ndarray, torch.Tensor)):
        dense = torch.as_tensor(matrix)
        _check_matrix_shape(tuple(dense.shape), num_neurons)
        if dense.dtype == torch.bool:
            dense = dense.to(torch.float64)
        _check_matrix_memory(torch.count_nonzero(dense, dim=0).numpy(force=True), num_neurons, batch_size,
                             weight_bytes, memory_limit_bytes)
        post, pre = dense.nonzero(as_tuple=True)
        value = dense[post, pre].to(torch.float64)
    else:
        raise TypeError(
            f"connectivity has type {type(matrix).__name__}; allowed: numpy array, torch "
            "Tensor, scipy.sparse matrix/array (W[post, pre]), or None for random wiring"
        )
    if not bool(torch.isfinite(value).all()):
        raise ValueError("connectivity contains non-finite entries (NaN or inf)")
    keep = value != 0
    pre, post, value = pre[keep], post[keep], value[keep]
    order = (pre * num_neurons + post).argsort()
    pre, post, value = pre[order].to(device), post[order].to(device), value[order].to(device, dtype)
    count = pre.numel()
    batch = torch.arange(batch_size, device=device).repeat_interleave(count)
    return batch, pre.repeat(batch_size), post.repeat(batch_size), value.repeat(batch_size)


def sign_rule_weights(pre: Tensor, is_excitatory: Tensor, weight_scale: float, inhibitory_scale: float,
                      generator: torch.Generator, dtype: torch.dtype,
                      magnitude: Tensor | None = None) -> Tensor:
    """Dale's rule: w = weight_scale * m for excitatory presynaptic neurons, and
    -inhibitory_scale * weight_scale * m for inhibitory ones; m ~ U(0, 1) unless
    ``magnitude`` (e.g. |W| of a user matrix) is given."""
    scale_of_neuron = torch.where(is_excitatory, weight_scale, -inhibitory_scale * weight_scale).to(
        device=pre.device, dtype=torch.float64)
    out = torch.empty(pre.shape, dtype=dtype, device=pre.device)
    if pre.device.type != "cpu":
        fresh = magnitude is None
        if fresh:
            magnitude = torch.rand(pre.shape, generator=generator, device=pre.device, dtype=torch.float64)
        else:
            magnitude = magnitude.to(torch.float64).abs()  # U(0, 1) draws are >= 0 already
        return out.copy_(magnitude.mul_(scale_of_neuron.index_select(0, pre)))
    # CPU: the same float64 draws and products, in chunks through one reused buffer: the
    # CPU generator fills uniform_ serially, so chunks draw the values one call would, and
    # no full-size float64 temporaries are allocated (at 32 x 100k synapses their first-touch
    # page faults cost more than the arithmetic)
    chunk = WEIGHT_CHUNK
    buffer = torch.empty(min(chunk, pre.numel()), dtype=torch.float64)
    for start in range(0, pre.numel(), chunk):
        stop = min(start + chunk, pre.numel())
        values = buffer[: stop - start]
        if magnitude is None:
            values.uniform_(generator=generator)
        else:
            values.copy_(magnitude[start:stop]).abs_()
        values.mul_(scale_of_neuron.index_select(0, pre[start:stop]))
        out[start:stop] = values
    return out


def checked_synapses(synapses: SynapseList, num_neurons: int, batch_size: int) -> SynapseList:
    """``synapses`` as the event table needs them: a ``SynapseList`` of 1-D tensors of one
    length E, integer indices (made int64) with batch in [0, B) and pre, post in [0, N), a
    floating weight (TypeError/ValueError naming the field otherwise), in (batch, pre) order:
    a list out of that order is sorted by (batch, pre, post) as the builders make them (the
    same synapses); one in order is kept as it is."""
    if not isinstance(synapses, SynapseList):
        raise TypeError(f"synapses must be a SynapseList, got {type(synapses).__name__}")
    fields = dict(zip(SynapseList._fields, synapses))
    for name, value in fields.items():
        if not isinstance(value, Tensor) or value.dim() != 1:
            raise TypeError(f"synapses.{name} must be a 1-D torch.Tensor, got "
                            f"{getattr(value, 'shape', type(value).__name__)}")
        if value.numel() != synapses.weight.numel():
            raise ValueError(f"synapses' fields must have one length; {name} has {value.numel()}, "
                             f"weight {synapses.weight.numel()}")
    if not synapses.weight.is_floating_point():
        raise TypeError(f"synapses.weight must be floating, got {synapses.weight.dtype}")
    for name, upper in (("batch_index", batch_size), ("pre_index", num_neurons), ("post_index", num_neurons)):
        index = fields[name]
        if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
            raise TypeError(f"synapses.{name} must be an integer tensor, got {index.dtype}")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= upper):
            raise ValueError(f"synapses.{name} holds values in [{int(index.min())}, {int(index.max())}]; "
                             f"allowed [0, {upper}) (batch_size={batch_size}, num_neurons={num_neurons})")
    if any(fields[name].dtype != torch.long for name in ("batch_index", "pre_index", "post_index")):
        synapses = SynapseList(synapses.batch_index.long(), synapses.pre_index.long(),
                               synapses.post_index.long(), synapses.weight)
    row = synapses.batch_index * num_neurons + synapses.pre_index  # the event table's row
    if row.numel() < 2 or bool((row[1:] >= row[:-1]).all()):
        return synapses
    order = torch.sort(row * num_neurons + synapses.post_index, stable=True).indices
    return SynapseList(*(value.index_select(0, order) for value in synapses))


def build_event_table(synapses: SynapseList, num_neurons: int, batch_size: int, target_offset: int,
                      reset_increment: Tensor, memory_limit_bytes: int) -> EventTable:
    """Padded outgoing table of B networks (see ``EventTable``).

    ``target_offset``: 0 to deliver onto v (delta synapses), 2N onto the synaptic current
    (exponential synapses). ``reset_increment``: d, [B or 1, N], put in the last column.
    When every network has the first one's (pre, post) pairs (``shared_wiring``, a user
    matrix), the first network's table is built and tiled (the same table, ~4x faster).
    """
    n = num_neurons
    slots = 3 * n + 1
    rows = batch_size * n
    device, dtype = synapses.weight.device, reset_increment.dtype
    if _same_pairs_in_every_network(synapses, batch_size):
        return _tiled_event_table(synapses, n, batch_size, target_offset, reset_increment, memory_limit_bytes)
    row = synapses.batch_index * n + synapses.pre_index  # sorted: the list is in (batch, pre) order
    counts = torch.bincount(row, minlength=rows)
    max_degree = int(counts.max()) if counts.numel() else 0
    check_memory(
        estimate_connectivity_bytes(n, batch_size, 0.0, max_degree, dtype.itemsize),
        memory_limit_bytes, f"the event table ({batch_size} x {n} rows, {max_degree + 1} columns)",
    )
    width = max_degree + 1
    row_ids = torch.arange(rows, device=device)
    batch_of_row = row_ids // n
    targets = (batch_of_row * slots + 3 * n).unsqueeze(1).expand(rows, width).contiguous()
    weights = torch.zeros(rows, width, dtype=dtype, device=device)
    if row.numel():
        # row r holds its synapses in columns 0 .. counts[r] - 1, in list order: the list is
        # sorted by row, so a row-major masked fill puts every synapse in its place
        filled = torch.arange(width, device=device) < counts.unsqueeze(1)
        post_slot = synapses.batch_index * slots
        post_slot += synapses.post_index
        post_slot += target_offset
        targets.masked_scatter_(filled, post_slot)
        weights.masked_scatter_(filled, synapses.weight.to(dtype))
    targets[:, max_degree] = batch_of_row * slots + n + row_ids % n
    weights[:, max_degree] = reset_increment.expand(batch_size, n).reshape(-1)
    return EventTable(targets, weights)


def _same_pairs_in_every_network(synapses: SynapseList, batch_size: int) -> bool:
    """Whether network b's synapses are network 0's (pre, post) pairs, for every b."""
    total = synapses.pre_index.numel()
    if batch_size == 1 or total == 0 or total % batch_size:
        return False
    per = total // batch_size
    pre, post, batch = synapses.pre_index, synapses.post_index, synapses.batch_index
    if not (torch.equal(pre[per : 2 * per], pre[:per]) and torch.equal(post[per : 2 * per], post[:per])):
        return False  # cheap probe of network 1 first
    expected_batch = torch.arange(batch_size, device=batch.device).unsqueeze(1).expand(batch_size, per)
    return (torch.equal(batch.view(batch_size, per), expected_batch)
            and torch.equal(pre.view(batch_size, per), pre[:per].expand(batch_size, per))
            and torch.equal(post.view(batch_size, per), post[:per].expand(batch_size, per)))


def _tiled_event_table(synapses: SynapseList, n: int, batch_size: int, target_offset: int,
                       reset_increment: Tensor, memory_limit_bytes: int) -> EventTable:
    """``build_event_table`` for B networks with network 0's pairs: its table, shifted by
    b * (3N + 1) for network b, with network b's weights in the same columns."""
    per = synapses.pre_index.numel() // batch_size
    dtype = reset_increment.dtype
    first = SynapseList(*(x[:per] for x in synapses))
    one = build_event_table(first, n, 1, target_offset, reset_increment[:1], memory_limit_bytes)
    width = one.targets.shape[1]
    check_memory(estimate_connectivity_bytes(n, batch_size, 0.0, width - 1, dtype.itemsize), memory_limit_bytes,
                 f"the event table ({batch_size} x {n} rows, {width} columns)")
    device = one.targets.device
    counts = torch.bincount(first.pre_index, minlength=n)
    filled = torch.arange(width, device=device) < counts.unsqueeze(1)  # [N, width], as in network 0
    # network 0's synapse slots in row-major (row, column) order, which is the list order:
    # one copy of every network's weights into the same slots (a masked scatter is 2x slower)
    slots = filled.view(-1).nonzero().view(-1)
    weights = torch.zeros(batch_size, n * width, dtype=dtype, device=device)
    weights.index_copy_(1, slots, synapses.weight.to(dtype).view(batch_size, per))
    weights = weights.view(batch_size, n, width)
    weights[:, :, width - 1] = reset_increment.expand(batch_size, n)
    return EventTable(None, weights.view(batch_size * n, width), one.targets)  # targets: built when read


def dense_weights(synapses: SynapseList, num_neurons: int, batch_size: int) -> Tensor:
    """Dense W [B, N_post, N_pre] (duplicates summed); for tests and small networks."""
    from neuro.reservoir._checks import check_count

    num_neurons = check_count("num_neurons", num_neurons, minimum=1)
    batch_size = check_count("batch_size", batch_size, minimum=1)
    synapses = checked_synapses(synapses, num_neurons, batch_size)
    out = torch.zeros(batch_size, num_neurons, num_neurons, dtype=synapses.weight.dtype,
                      device=synapses.weight.device)
    out.index_put_((synapses.batch_index, synapses.post_index, synapses.pre_index), synapses.weight,
                   accumulate=True)
    return out
