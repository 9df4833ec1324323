"""The bound CPU step for a batch of networks (B * N >= 4096): the reference's values.

``batched_stepper`` returns ``step(drive) -> spike_index [S, 1]`` that computes exactly what
``kernels.izhikevich.naive.izhikevich_network_step_`` computes (every multiply, add and
compare in its order, each rounded once; the contributions to a slot added in the same
order), on the state buffer ``[B, 3N + 1] = [v | u | I_syn | sink]`` of
``kernels/izhikevich/naive.py``. It is ``network_stepper``'s batched branch of that module,
with two differences:

* shared wiring (``EventTable.shared_targets``, every network has network 0's (pre, post)
  pairs): the targets of a spike of neuron j in network b are network 0's row j plus
  b (3N + 1), gathered from the N shared rows, so the B*N-row index table is never built
  (at 32 x 1k it is 34 MB, whose allocation and page faults cost ~15 ms of setup); the
  gather itself costs about the same as from the B*N rows (both miss the L2 cache);
* ``fill_spikes=False`` skips filling the [B, N] bool ``spikes`` (two ops a step): a loop
  that keeps the returned indices needs nothing else.

Threshold: ``v >= v_peak`` into a float 0/1 mask (comparisons into bool are ~4x slower on
a CPU), folded 3 times by halves with ``maximum`` so that ``nonzero`` scans B*N/8 group
flags, then the members of the groups that fired are checked (the same spikes, ascending).
Delivery: ``scatter_add_`` on the flat state (adds serially, in index order, with any number
of threads); reset: an indexed write of the spiking neurons' v.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["FOLD_LEVELS", "batched_stepper"]

FOLD_LEVELS = 3  # threshold groups of 2**3 = 8 neurons


def batched_stepper(state: Tensor, v: Tensor, u: Tensor, synaptic_current: Tensor | None, spikes: Tensor,
                    scratch_hc: Tensor, targets: Tensor | None, weights: Tensor, shared_targets: Tensor | None,
                    half_step_ms: Tensor, k1: Tensor, k2: Tensor, u_decay: Tensor, u_v_gain: Tensor,
                    v_reset: Tensor, v_peak_mv: Tensor, synapse_decay: Tensor | None = None,
                    fill_spikes: bool = True):
    """Bind one batched step (see the module docstring).

    state [B, 3N+1] contiguous, v / u (/ synaptic_current) its [B, N] views, spikes bool
    [B, N], scratch_hc [B, N]; targets, weights [B*N, K+1] (``EventTable``; targets unused
    when shared_targets [N, K+1] is given); scalars: 0-dim tensors of the state dtype;
    u_decay, u_v_gain, v_reset: [B or 1, N].
    """
    batch, num_neurons = v.shape
    dtype, device = state.dtype, state.device
    total = batch * num_neurons
    arange = lambda count: torch.arange(count, device=device)

    # neuron update: [v | u] * [k1 | u_decay] in one op (coefficients broadcast from [1, 2N]
    # when they are: reading [B, 2N] coefficients was measured slower)
    v_and_u = state[:, : 2 * num_neurons]
    first_coefficients = torch.cat([k1.expand(u_decay.shape), u_decay], dim=1).contiguous()
    products = torch.empty(batch, 2 * num_neurons, dtype=dtype, device=device)
    t, u_decayed = products[:, :num_neurons], products[:, num_neurons:]  # v * k1, u * u_decay
    exponential = synaptic_current is not None and synapse_decay is not None

    # threshold: group k of 8 holds neurons k, k + G, ..., k + 7G (G groups, padding stays 0)
    fold = 2**FOLD_LEVELS
    groups = -(-total // fold)
    mask = torch.zeros(fold * groups, dtype=dtype, device=device)
    mask_bn = mask[:total].view(batch, num_neurons)
    halves, source = [], mask
    for _ in range(FOLD_LEVELS):
        width = source.numel() // 2
        folded = torch.empty(width, dtype=dtype, device=device)
        halves.append((source[:width], source[width:], folded))
        source = folded
    group_flags, member_offset = source, arange(fold) * groups

    # delivery and reset tables
    state_flat, spikes_flat = state.view(-1), spikes.view(-1)
    reset_slots = arange(total) + (arange(total) // num_neurons) * (2 * num_neurons + 1)  # v of (b, j)
    reset_values = v_reset.expand(batch, num_neurons).reshape(-1).contiguous()
    if shared_targets is not None:
        neuron_of = arange(total) % num_neurons
        row_shift = (arange(total) // num_neurons) * (3 * num_neurons + 1)

    add, sub, mul, ge, maximum = torch.add, torch.sub, torch.mul, torch.ge, torch.maximum
    nonzero, take, index_select, gather_rows = torch.nonzero, torch.take, torch.index_select, torch.embedding
    hc_mul_, hc_sub_, t_add_, t_mul_ = scratch_hc.mul_, scratch_hc.sub_, t.add_, t.mul_
    scatter_add_, index_copy_ = state_flat.scatter_add_, state_flat.index_copy_

    def step(drive: Tensor) -> Tensor:
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
        ge(v, v_peak_mv, out=mask_bn)
        for low, high, out in halves:
            maximum(low, high, out=out)
        # members [8, G'] of the G' groups that fired: row m holds k + m G, so row-major
        # order visits the flat indices in ascending order
        members = add(nonzero(group_flags), member_offset).t()
        spike_index = take(members, nonzero(take(mask, members).view(-1)))  # [S, 1]
        flat = spike_index.view(-1)
        if shared_targets is None:
            rows = index_select(targets, 0, flat)
        else:
            rows = gather_rows(shared_targets, take(neuron_of, flat)).add_(take(row_shift, spike_index))
        scatter_add_(0, rows.view(-1), index_select(weights, 0, flat).view(-1))
        index_copy_(0, take(reset_slots, flat), take(reset_values, flat))
        if fill_spikes:
            spikes_flat.zero_()
            spikes_flat.index_fill_(0, flat, True)
        return spike_index

    return step
