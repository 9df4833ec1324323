"""Argument checks shared by the public API of ``bridges`` (one place, one wording).

Every check raises ``TypeError`` for an argument of the wrong Python type and
``ValueError`` for a tensor whose shape, dtype or values are not allowed; the message
names the argument, what it got and what is allowed. Counts (:func:`check_int`) raise
``ValueError`` for any bad value, floats and bools included, as ``bridges`` always has.
Only :func:`check_log_decay`, :func:`check_counts` and (on CPU only) :func:`check_tokens`
read tensor values (one host sync each); every other check is free (Python, shapes, dtypes).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, value: object, *, ndim: int | None = None, layout: str,
                 min_ndim: int = 0) -> Tensor:
    """``value`` must be a floating torch tensor of rank ``ndim`` (or of rank >= ``min_ndim``
    when ``ndim`` is None); ``layout`` names the axes."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, "
                        f"got {type(value).__name__}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have rank {ndim} ({layout}), got shape {tuple(value.shape)}")
    if value.dim() < min_ndim:
        raise ValueError(f"{name} must have rank >= {min_ndim} ({layout}), got shape "
                         f"{tuple(value.shape)}")
    if value.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must have a floating dtype (float16, bfloat16, float32, "
                         f"float64), got {value.dtype}")
    return value


def check_qkv(q: Tensor, k: Tensor, v: Tensor) -> tuple[int, int, int, int, int]:
    """Check the [B, T, H, D] triple; return ``(batch, length, heads, key_dim, value_dim)``."""
    check_tensor("q", q, ndim=4, layout="[B, T, H, K]")
    check_tensor("k", k, ndim=4, layout="[B, T, H, K]")
    check_tensor("v", v, ndim=4, layout="[B, T, H, V]")
    if k.shape != q.shape:
        raise ValueError(f"k must have q's shape {tuple(q.shape)} [B, T, H, K], got {tuple(k.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must have shape [B, T, H, V] with [B, T, H] = {tuple(q.shape[:3])}, "
                         f"got {tuple(v.shape)}")
    check_same_dtype(q=q, k=k, v=v)
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    batch, length, heads, key_dim = q.shape
    return batch, length, heads, key_dim, v.shape[-1]


def check_per_step(name: str, value: object, q: Tensor, *, per_key: bool) -> Tensor:
    """A per-step gate: [B, T, H] (``per_key=False``) or [B, T, H, K] (``per_key=True``)."""
    layout = "[B, T, H, K]" if per_key else "[B, T, H]"
    check_tensor(name, value, ndim=4 if per_key else 3, layout=layout)
    expected = tuple(q.shape) if per_key else tuple(q.shape[:3])
    if tuple(value.shape) != expected:
        raise ValueError(f"{name} must have shape {layout} = {expected}, got {tuple(value.shape)}")
    if value.device != q.device:
        raise ValueError(f"{name} must be on q's device {q.device}, got {value.device}")
    return value


def check_log_decay(name: str, value: Tensor) -> Tensor:
    """A log decay must be <= 0 (decay factor in [0, 1]) and not NaN; one host sync when valid.

    -inf (factor 0: a full reset) is allowed: the step-by-step forms take it as it is, the
    chunked forms clamp g first (``kernels.gla.naive.log_decay_floor``), so no
    exp(-inf - -inf) = NaN arises.
    """
    if bool((value <= 0).all()):
        return value
    if bool(torch.isnan(value).any()):
        raise ValueError(f"{name} (log decay) contains NaN")
    raise ValueError(f"{name} is a log decay and must be <= 0 (decay factor exp({name}) in "
                     f"(0, 1]), got max {value.max().item():.4g}")


def check_state(name: str, value: object, expected: tuple[int, ...], layout: str,
                like: Tensor, like_name: str = "q") -> Tensor:
    """A floating tensor of exactly the shape ``expected``, on ``like``'s device."""
    check_tensor(name, value, ndim=len(expected), layout=layout)
    if tuple(value.shape) != expected:
        raise ValueError(f"{name} must have shape {layout} = {expected}, got {tuple(value.shape)}")
    if value.device != like.device:
        raise ValueError(f"{name} must be on {like_name}'s device {like.device}, "
                         f"got {value.device}")
    return value


def check_chunk_size(chunk_size: object) -> int:
    return check_int("chunk_size", chunk_size)


def resolve_scale(scale: float | None, key_dim: int) -> float:
    """``scale`` defaults to ``key_dim ** -0.5`` (fla's and Vaswani et al.'s choice)."""
    if scale is None:
        if key_dim < 1:
            raise ValueError(f"q and k have K = {key_dim} features; the default scale K ** -0.5 "
                             "needs K >= 1 (or pass scale explicitly)")
        return key_dim ** -0.5
    return check_number("scale", scale, what="a float or None")


