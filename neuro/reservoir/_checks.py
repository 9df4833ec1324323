"""Argument checks and seed handling shared by the reservoir modules (no model code)."""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from neuro.checks import check_flag, check_int, check_real  # noqa: F401 (re-exported)
from neuro.seeding import Seed, torch_generator  # noqa: F401 (re-exported)


def check_dt(dt_ms: float) -> float:
    """dt_ms must be a finite number in (0, 1] ms (the split-Euler scheme's range)."""
    return check_real("dt_ms", dt_ms, 0.0, 1.0, low_open=True)


def check_count(name: str, value, minimum: int = 0) -> int:
    """An int >= minimum (bools refused)."""
    return check_int(name, value, minimum)


def check_fraction(name: str, value, *, open_low: bool = False, open_high: bool = False) -> float:
    """A float in [0, 1] (optionally open at either end)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}={value!r} must be a float in [0, 1]")
    value = float(value)
    low_ok = value > 0.0 if open_low else value >= 0.0
    high_ok = value < 1.0 if open_high else value <= 1.0
    if not (math.isfinite(value) and low_ok and high_ok):
        low = "(0" if open_low else "[0"
        high = "1)" if open_high else "1]"
        raise ValueError(f"{name}={value!r} is outside the allowed range {low}, {high}")
    return value


def check_positive(name: str, value) -> float:
    """A finite real number > 0."""
    return check_real(name, value, 0.0, low_open=True)


def check_shape(name: str, tensor: torch.Tensor, expected: tuple) -> None:
    """``tensor.shape`` must equal ``expected``; None entries match any size."""
    shape = tuple(tensor.shape)
    ok = len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))
    if not ok:
        pretty = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
        raise ValueError(f"{name} has shape {list(shape)}; expected {pretty}")


def initial_readout_weights(batch_size: int, num_readouts: int, num_features: int,
                            weights, device, dtype) -> torch.Tensor:
    """Readout weights [B, M, D]: zeros, or a validated copy of ``weights`` on device/dtype."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    batch_size = int(batch_size)  # numpy integers too
    check_float_dtype("dtype", dtype)
    shape = (batch_size, num_readouts, num_features)
    if weights is None:
        return torch.zeros(shape, device=device, dtype=dtype)
    check_tensor("weights", weights)
    if tuple(weights.shape) != shape:
        raise ValueError(f"weights must have shape {shape}, got {tuple(weights.shape)}")
    return weights.to(device=device, dtype=dtype).clone()


def check_tensor(name: str, value, *, floating: bool = False, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A torch.Tensor, optionally of a floating dtype or exactly ``dtype`` (TypeError otherwise)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} has dtype {value.dtype}; allowed: a floating dtype")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{name} has dtype {value.dtype}; expected {dtype} (the model dtype)")
    return value


def check_real_finite(name: str, tensor: torch.Tensor) -> None:
    """A real-valued tensor (bool, integer or floating; complex is a TypeError) of finite
    values; a NaN or inf is a ValueError naming the first such entry. Reads the values (one
    pass, one host synchronisation on a GPU)."""
    if tensor.is_complex():
        raise TypeError(f"{name} has dtype {tensor.dtype}; allowed: a real dtype (floating, integer or bool)")
    if not tensor.is_floating_point():
        return  # integers and bools are finite
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        index = [int(i) for i in bad.nonzero()[0]]
        raise ValueError(f"{name} has a non-finite value ({float(tensor[tuple(index)])}) at index {index} "
                         f"of shape {list(tensor.shape)}; allowed: finite values")


def check_float_dtype(name: str, dtype) -> torch.dtype:
    """A floating torch.dtype (e.g. torch.float32, torch.float64)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name}={dtype!r}; allowed: a floating torch.dtype such as torch.float32, torch.float64")
    return dtype


def check_index(name: str, value, size: int) -> int:
    """An int in [0, size) (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r} must be an int in [0, {size})")
    if not 0 <= value < size:
        raise ValueError(f"{name}={value} is outside the allowed range [0, {size})")
    return int(value)
