"""Readable torch reference of the Izhikevich reservoir step (CPU fast path and test oracle).

One step of a batch of B independent Izhikevich (2003) networks of N neurons with
event-driven synaptic delivery, written as ~20 in-place eager torch ops so that the
per-step overhead stays small on a CPU.

Every op is a plain IEEE operation with ONE rounding (mul, add, sub, compare, select),
in every dtype: no ``addcmul`` / ``add(alpha=)`` (those use fused multiply-adds on AVX2,
which would save 5 ops per step), so a run reproduces, bit for bit, any other code that
evaluates the same expressions in the same order: the Brian2 backend in float64, the
Triton kernel (FMA contraction off) in float32.

State layout (one contiguous buffer per batch row, so that a single ``scatter_add_`` can
deliver synaptic increments AND the spike-triggered ``u += d`` reset)::

    state[b] = [ v_mv (N) | u (N) | synaptic_current (N) | sink (1) ]      shape [B, 3N + 1]

Update order of one step (dt = ``2 * half_step_ms``), from Izhikevich 2003 (Python-free
restatement of his MATLAB code; split of the v update into two half steps for stability):

    g      = drive + I_syn                       (drive = external current + 140, given)
    hc     = (g - u) * h                          h = dt / 2
    v      = v * (k2 + k1 * v) + hc   (twice)     k1 = 0.04 h, k2 = 1 + 5 h
    u      = u * u_decay + v * u_v_gain           u_decay = 1 - a dt, u_v_gain = a b dt
    I_syn  = I_syn * synapse_decay                (exponential synapses only)
    s      = v >= v_peak
    state[targets[s]] += weights[s]              (v or I_syn of the targets; u of the
                                                  spiking neuron itself gets + d)
    v      = where(s, c, v)                      (for B*N >= 4096: an indexed write of the
                                                  spiking neurons only, same result)

Public functions (names and signatures are stable; the Triton version matches them):

``izhikevich_neuron_update_(v, u, drive, scratch_hc, scratch_t, half_step_ms, k1, k2,
u_decay, u_v_gain, synaptic_current=None, synapse_decay=None) -> None``
    in-place neuron update (first five lines above). v, u, drive, scratches: [B, N].

``propagate_spikes_(state, spikes, targets, weights) -> Tensor[S] int64``
    event-driven delivery: ``state`` [B, 3N+1] contiguous, ``spikes`` [B, N] bool,
    ``targets`` [B*N, K+1] int64 flat slot indices into ``state.view(-1)``,
    ``weights`` [B*N, K+1]. Returns the flat indices ``b * N + j`` of the spikes.

``network_stepper(state, v, u, synaptic_current, spikes, ..., synapse_decay=None) -> step``
    the same step with everything but ``drive`` bound: ``step(drive) -> spike index [S, 1]``
    (for CPU loops of many small steps; bit-identical to ``izhikevich_network_step_``, with
    fewer and cheaper ops: see its docstring).

``izhikevich_network_step_(state, v, u, synaptic_current, drive, spikes, scratch_hc,
scratch_t, targets, weights, half_step_ms, k1, k2, u_decay, u_v_gain, v_reset, v_peak_mv,
synapse_decay=None) -> Tensor[S] int64``
    one full step in place, returns the flat spike indices (sorted ascending). ``v``, ``u``,
    ``synaptic_current`` are the [B, N] views of ``state`` (passed in so that a loop slices
    once); ``synaptic_current``/``synapse_decay`` are None for delta synapses.

Scalars (h, k1, k2, v_peak, synapse_decay) may be Python floats or 0-dim tensors of the
state dtype; 0-dim tensors skip the ~1-2 us per op that wrapping a Python number costs on
CPU, and give the same result (a Python float is rounded to the tensor dtype either way).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "izhikevich_network_step_", "izhikevich_neuron_update_", "network_stepper", "propagate_spikes_", "reset_spiking_",
]


def izhikevich_neuron_update_(
    v: Tensor,
    u: Tensor,
    drive: Tensor,
    scratch_hc: Tensor,
    scratch_t: Tensor,
    half_step_ms,
    k1,
    k2,
    u_decay: Tensor,
    u_v_gain: Tensor,
    synaptic_current: Tensor | None = None,
    synapse_decay=None,
) -> None:
    """Split-Euler Izhikevich update of ``v`` and ``u`` in place (see module docstring)."""
    if synaptic_current is not None:
        torch.add(drive, synaptic_current, out=scratch_hc)
        scratch_hc.sub_(u)
    else:
        torch.sub(drive, u, out=scratch_hc)
    scratch_hc.mul_(half_step_ms)
    for _ in range(2):
        torch.mul(v, k1, out=scratch_t)
        scratch_t.add_(k2)
        scratch_t.mul_(v)
        torch.add(scratch_t, scratch_hc, out=v)
    torch.mul(v, u_v_gain, out=scratch_t)
    u.mul_(u_decay)
    u.add_(scratch_t)
    if synaptic_current is not None and synapse_decay is not None:
        synaptic_current.mul_(synapse_decay)


def propagate_spikes_(state: Tensor, spikes: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """Deliver the outgoing synapses of every spiking neuron: gather rows, one ``scatter_add_``.

    Contributions to one slot are summed in ascending (presynaptic neuron, table column)
    order, which is the order Brian2 uses for synapses created in that order.
    """
    spike_index = spikes.view(-1).nonzero().view(-1)
    # scatter_add_ on a 1-D tensor walks the entries in order (like index_add_, measured
    # ~3x faster on CPU for a few thousand entries)
    state.view(-1).scatter_add_(
        0, targets.index_select(0, spike_index).view(-1), weights.index_select(0, spike_index).view(-1)
    )
    return spike_index


def izhikevich_network_step_(
    state: Tensor,
    v: Tensor,
    u: Tensor,
    synaptic_current: Tensor | None,
    drive: Tensor,
    spikes: Tensor,
    scratch_hc: Tensor,
    scratch_t: Tensor,
    targets: Tensor,
    weights: Tensor,
    half_step_ms,
    k1,
    k2,
    u_decay: Tensor,
    u_v_gain: Tensor,
    v_reset: Tensor,
    v_peak_mv,
    synapse_decay=None,
) -> Tensor:
    """One network step in place; returns flat spike indices ``b * N + j`` (ascending)."""
    izhikevich_neuron_update_(
        v, u, drive, scratch_hc, scratch_t, half_step_ms, k1, k2, u_decay, u_v_gain,
        synaptic_current, synapse_decay,
    )
    torch.ge(v, v_peak_mv, out=spikes)
    spike_index = propagate_spikes_(state, spikes, targets, weights)
    reset_spiking_(state, v, spikes, spike_index, v_reset)
    return spike_index


# Above this many neurons (B * N) the reset writes only the spiking neurons' v (two small
# indexed ops, ~3 us) instead of a full masked select (~1.5 ns per neuron: 25 us at 16k).
SPARSE_RESET_MIN_NEURONS = 4096
# The batched threshold scans the spike flags in groups of 2**FOLD_LEVELS (see network_stepper).
FOLD_LEVELS = 3


def reset_spiking_(state: Tensor, v: Tensor, spikes: Tensor, spike_index: Tensor, v_reset: Tensor) -> None:
    """v <- c for the spiking neurons (``spike_index`` = flat b * N + j, ascending)."""
    batch, num_neurons = v.shape
    if batch * num_neurons < SPARSE_RESET_MIN_NEURONS:
        torch.where(spikes, v_reset, v, out=v)
        return
    if v_reset.shape[0] == 1:
        values = v_reset.view(-1).index_select(0, spike_index if batch == 1 else spike_index % num_neurons)
    else:
        values = v_reset.reshape(-1).index_select(0, spike_index)
    # v of (b, j) sits at slot b * (3N + 1) + j = flat + b * (2N + 1) of the state buffer
    slots = spike_index if batch == 1 else spike_index + (spike_index // num_neurons) * (2 * num_neurons + 1)
    state.view(-1).index_copy_(0, slots, values)


def neuron_updater(state: Tensor, v: Tensor, u: Tensor, synaptic_current: Tensor | None,
                   scratch_hc: Tensor, half_step_ms: Tensor, k1: Tensor, k2: Tensor,
                   u_decay: Tensor, u_v_gain: Tensor, synapse_decay: Tensor | None):
    """Bind the reference's neuron update (two half steps of v, then u) to the state views.

    Returns ``update(drive)``: the same multiplies and adds in the reference's order, each
    rounded once, on preallocated buffers (no temporaries); [v | u] * [k1 | u_decay] is
    one op. ``v``, ``u`` must be the views ``state[:, :N]``, ``state[:, N:2N]``.
    """
    batch, num_neurons = v.shape
    v_and_u = state[:, : 2 * num_neurons]
    first_coefficients = torch.cat([k1.expand(u_decay.shape), u_decay], dim=1).contiguous()
    products = torch.empty(batch, 2 * num_neurons, dtype=state.dtype, device=state.device)
    t, u_decayed = products[:, :num_neurons], products[:, num_neurons:]  # v * k1, u * u_decay
    exponential = synaptic_current is not None and synapse_decay is not None
    add, sub, mul = torch.add, torch.sub, torch.mul
    hc_mul_, hc_sub_, t_add_, t_mul_ = scratch_hc.mul_, scratch_hc.sub_, t.add_, t.mul_

    def update(drive: Tensor) -> None:
        if exponential:
            add(drive, synaptic_current, out=scratch_hc)
            hc_sub_(u)
        else:
            sub(drive, u, out=scratch_hc)
        hc_mul_(half_step_ms)
        mul(v_and_u, first_coefficients, out=products)  # v * k1 and u * u_decay
        t_add_(k2)
        t_mul_(v)
        add(t, scratch_hc, out=v)
        mul(v, k1, out=t)
        t_add_(k2)
        t_mul_(v)
        add(t, scratch_hc, out=v)
        mul(v, u_v_gain, out=t)
        add(t, u_decayed, out=u)
        if exponential:
            synaptic_current.mul_(synapse_decay)

    return update


def network_stepper(
    state: Tensor,
    v: Tensor,
    u: Tensor,
    synaptic_current: Tensor | None,
    spikes: Tensor,
    scratch_hc: Tensor,
    scratch_t: Tensor,
    targets: Tensor,
    weights: Tensor,
    half_step_ms,
    k1,
    k2,
    u_decay: Tensor,
    u_v_gain: Tensor,
    v_reset: Tensor,
    v_peak_mv,
    synapse_decay=None,
    shared_targets: Tensor | None = None,
    fill_spikes: bool = True,
):
    """``izhikevich_network_step_`` with every argument but ``drive`` bound once.

    Returns ``step(drive) -> spike_index``: the same values as ``izhikevich_network_step_``
    (bit for bit: every multiply, add and compare of the reference, in its order, each
    rounded once), with less per-op overhead, which is what bounds a CPU loop of small
    steps (N = 1k: ~1 us per op). ``spike_index`` holds the same flat indices b * N + j
    (ascending) with shape [S, 1] (``nonzero``'s shape; ``.view(-1)`` flattens). Differences
    from the reference, all of which leave every rounded value unchanged:

    * ``u * u_decay`` is computed by the op that computes the first ``v * k1``: one
      multiply of the [B, 2N] view ``[v | u]`` of the state by ``[k1 ... k1 | u_decay]``;
      then ``u = v * u_v_gain + (u * u_decay)`` (one addition, commutative);
    * rows of the table are gathered with ``torch.embedding`` (any index shape, no views)
      and delivered with ``Tensor.put_(accumulate=True)`` on the state (flat indexing, no
      views), which adds serially in index order, as ``scatter_add_`` does; with several
      torch threads ``put_`` may add large batches in parallel (atomics, any order), so the
      stepper then keeps ``scatter_add_``;
    * from ``SPARSE_RESET_MIN_NEURONS`` neurons on (B * N; a batch of networks) the
      threshold goes through a float 0/1 mask and a two-level ``nonzero`` (see the code),
      delivery uses the reference's ``scatter_add_`` (faster than ``put_`` for many events),
      and the reset writes the spiking neurons only, as the reference's does there;
      ``spikes`` is filled from the indices, or not at all with ``fill_spikes=False`` (a
      loop that keeps the returned indices needs nothing else);
    * there, ``shared_targets`` [N, K+1] (every network wired like network 0; ``targets``
      may then be None): the targets of neuron j of network b are row j plus b (3N + 1),
      gathered from the N shared rows, so the B*N-row table is never built (34 MB at
      32 x 1k, ~15 ms of allocation and page faults).

    Falls back to the reference step when ``v`` and ``u`` are not the [B, N] views
    ``state[:, :N]``, ``state[:, N:2N]`` of the documented layout.
    """
    batch, num_neurons = v.shape
    dtype, device = state.dtype, state.device
    as_tensor = lambda x: x if isinstance(x, Tensor) else torch.tensor(x, dtype=dtype, device=device)
    half_step_ms, k1, k2, v_peak_mv = (as_tensor(x) for x in (half_step_ms, k1, k2, v_peak_mv))
    if synapse_decay is not None:
        synapse_decay = as_tensor(synapse_decay)
    item = state.element_size()
    views_of_state = (
        state.is_contiguous() and state.dim() == 2 and state.shape == (batch, 3 * num_neurons + 1)
        and v.data_ptr() == state.data_ptr() and u.data_ptr() == state.data_ptr() + num_neurons * item
        and v.stride() == state.stride() and u.stride() == state.stride()
    )
    if not views_of_state:
        return lambda drive: izhikevich_network_step_(
            state, v, u, synaptic_current, drive, spikes, scratch_hc, scratch_t, targets, weights,
            half_step_ms, k1, k2, u_decay, u_v_gain, v_reset, v_peak_mv, synapse_decay)

    neurons = neuron_updater(state, v, u, synaptic_current, scratch_hc, half_step_ms, k1, k2,
                             u_decay, u_v_gain, synapse_decay)
    state_flat, spikes_flat = state.view(-1), spikes.view(-1)
    add, ge, where, nonzero = torch.add, torch.ge, torch.where, torch.nonzero
    gather_rows, index_select = torch.embedding, torch.index_select
    put_ = state.put_

    if batch * num_neurons < SPARSE_RESET_MIN_NEURONS:
        if torch.get_num_threads() == 1:
            def step(drive: Tensor) -> Tensor:
                neurons(drive)
                ge(v, v_peak_mv, out=spikes)
                spike_index = nonzero(spikes_flat)
                put_(gather_rows(targets, spike_index), gather_rows(weights, spike_index), True)
                where(spikes, v_reset, v, out=v)
                return spike_index
        else:
            scatter_add_ = state_flat.scatter_add_

            def step(drive: Tensor) -> Tensor:
                neurons(drive)
                ge(v, v_peak_mv, out=spikes)
                spike_index = nonzero(spikes_flat)
                flat = spike_index.view(-1)
                scatter_add_(0, index_select(targets, 0, flat).view(-1), index_select(weights, 0, flat).view(-1))
                where(spikes, v_reset, v, out=v)
                return spike_index
        return step

    # A batch of networks (B * N >= SPARSE_RESET_MIN_NEURONS). Threshold: ``ge`` into a
    # float 0/1 mask (vectorised; ``ge`` into bool and ``nonzero`` over all B * N flags take
    # ~0.7 and ~1.2 ns per neuron), folded FOLD_LEVELS times by halves with ``maximum`` so
    # that ``nonzero`` scans B*N/8 group flags (more levels measured no faster at 32 x 1k);
    # then the members of the groups that fired are
    # checked (exact comparisons and maxima of 0/1: the same spikes, in the same order).
    # Reset: tables of every neuron's v slot and c, gathered for the spiking ones.
    total = batch * num_neurons
    fold = 2**FOLD_LEVELS  # neurons per group
    groups = (total + fold - 1) // fold
    mask = torch.zeros(fold * groups, dtype=dtype, device=device)  # padding stays 0
    mask_bn = mask[:total].view(batch, num_neurons)
    halves, source = [], mask
    for _ in range(FOLD_LEVELS):  # group k holds k, k + G, ..., k + (fold - 1) G
        width = source.numel() // 2
        folded = torch.empty(width, dtype=dtype, device=device)
        halves.append((source[:width], source[width:], folded))
        source = folded
    group_flags = source
    member_offset = torch.arange(fold, device=device) * groups
    own = torch.arange(total, device=device)
    reset_slots = own + (own // num_neurons) * (2 * num_neurons + 1)
    reset_values = v_reset.expand(batch, num_neurons).reshape(-1).contiguous()
    if shared_targets is not None:
        neuron_of = own % num_neurons
        row_shift = (own // num_neurons) * (3 * num_neurons + 1)
    scatter_add_, index_copy_ = state_flat.scatter_add_, state_flat.index_copy_
    spikes_zero_, spikes_index_fill_ = spikes_flat.zero_, spikes_flat.index_fill_
    maximum, take = torch.maximum, torch.take

    def step(drive: Tensor) -> Tensor:
        neurons(drive)
        ge(v, v_peak_mv, out=mask_bn)
        for low, high, out in halves:
            maximum(low, high, out=out)
        # members [8, G'] of the G' groups that fired: row m holds k + m * G, so reading
        # the flags in row-major order visits the flat indices in ascending order
        members = add(nonzero(group_flags), member_offset).t()
        spike_index = take(members, nonzero(take(mask, members).view(-1)))  # [S, 1]
        flat = spike_index.view(-1)
        if fill_spikes:
            spikes_zero_()
            spikes_index_fill_(0, flat, True)
        if shared_targets is None:
            rows = index_select(targets, 0, flat)
        else:
            rows = gather_rows(shared_targets, take(neuron_of, flat)).add_(take(row_shift, spike_index))
        scatter_add_(0, rows.view(-1), index_select(weights, 0, flat).view(-1))
        index_copy_(0, index_select(reset_slots, 0, flat), index_select(reset_values, 0, flat))
        return spike_index

    return step