def compute_dtype(x: Tensor) -> torch.dtype:
    """References compute in float32, or float64 when given float64 (gradcheck, oracles)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def check_dtype(name: str, dtype: object, *, optional: bool = False) -> torch.dtype | None:
    """A ``dtype=`` argument must be a floating torch dtype (or None when ``optional``)."""
    if (dtype is None and optional) or dtype in FLOAT_DTYPES:
        return dtype
    error = ValueError if isinstance(dtype, torch.dtype) else TypeError
    raise error(f"{name} must be {'None or ' if optional else ''}a floating dtype "
                     f"(float16, bfloat16, float32, float64), got {dtype!r}")


def check_device(name: str, device: object, *, optional: bool = False) -> object:
    """A ``device=`` argument must be a torch.device or a device string (or None when
    ``optional``); returned unchanged."""
    if device is None and optional:
        return device
    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        error = ValueError if isinstance(device, str) else TypeError
        raise error(f"{name} must be a torch.device or a string such as 'cpu' or 'cuda:0'"
                         f"{' (or None)' if optional else ''}, got {device!r}") from None
    return device


def check_same_dtype(**tensors: Tensor) -> None:
    """The named tensors (checked already) must share one dtype."""
    dtypes = [t.dtype for t in tensors.values()]
    if len(set(dtypes)) > 1:
        raise ValueError(f"{', '.join(tensors)} must share one dtype, got "
                         f"{', '.join(str(d) for d in dtypes)}")


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """A count: an int (numpy ints too, bools refused) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        allowed = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def _interval(low: float | None, high: float | None, low_open: bool) -> str:
    if low is None and high is None:
        return ""
    left = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
    right = "inf)" if high is None else f"{high:g}]"
    return f" in {left}, {right}"


def check_number(name: str, value: object, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 what: str = "a real number") -> float:
    """A finite real number (numpy scalars too, bools refused) in [low, high], or in
    (low, high] with ``low_open``; either bound may be None. ``what`` words the type error."""
    bounds = _interval(low, high, low_open)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {what}{bounds}, got {type(value).__name__}")
    number = float(value)
    inside = math.isfinite(number)
    if low is not None:
        inside = inside and (number > low if low_open else number >= low)
    if high is not None:
        inside = inside and number <= high
    if not inside:
        raise ValueError(f"{name} must be a finite number{bounds}, got {value!r}")
    return number


def check_flag(name: str, value: object) -> bool:
    """A switch must be a bool (a string such as "no" would silently count as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value: object, allowed) -> object:
    """``value`` must be one of ``allowed`` (a tuple or the keys of a dict)."""
    try:
        known = value in allowed
    except TypeError:   # unhashable value looked up in a dict
        known = False
    if not known:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value


def check_features(name: str, x: object, *, features: int, dtype: torch.dtype) -> Tensor:
    """A model input x [B, T, features] whose dtype matches the model's parameters (not
    checked under autocast, which casts for itself)."""
    check_tensor(name, x, ndim=3, layout=f"[B, T, {features}]")
    if x.shape[-1] != features:
        raise ValueError(f"{name} must have shape [B, T, {features}], got {tuple(x.shape)}")
    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(f"{name} has dtype {x.dtype}, the model's parameters are {dtype} "
                         "(convert one of them)")
    return x


def check_tokens(name: str, tokens: object, *, vocab_size: int | None = None) -> Tensor:
    """Token ids [B, T] (int64 or int32). With ``vocab_size`` and a CPU tensor the ids must
    lie in [0, vocab_size) (on CUDA that check would cost a host sync, so it is left out)."""
    if not isinstance(tokens, Tensor):
        raise TypeError(f"{name} must be an integer tensor [B, T], got {type(tokens).__name__}")
    if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be an integer tensor [B, T] (int64 or int32), got "
                         f"{tokens.dtype} {tuple(tokens.shape)}")
    if vocab_size is not None and tokens.device.type == "cpu" and tokens.numel():
        low, high = (int(x) for x in torch.aminmax(tokens))
        if low < 0 or high >= vocab_size:
            raise ValueError(f"{name} must lie in [0, vocab_size={vocab_size}), got values in "
                             f"[{low}, {high}]")
    return tokens


def check_counts(name: str, counts: Tensor) -> Tensor:
    """Spike counts must be finite and >= 0 (one host sync)."""
    if counts.numel() and not bool(((counts >= 0) & torch.isfinite(counts)).all()):
        raise ValueError(f"{name} must be finite and non-negative (spike counts)")
    return counts


def numpy_rng(seed: object) -> np.random.Generator:
    """A numpy Generator from an int >= 0, a SeedSequence or a Generator (returned as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer, np.random.SeedSequence)):
        raise TypeError(f"seed must be an int >= 0, np.random.SeedSequence or "
                        f"np.random.Generator, got {type(seed).__name__}")
    if not isinstance(seed, np.random.SeedSequence) and seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed}")
    return np.random.default_rng(seed)


def torch_seed(seed) -> int:
    """An int in [0, 2**63) for torch's ``manual_seed`` from an int, a np.random.SeedSequence
    (its first generated 64-bit word, halved: the same sequence gives the same seed, as the
    sweeps' ``SeedSequence(root).spawn(n)`` children need), a numpy Generator or a torch
    Generator (both consumed, like any generator)."""
    if isinstance(seed, torch.Generator):  # consumed, like any generator (not its initial seed)
        return int(torch.randint(0, 2**62, (1,), generator=seed, device=seed.device))
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**63 - 1))
    if isinstance(seed, np.random.SeedSequence):
        return int(seed.generate_state(1, dtype=np.uint64)[0]) >> 1
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, np.random.SeedSequence, np.random.Generator or "
                        f"torch.Generator, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed={seed} is out of range; allowed: an int in [0, 2**63)")
    return int(seed)
