"""The reservoir network API in one place (see the modules for the equations).

``make_reservoir`` (build.py) -> (ReservoirParams, ReservoirState);
``reservoir_step`` (step.py): one pure step, for loops that interleave readouts;
``simulate`` (simulation.py): T steps on the in-place fast path (``engine="compiled"``:
the whole loop in C, opt-in, ``simulation_compiled.py``);
``SimulationDiverged``: raised on a non-finite membrane value (step, batch index, neuron).
"""
from neuro.reservoir.build import DEFAULT_WEIGHT_SCALE, make_reservoir
from neuro.reservoir.simulation import RECORD_KINDS, SimulationResult, SpikeRecord, simulate
from neuro.reservoir.step import (
    SYNAPSE_KINDS,
    ReservoirParams,
    ReservoirState,
    SimulationDiverged,
    draw_noise,
    external_drive,
    initial_state,
    reservoir_step,
    state_to,
)

__all__ = [
    "DEFAULT_WEIGHT_SCALE", "RECORD_KINDS", "SYNAPSE_KINDS", "ReservoirParams", "ReservoirState",
    "SimulationDiverged", "SimulationResult", "SpikeRecord", "draw_noise", "external_drive",
    "initial_state", "make_reservoir", "reservoir_step", "simulate", "state_to",
]
