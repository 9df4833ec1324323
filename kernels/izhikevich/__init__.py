"""Izhikevich reservoir step (see ``naive.py`` for the equations, layout and signatures).

``izhikevich_network_step_`` dispatches (``kernels/dispatch.py``): the fused Triton kernels
of ``triton.py`` when the state is a float32/float16/bfloat16 CUDA tensor and triton imports,
the torch reference of ``naive.py`` otherwise (float64 always takes the reference, the
cross-backend oracle); ``NEUROBRIDGE_KERNELS=naive|triton`` forces either.
``izhikevich_neuron_update_`` and ``propagate_spikes_`` are the reference's building
blocks (used for the refractory variant) and always run in torch.
"""
from __future__ import annotations

import torch
from torch import Tensor

from kernels.dispatch import check_same_device, use_triton
from kernels.izhikevich.naive import izhikevich_network_step_ as naive_izhikevich_network_step_
from kernels.izhikevich.naive import izhikevich_neuron_update_, propagate_spikes_

__all__ = [
    "check_network_step_inputs",
    "check_neuron_parameters",
    "check_state_views",
    "check_target_range",
    "izhikevich_network_step_",
    "izhikevich_neuron_update_",
    "naive_izhikevich_network_step_",
    "propagate_spikes_",
]


def check_network_step_inputs(state: Tensor, drive: Tensor, spikes: Tensor, targets: Tensor,
                              weights: Tensor) -> None:
    """Shapes and dtypes only (no tensor values): ValueError / TypeError naming the argument."""
    for name, t in (("state", state), ("drive", drive), ("spikes", spikes), ("targets", targets),
                    ("weights", weights)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if drive.dim() != 2:
        raise ValueError(f"drive must have shape [B, N], got {list(drive.shape)}")
    batch, num_neurons = drive.shape
    if tuple(state.shape) != (batch, 3 * num_neurons + 1) or not state.is_floating_point():
        raise ValueError(f"state must be a float [B, 3N+1] = [{batch}, {3 * num_neurons + 1}] buffer, got "
                         f"{state.dtype} {list(state.shape)}")
    if drive.dtype != state.dtype or weights.dtype != state.dtype:
        raise TypeError(f"drive ({drive.dtype}) and weights ({weights.dtype}) must have state's dtype {state.dtype}")
    if tuple(spikes.shape) != (batch, num_neurons) or spikes.dtype != torch.bool:
        raise ValueError(f"spikes must be a bool [{batch}, {num_neurons}] tensor, got {spikes.dtype} "
                         f"{list(spikes.shape)}")
    if targets.dim() != 2 or targets.shape[0] != batch * num_neurons or targets.dtype != torch.int64:
        raise ValueError(f"targets must be an int64 [B*N, K+1] = [{batch * num_neurons}, *] table, got "
                         f"{targets.dtype} {list(targets.shape)}")
    if weights.shape != targets.shape:
        raise ValueError(f"weights must have targets' shape {list(targets.shape)}, got {list(weights.shape)}")


def check_neuron_parameters(state: Tensor, drive: Tensor, u_decay: Tensor, u_v_gain: Tensor,
                            v_reset: Tensor) -> None:
    """Shapes and dtypes of the per-neuron parameters: each a tensor of state's dtype, [B, N]
    (per network) or [1, N] (shared by the B networks). Without it the two paths part
    silently: the reference broadcasts e.g. a [B, 1] u_decay, while the Triton kernels index
    every parameter as [B or 1, N] rows and read outside the tensor; a 1-D [N] v_reset broke
    the reference's sparse reset (B * N >= 4096) with an IndexError from inside torch."""
    batch, num_neurons = drive.shape
    allowed = ((batch, num_neurons), (1, num_neurons))
    for name, t in (("u_decay", u_decay), ("u_v_gain", u_v_gain), ("v_reset", v_reset)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape) not in allowed:
            raise ValueError(f"{name} must have shape [B, N] = [{batch}, {num_neurons}] or [1, N] "
                             f"= [1, {num_neurons}], got {list(t.shape)}")
        if t.dtype != state.dtype:
            raise TypeError(f"{name} ({t.dtype}) must have state's dtype {state.dtype}")


def check_target_range(targets: Tensor, state: Tensor) -> None:
    """ValueError unless every entry of ``targets`` is a slot of ``state``, in
    [0, state.numel()). Reads the values (one device synchronisation), so the steps never
    call it: call it once on a table you built yourself (the reservoir's event tables are
    built in range). Unchecked, an out-of-range slot raises from inside torch on the
    reference path and writes outside ``state`` on the Triton path."""
    for name, t in (("targets", targets), ("state", state)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if targets.numel() == 0:
        return
    low, high = (int(x) for x in torch.aminmax(targets))
    if low < 0 or high >= state.numel():
        raise ValueError(f"targets must be flat slots of state in [0, {state.numel()}) "
                         f"(state is {list(state.shape)}), got entries from {low} to {high}")


def check_state_views(state: Tensor, v: Tensor, u: Tensor, synaptic_current: Tensor | None,
                      synapse_decay) -> None:
    """ValueError unless v, u (and synaptic_current) are the [B, N] views ``state[:, :N]``,
    ``state[:, N:2N]`` (``state[:, 2N:3N]``) of the documented layout, and synapse_decay is
    given with synaptic_current (exponential synapses; with synaptic_current None, delta
    synapses, both paths ignore synapse_decay).

    Metadata only (no tensor values). Without it the two paths part silently: the Triton
    kernels address ``state`` alone, while the reference updates the v, u passed in and
    adds synaptic_current to the drive even with no synapse_decay (the Triton path did not)."""
    if synaptic_current is not None and synapse_decay is None:
        raise ValueError("synaptic_current was given but synapse_decay is None: exponential "
                         "synapses need both; delta synapses pass synaptic_current=None "
                         "(synapse_decay is then ignored)")
    batch, width = state.shape
    num_neurons = (width - 1) // 3
    views = (("v", v, 0), ("u", u, 1), ("synaptic_current", synaptic_current, 2))
    for name, view, block in views:
        if view is None and name == "synaptic_current":
            continue
        if not isinstance(view, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(view).__name__}")
        # strides of size-1 axes address nothing (B = 1: state[0, :N].unsqueeze(0) is the view)
        if (tuple(view.shape) != (batch, num_neurons) or view.dtype != state.dtype
                or any(size > 1 and a != b for size, a, b in zip(view.shape, view.stride(), state.stride()))
                or view.data_ptr() != state.data_ptr() + block * num_neurons * state.element_size()):
            raise ValueError(f"{name} must be the view state[:, {block}N:{block + 1}N] = "
                             f"state[:, {block * num_neurons}:{(block + 1) * num_neurons}] of state "
                             f"(layout [v | u | I_syn | sink]), got a {view.dtype} "
                             f"{list(view.shape)} tensor that is not")


def izhikevich_network_step_(state: Tensor, v: Tensor, u: Tensor, synaptic_current: Tensor | None,
                             drive: Tensor, spikes: Tensor, scratch_hc: Tensor, scratch_t: Tensor,
                             targets: Tensor, weights: Tensor, half_step_ms, k1, k2,
                             u_decay: Tensor, u_v_gain: Tensor, v_reset: Tensor, v_peak_mv,
                             synapse_decay=None) -> Tensor:
    """One network step in place; returns flat spike indices ``b * N + j`` (ascending).

    Checked first: shapes and dtypes (``check_network_step_inputs``,
    ``check_neuron_parameters``), one device, and that v, u, synaptic_current are views of
    ``state`` (``check_state_views``); not the values of ``targets`` (that would synchronise
    every step: see ``check_target_range``)."""
    check_network_step_inputs(state, drive, spikes, targets, weights)
    check_neuron_parameters(state, drive, u_decay, u_v_gain, v_reset)
    check_same_device(state=state, v=v, u=u, synaptic_current=synaptic_current, drive=drive,
                      spikes=spikes, scratch_hc=scratch_hc, scratch_t=scratch_t, targets=targets,
                      weights=weights, half_step_ms=half_step_ms, k1=k1, k2=k2, u_decay=u_decay,
                      u_v_gain=u_v_gain, v_reset=v_reset, v_peak_mv=v_peak_mv,
                      synapse_decay=synapse_decay)
    check_state_views(state, v, u, synaptic_current, synapse_decay)
    args = (state, v, u, synaptic_current, drive, spikes, scratch_hc, scratch_t, targets,
            weights, half_step_ms, k1, k2, u_decay, u_v_gain, v_reset, v_peak_mv, synapse_decay)
    if use_triton(state, drive, targets, weights, float32_kernel=True):
        from kernels.izhikevich.triton import triton_izhikevich_network_step_
        return triton_izhikevich_network_step_(*args)
    return naive_izhikevich_network_step_(*args)
