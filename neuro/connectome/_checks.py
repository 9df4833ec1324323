"""Argument checks and seed handling shared by the connectome modules.

Each check raises TypeError (wrong kind of value) or ValueError (right kind, bad value) with a
message that names the argument, shows the value and says what is allowed.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from neuro.checks import check_device, check_flag, check_real  # noqa: F401 (re-exported)
from neuro.checks import check_int as check_positive_int  # noqa: F401 (re-exported)
from neuro.seeding import Seed, numpy_generator, torch_generator  # noqa: F401 (re-exported)

# Largest allowed sum of |entries| of a numpy input (traces, adjacency): squared sums of
# larger values overflow float64 (1e308) and turn into inf / NaN / 0 without any error.
MAX_ABS_SUM = 1e150


def check_seed(seed) -> None:
    """Validate `seed` (neuro.seeding rules) without drawing from a given generator."""
    if not isinstance(seed, (np.random.Generator, torch.Generator)):
        numpy_generator(seed)


def check_choice(name: str, value, allowed: tuple):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_sequence(name: str, value, allowed: str):
    """TypeError unless `value` is a list, tuple or array (a str does not count)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise TypeError(f"{name} must be {allowed}, got {shown} ({type(value).__name__})")
    return value


def numpy_to_torch(array: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy(array)``, sharing memory where torch can: a view with negative strides
    (``np.flip``, ``x[::-1]``) or a non-native byte order (``'>f8'`` read from a file), which
    torch.from_numpy refuses with its own ValueError, is copied first."""
    if not array.dtype.isnative or any(stride < 0 for stride in array.strides):
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    return torch.from_numpy(array)


def check_real_dtype(name: str, array) -> None:
    """TypeError unless `array` (numpy or torch) holds bool, integer or real floating values."""
    if isinstance(array, torch.Tensor):
        ok = not array.is_complex()
    else:
        ok = array.dtype.kind in "biuf"
    if not ok:
        raise TypeError(f"{name} must hold real numbers (bool, int or float), got dtype "
                        f"{array.dtype}")


def as_real_array(name: str, value, ndim: int | None = None) -> np.ndarray:
    """`value` (array-like or torch tensor on any device) as a float64 numpy array, after
    checking that it holds real numbers and, when given, has `ndim` dimensions."""
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array of real numbers, got {value!r}")
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists: numpy's message names no argument
        raise ValueError(f"{name} must be a rectangular array of real numbers (nested lists of "
                         "equal lengths), got a ragged sequence") from None
    check_real_dtype(name, array)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    return array.astype(np.float64, copy=False)


def check_values(name: str, array: np.ndarray, *, nonnegative: bool = False,
                 finite: bool = True) -> None:
    """Entries finite (unless finite=False: non-finite ones are skipped), >= 0 with
    nonnegative, and summing in absolute value to at most MAX_ABS_SUM."""
    is_finite = np.isfinite(array)
    if finite and not is_finite.all():
        raise ValueError(f"{name} has NaN or inf entries")
    values = array if finite else array[is_finite]
    if nonnegative and values.size and values.min() < 0:
        raise ValueError(f"{name} must be non-negative, minimum is {values.min()}")
    total = float(np.abs(values).sum())
    if total > MAX_ABS_SUM:
        raise ValueError(f"{name} is too large: its |entries| sum to {total:.3g}, above "
                         f"{MAX_ABS_SUM:g} (squared sums would overflow float64); rescale it")


def check_adjacency(adjacency) -> np.ndarray:
    """Symmetric, finite, non-negative (n, n) adjacency with n >= 1, as float64."""
    weights = as_real_array("adjacency", adjacency)
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1]:
        raise ValueError(f"adjacency must be square (n, n), got shape {weights.shape}")
    if weights.shape[0] < 1:
        raise ValueError("adjacency must have at least one node")
    check_values("adjacency", weights, nonnegative=True)
    # tolerance relative to the largest weight: a directed graph of small weights is no
    # more symmetric than the same graph scaled up
    scale = float(np.abs(weights).max(initial=0.0))
    # np.allclose(weights, weights.T, rtol=1e-5, atol=1e-8 * scale): for entries finite and
    # >= 0 (checked above) both |W_ij - W_ji| <= atol + rtol W_ji and its mirror, i.e.
    # |W_ij - W_ji| <= atol + rtol min(W_ij, W_ji), over the upper triangle a block of rows at
    # a time: no (n, n) temporaries (a 10k-node graph: ~8 s and several GB with np.allclose)
    atol, block = 1e-8 * scale, 256
    for start in range(0, weights.shape[0], block):
        upper = weights[start:start + block, start:]
        lower = weights[start:, start:start + block].T
        if not (np.abs(upper - lower) <= atol + 1e-5 * np.minimum(upper, lower)).all():
            raise ValueError("adjacency must be symmetric (an undirected graph)")
    return weights


def resolve_dtype(dtype, fallback: torch.dtype) -> torch.dtype:
    if dtype is None:
        return fallback if fallback in (torch.float32, torch.float64) else torch.float64
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype
