"""Fused three-factor readout update (see ``naive.py`` for the equations and signature).

Plain re-export of the torch reference for now; a CPU/Triton dispatch with the same
public names replaces it later.
"""
from kernels.three_factor.naive import three_factor_step

__all__ = ["three_factor_step"]
