"""Argument checks shared by the brain-side packages (``neuro.*``), in one wording.

A TypeError for a value of the wrong kind, a ValueError for a bad value of the right kind;
the message names the argument, shows the value and says what is allowed. (``bridges``
keeps its own in ``bridges/_validation.py``: it does not import ``neuro``.)
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch


def check_int(name: str, value, minimum: int = 1) -> int:
    """An integer (numpy integers too; bools, floats and strings are a TypeError) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(name: str, value, low=None, high=None, *, low_open: bool = False,
               allow_inf: bool = False) -> float:
    """A real number (not bool) in [low, high] ((low, high] with low_open); NaN never passes,
    +-inf only with allow_inf."""
    left = "(-inf" if low is None else f"{'(' if low_open else '['}{low}"
    right = f"{high}]" if high is not None else ("inf]" if allow_inf else "inf)")
    interval = f"{left}, {right}"
    allowed = f"a {'' if allow_inf else 'finite '}real number in {interval}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    value = float(value)
    if (math.isnan(value) or (math.isinf(value) and not allow_inf)
            or (low is not None and (value < low or (low_open and value == low)))
            or (high is not None and value > high)):
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return value


def check_flag(name: str, value) -> bool:
    """A bool (numpy bools too); anything else, e.g. the string "no", which would count as
    True, is a TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_device(name: str, device) -> torch.device:
    """A torch.device or a device string ("cpu", "cuda:0", ...) as a torch.device; a CUDA
    device where torch has none is a ValueError (torch's own error is an AssertionError from
    deep inside the first allocation)."""
    try:
        checked = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        error = ValueError if isinstance(device, str) else TypeError
        raise error(f"{name} must be a torch.device or a device string such as 'cpu' or "
                    f"'cuda:0', got {device!r}") from None
    if checked.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={device!r}, but torch sees no CUDA device here "
                         "(torch.cuda.is_available() is False); use 'cpu'")
    return checked
