"""Randomness passed in as an argument: ``seed: int | np.random.Generator | torch.Generator``.

One rule for every brain-side module (DESIGN.md: no global seeding in the library):
- an int in [0, 2**63) seeds a fresh generator;
- a numpy Generator is used as is (numpy side) or consumed for one 63-bit seed (torch side);
- a torch Generator is used as is (torch side) or consumed for one seed (numpy side), so two
  calls with the same generator give different streams, as with any generator.
``None`` is rejected: a run must be reproducible from its arguments.
"""
from __future__ import annotations

import numpy as np
import torch

Seed = int | np.random.Generator | torch.Generator


def _type_error(seed) -> TypeError:
    return TypeError(f"seed={seed!r} has type {type(seed).__name__}; allowed: an int >= 0, "
                     "numpy.random.Generator, torch.Generator")


def int_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise _type_error(seed)
    if seed < 0 or seed >= 2**63:  # torch generators take 64-bit signed seeds
        raise ValueError(f"seed={seed} is out of range; allowed: an int in [0, 2**63)")
    return int(seed)


def numpy_generator(seed: Seed) -> np.random.Generator:
    """A numpy Generator from ``seed`` (module docstring)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=seed, device=seed.device)))
    return np.random.default_rng(int_seed(seed))


def torch_generator(seed: Seed, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch Generator on ``device`` from ``seed`` (module docstring); a given torch
    Generator must live on ``device``'s type."""
    device = torch.device(device)
    if isinstance(seed, torch.Generator):
        if seed.device.type != device.type:
            raise ValueError(
                f"seed is a torch.Generator on {seed.device.type!r} but device={str(device)!r}; "
                "pass a generator on the same device type or an int seed")
        return seed
    if isinstance(seed, np.random.Generator):
        value = int(seed.integers(0, 2**63 - 1))
    else:
        value = int_seed(seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(value)
    return generator
