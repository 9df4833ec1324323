"""Heterogeneous Izhikevich spiking reservoirs (torch and Brian2 backends) and their readouts.

Network: ``make_reservoir`` -> (``ReservoirParams``, ``ReservoirState``); ``reservoir_step``
(one pure step) and ``simulate`` (T steps, in-place fast path); ``SimulationDiverged``.
Brian2: ``neuro.reservoir.brian2_backend`` (imported on demand; brian2 itself loads lazily).
Readouts: ``ThreeFactorReadout`` (error-modulated, gated Hebbian) and ``FORCEReadout`` (RLS);
task: ``WhatWhenTask``; online training loop: ``run_session`` (``training.py``), metrics in
``neuro.reservoir.evaluation``. Follows Yamada & Chao, arXiv 2510.14382, and Nicola & Clopath,
arXiv 1609.02545.
"""
from neuro.reservoir.connectivity import EventTable, SynapseList, dense_weights
from neuro.reservoir.force import FORCEReadout, FORCEState
from neuro.reservoir.izhikevich import (
    IzhikevichParams,
    IzhikevichState,
    heterogeneous_izhikevich,
    izhikevich_step,
    resting_state,
)
from neuro.reservoir.network import (
    ReservoirParams,
    ReservoirState,
    SimulationDiverged,
    SimulationResult,
    SpikeRecord,
    initial_state,
    make_reservoir,
    reservoir_step,
    simulate,
    state_to,
)
from neuro.reservoir.task import Block, TaskSession, TrialArrays, WhatWhenTask
from neuro.reservoir.three_factor import ThreeFactorReadout, ThreeFactorState
from neuro.reservoir.training import (
    Learner,
    ReadoutDiverged,
    SessionRecord,
    readout_features,
    run_session,
)

__all__ = [
    "Block", "EventTable", "FORCEReadout", "FORCEState", "IzhikevichParams", "IzhikevichState", "Learner",
    "ReadoutDiverged", "ReservoirParams", "ReservoirState", "SessionRecord", "SimulationDiverged", "SimulationResult",
    "SpikeRecord", "SynapseList", "TaskSession", "ThreeFactorReadout", "ThreeFactorState", "TrialArrays",
    "WhatWhenTask", "dense_weights", "heterogeneous_izhikevich", "initial_state", "izhikevich_step",
    "make_reservoir", "readout_features", "reservoir_step", "resting_state", "run_session", "simulate",
    "state_to",
]
