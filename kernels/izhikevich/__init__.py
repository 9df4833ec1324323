"""Izhikevich reservoir step (see ``naive.py`` for the equations, layout and signatures).

Plain re-export of the torch reference for now; a CPU/Triton dispatch with the same
public names replaces it later.
"""
from kernels.izhikevich.naive import (
    izhikevich_network_step_,
    izhikevich_neuron_update_,
    propagate_spikes_,
)

__all__ = ["izhikevich_network_step_", "izhikevich_neuron_update_", "propagate_spikes_"]
