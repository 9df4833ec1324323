"""Seeds as arguments: int | np.random.Generator | torch.Generator -> a numpy Generator."""

from __future__ import annotations

import numpy as np
import torch


def numpy_generator(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=seed)))
    if seed is None or isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be an int, np.random.Generator or torch.Generator, got {type(seed).__name__}")
