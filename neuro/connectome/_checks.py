"""Argument checks and seed handling shared by the connectome modules."""
from __future__ import annotations

import numpy as np
import torch

from neuro.seeding import Seed, numpy_generator, torch_generator  # noqa: F401 (re-exported)


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def resolve_dtype(dtype, fallback: torch.dtype) -> torch.dtype:
    if dtype is None:
        return fallback if fallback in (torch.float32, torch.float64) else torch.float64
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype
