"""Argument checks and seed handling shared by the connectome modules."""
from __future__ import annotations

import numpy as np
import torch

Seed = int | np.random.Generator | torch.Generator | None


def numpy_generator(seed: Seed) -> np.random.Generator:
    """A numpy Generator from an int, a numpy Generator (used as is) or a torch Generator
    (its initial seed). None is rejected: randomness must be passed in explicitly."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, torch.Generator):
        return np.random.default_rng(seed.initial_seed())
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        return np.random.default_rng(int(seed))
    raise TypeError(
        f"seed must be an int, a numpy.random.Generator or a torch.Generator, got {seed!r}"
    )


def torch_generator(seed: Seed) -> torch.Generator:
    """A CPU torch Generator: a torch Generator is used as is, an int seeds a new one, a
    numpy Generator supplies one 63-bit seed."""
    if isinstance(seed, torch.Generator):
        return seed
    rng = numpy_generator(seed)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(rng.integers(0, 2**63 - 1)))
    return generator


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
