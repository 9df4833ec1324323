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

from kernels.dispatch import use_triton
from kernels.izhikevich.naive import izhikevich_network_step_ as naive_izhikevich_network_step_
from kernels.izhikevich.naive import izhikevich_neuron_update_, propagate_spikes_

__all__ = ["izhikevich_network_step_", "izhikevich_neuron_update_", "propagate_spikes_",
           "naive_izhikevich_network_step_"]


def izhikevich_network_step_(state: Tensor, v: Tensor, u: Tensor, synaptic_current: Tensor | None,
                             drive: Tensor, spikes: Tensor, scratch_hc: Tensor, scratch_t: Tensor,
                             targets: Tensor, weights: Tensor, half_step_ms, k1, k2,
                             u_decay: Tensor, u_v_gain: Tensor, v_reset: Tensor, v_peak_mv,
                             synapse_decay=None) -> Tensor:
    """One network step in place; returns flat spike indices ``b * N + j`` (ascending)."""
    args = (state, v, u, synaptic_current, drive, spikes, scratch_hc, scratch_t, targets,
            weights, half_step_ms, k1, k2, u_decay, u_v_gain, v_reset, v_peak_mv, synapse_decay)
    if state.dtype != torch.float64 and use_triton(state, drive, targets, weights):
        from kernels.izhikevich.triton import triton_izhikevich_network_step_
        return triton_izhikevich_network_step_(*args)
    return naive_izhikevich_network_step_(*args)
