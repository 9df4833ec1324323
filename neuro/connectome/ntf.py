"""Non-negative CP decomposition (NTF) by HALS or multiplicative updates, with masks.

Model: X ~ X_hat = sum_r w_r a_0r o a_1r o ... o a_{N-1}r with every A_n >= 0, fitted by
minimising ||M * (X - X_hat)||_F^2 (M = 1 observed, 0 missing; no mask: M = 1).

HALS (Cichocki & Phan 2009; Gillis & Glineur 2012, arXiv 1107.5194): for each mode n in
turn, with U = MTTKRP_n (I_n, R) and H = Hadamard_{m != n} A_m^T A_m (R, R), `inner_iterations`
sweeps of exact column-wise minimisation

    a_nk <- max(0, (U[:, k] - A_n H[:, k] + H[k, k] a_nk) / H[k, k]),

stopping a mode early when a sweep's squared change falls below `inner_tol` times the first
sweep's (the schedule of tensorly's `non_negative_parafac_hals`, so that both give the same
iterates from the same initialization).
MU (Lee & Seung 2001; tensorly's `non_negative_parafac`): A_n <- A_n * max(U, eps) / max(A_n H, eps).

Each MTTKRP comes from a partial Khatri-Rao GEMM on a reshaped view of the tensor
(`cp_ops`), never the full Khatri-Rao product; the relative error
||X - X_hat|| / ||X|| comes from Gram matrices: ||X||^2 + ||X_hat||^2 - 2 <U_last, A_last>.

Masks (our choice of method, EM imputation as in Tomasi & Bro 2005): missing entries are
replaced by the current model, Z = M * X + (1 - M) * X_hat, and one unmasked iteration is run
on Z. ||M * (X - X_hat)||^2 <= ||Z - X_hat_new||^2 <= ||Z - X_hat_old||^2, so the masked error
never increases under HALS, and the values at missing entries never enter the fit. Only the
rows of the (P_left, P_right) view that hold missing entries are rebuilt (one GEMM of partial
Khatri-Rao rows per chunk of ~1M entries) and only the missing entries are written, and the masked error
||Z - X_hat||^2 = ||M X||^2 + ||(1 - M) X_hat||^2 + ||X_hat||^2 - 2 <Z, X_hat> reuses the GEMM that
starts the next iteration, so a masked iteration costs one extra pass over the tensor.
A factor row i of mode n whose slice holds no observed entry is not identified by the masked
objective; it is returned as 0 (our choice; X_hat at observed entries is unchanged).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from neuro.connectome._checks import (
    Seed,
    as_real_array,
    check_choice,
    check_device,
    check_flag,
    check_positive_int,
    check_real,
    check_real_dtype,
    check_sequence,
    numpy_to_torch,
    resolve_dtype,
    torch_generator,
)
from neuro.connectome.cp_ops import (
    choose_split,
    contract_group,
    cp_norm_squared,
    normalize_and_sort,
    partial_khatri_rao,
)

__all__ = ["METHODS", "NTFResult", "ntf", "prepare_tensor"]

METHODS = ("hals", "mu")

# Extrapolation constants of Ang & Gillis 2019 (arXiv 1805.06604): initial step, growth on
# success, growth of the step's ceiling, shrink on failure.
_EXTRAPOLATION = {"beta": 0.5, "grow": 1.05, "grow_max": 1.01, "shrink": 1.5}
_IMPUTE_CHUNK = 1 << 20  # entries imputed per GEMM block (bounds the extra memory)


class NTFResult(NamedTuple):
    """weights (R,) sorted decreasing; factors[n] (I_n, R) with unit-norm columns;
    error_history (iterations + 1,) float64 on CPU: relative error of the initialization,
    then after each iteration (observed entries only when masked); iterations run;
    converged: the error changed by less than `tol` in the last iteration. The error comes
    from ||X||^2 + ||X_hat||^2 - 2 <X, X_hat>, which cancels near a perfect fit: its absolute
    resolution is ~sqrt(eps) of the dtype (~3e-4 in float32, ~1e-8 in float64), so fit in
    float64 to read errors below ~1e-3 or to use a `tol` near that resolution."""

    weights: torch.Tensor
    factors: tuple[torch.Tensor, ...]
    error_history: torch.Tensor
    iterations: int
    converged: bool
    method: str


def _all_finite(tensor: torch.Tensor) -> bool:
    """Finiteness in chunks: torch.isfinite on the whole tensor allocates ~1.4x its size."""
    flat = tensor.reshape(-1)
    return all(bool(torch.isfinite(chunk).all()) for chunk in flat.split(_IMPUTE_CHUNK))


def prepare_tensor(tensor, mask=None, dtype=None, device=None):
    """Validate and convert `tensor` (numpy or torch, N >= 2 modes, non-negative and finite
    where observed) and `mask` (same shape, bool or 0/1) to torch. Returns (tensor, mask);
    with a mask the tensor is a new one holding 0 at the missing entries."""
    if not isinstance(tensor, (np.ndarray, torch.Tensor)):
        raise TypeError(f"tensor must be a torch.Tensor or numpy.ndarray, got {type(tensor)}")
    check_real_dtype("tensor", tensor)
    if isinstance(tensor, np.ndarray):
        tensor = numpy_to_torch(tensor)
    tensor = tensor.detach()  # a fit is not differentiable: no graph through its iterations
    if tensor.dim() < 2:
        raise ValueError(f"tensor must have at least 2 modes, got shape {tuple(tensor.shape)}")
    if min(tensor.shape) < 1:
        raise ValueError(f"tensor has an empty mode: shape {tuple(tensor.shape)}")
    dtype = resolve_dtype(dtype, tensor.dtype)
    device = tensor.device if device is None else check_device("device", device)
    tensor = tensor.to(device=device, dtype=dtype)
    if mask is not None:
        if not isinstance(mask, (np.ndarray, torch.Tensor)):
            raise TypeError(f"mask must be a torch.Tensor or numpy.ndarray, got {type(mask)}")
        check_real_dtype("mask", mask)
        if isinstance(mask, np.ndarray):
            mask = numpy_to_torch(mask)
        if tuple(mask.shape) != tuple(tensor.shape):
            raise ValueError(
                f"mask shape {tuple(mask.shape)} must equal tensor shape {tuple(tensor.shape)}"
            )
        if mask.dtype != torch.bool:
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise ValueError("mask must be boolean or contain only 0 and 1")
            mask = mask != 0
        mask = mask.to(device)
        if not bool(mask.any()):
            raise ValueError("mask has no observed entry (all False): there is nothing to fit")
        # Owned copy with zeros at missing entries (whatever they held, NaN included).
        tensor = torch.where(mask, tensor, torch.zeros((), dtype=dtype, device=device))
    if not _all_finite(tensor):
        where = "observed entries" if mask is not None else "tensor (pass a mask to skip them)"
        raise ValueError(f"tensor has NaN or inf in the {where}")
    minimum = float(tensor.min())
    if minimum < 0:
        raise ValueError(f"tensor must be non-negative; minimum observed entry is {minimum}")
    return tensor, mask


def _initial_factors(shape, rank, init, generator, dtype, device, method):
    if isinstance(init, str):
        if init != "random":
            raise ValueError("init must be 'random' or a list of (I_n, R) factor matrices, got "
                             f"{init!r}")
        return [
            torch.rand(size, rank, generator=generator, dtype=torch.float64).to(dtype=dtype,
                                                                                device=device)
            for size in shape
        ]
    if not isinstance(init, (list, tuple)):
        raise TypeError("init must be 'random' or a list of (I_n, R) factor matrices, got "
                        f"{type(init).__name__}")
    if len(init) != len(shape):
        raise ValueError(f"init must hold {len(shape)} factors, got {len(init)}")
    factors = []
    for mode, factor in enumerate(init):
        if not isinstance(factor, torch.Tensor):
            check_sequence(f"init[{mode}]", factor, "an (I_n, R) array")
            factor = as_real_array(f"init[{mode}]", factor)
        check_real_dtype(f"init[{mode}]", factor)
        if isinstance(factor, np.ndarray):
            factor = numpy_to_torch(factor)
        factor = factor.to(dtype=dtype, device=device).clone()
        if tuple(factor.shape) != (shape[mode], rank):
            raise ValueError(
                f"init[{mode}] must have shape {(shape[mode], rank)}, got {tuple(factor.shape)}"
            )
        if bool((factor < 0).any()) or not bool(torch.isfinite(factor).all()):
            raise ValueError(f"init[{mode}] must be finite and non-negative")
        factors.append(factor)
    _check_no_dead_component(factors, method)
    return factors


def _check_no_dead_component(factors, method: str) -> None:
    """ValueError for a component the updates can never make non-zero. A component k whose
    column is zero in two modes is zero in every mode's Hadamard product of the others'
    Gram matrices (H[k, k] = 0), so HALS never updates it; multiplicative updates never
    change a zero entry, so under "mu" one zero column suffices."""
    zero = torch.stack([~(factor != 0).any(0) for factor in factors])  # (modes, R)
    dead = zero.sum(0) >= (1 if method == "mu" else 2)
    if bool(dead.any()):
        k = int(dead.nonzero()[0])
        modes = zero[:, k].nonzero().view(-1).tolist()
        raise ValueError(f"init: component {k} is all zero in modes {modes}; {method!r} can never "
                         "make it non-zero (the fit would silently keep a dead component): give "
                         "it positive entries")


def _hals_update(factor_t, mttkrp_t, hadamard, sweeps, inner_tol):
    """In-place HALS sweeps on factor_t = A_n^T (R, I_n) given U^T (R, I_n) and H (R, R):
    row k <- max(0, row k + (U^T[k] - H[k] @ A_n^T) / H[k, k]), the same update as tensorly's
    hals_nnls written with fewer tensor operations (rounding differs in the last bits)."""
    rank = factor_t.shape[0]
    diagonal = hadamard.diagonal().tolist()
    active = [(k, 1.0 / diagonal[k]) for k in range(rank) if diagonal[k] != 0]
    first_change = None
    columns = factor_t.t()
    for sweep in range(sweeps):
        # Each row changes once per sweep, so tensorly's per-row sum of squared changes is
        # the squared change of the whole matrix over the sweep.
        before = factor_t.clone()
        for k, inverse in active:
            residual = torch.addmv(mttkrp_t[k], columns, hadamard[k], alpha=-1.0)
            factor_t[k].add_(residual, alpha=inverse).clamp_(min=0)
        before.sub_(factor_t)
        change_value = float(torch.dot(before.view(-1), before.view(-1)))
        if sweep == 0:
            first_change = change_value
        if change_value < inner_tol * first_change:
            break


def _mu_update(factor, mttkrp, hadamard, epsilon):
    numerator = torch.clamp(mttkrp, min=epsilon)
    denominator = torch.clamp(factor @ hadamard, min=epsilon)
    return factor * numerator / denominator


def ntf(
    tensor,
    rank: int,
    *,
    method: str = "hals",
    mask=None,
    init="random",
    n_iter_max: int = 200,
    tol: float = 1e-8,
    inner_iterations: int = 5,
    inner_tol: float = 1e-8,
    seed: Seed = 0,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    callback: Callable[[int, tuple[torch.Tensor, ...], float], None] | None = None,
    extrapolate: bool = False,
) -> NTFResult:
    """Non-negative CP decomposition of an N-way tensor (see the module docstring).

    tensor: (I_0, ..., I_{N-1}) non-negative, numpy or torch (its device is kept unless
    `device` is given; float32/float64, other dtypes become float64). mask: same shape,
    True/1 = observed (missing entries may hold anything, NaN included). init: "random"
    (uniform [0, 1) draws from `seed`, rescaled so ||X_hat|| = ||X||) or a list of (I_n, R)
    non-negative factors used as given (weights 1; what tensorly receives as
    `init=CPTensor((ones, factors))`). Stops after `n_iter_max` iterations or when the
    relative error changes by less than `tol` (checked from the second iteration on, as
    tensorly's `abs_rec_error`). ValueError when ||X||^2 overflows the dtype or is below
    tiny / eps of the dtype (~1e-292 in float64, ~1e-31 in float32): rescale such a tensor.
    callback(iteration, factors, error) runs after each
    iteration with the unnormalised factors (do not modify them).

    extrapolate=True (off by default; then the iterates are no longer tensorly's): after each
    iteration try Y = max(0, A_new + beta (A_new - A_start)) for all modes at once and keep it
    when its error is lower (its GEMM pass is the next iteration's first, so an accepted step
    costs no extra pass); beta grows on success and shrinks on failure (heuristic
    extrapolation with restarts, Ang & Gillis 2019, arXiv 1805.06604). The error history stays
    non-increasing under HALS.
    """
    check_choice("method", method, METHODS)
    rank = check_positive_int("rank", rank)
    n_iter_max = check_positive_int("n_iter_max", n_iter_max, minimum=0)
    inner_iterations = check_positive_int("inner_iterations", inner_iterations)
    tol = check_real("tol", tol, 0)
    inner_tol = check_real("inner_tol", inner_tol, 0)
    extrapolate = check_flag("extrapolate", extrapolate)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable(iteration, factors, error) or None, got "
                        f"{callback!r}")
    tensor, mask = prepare_tensor(tensor, mask, dtype, device)
    dtype, device = tensor.dtype, tensor.device
    shape = tuple(int(size) for size in tensor.shape)
    num_modes = len(shape)

    work = tensor.contiguous()  # with a mask: an owned copy, imputed in place below
    flat = work.reshape(-1)
    norm_squared = float(torch.dot(flat, flat))
    if not math.isfinite(norm_squared):
        raise ValueError(f"tensor is too large for {dtype}: its squared norm overflows; rescale "
                         "it (the factors scale with it)")
    finfo = torch.finfo(dtype)
    if 0.0 < norm_squared < finfo.tiny / finfo.eps or (norm_squared == 0.0
                                                        and bool((flat != 0).any())):
        # eps * ||X||^2 (the resolution of the Gram-matrix error) would be subnormal, or the
        # squared norm underflows to 0 and a non-zero tensor would be fitted as all zero.
        raise ValueError(f"tensor is too small for {dtype}: its squared norm "
                         f"{norm_squared:.3g} is below {finfo.tiny / finfo.eps:.3g} (the "
                         "error would be lost to underflow); rescale it (the factors scale "
                         "with it)")
    tensor_norm = norm_squared ** 0.5

    generator = torch_generator(seed)
    factors = _initial_factors(shape, rank, init, generator, dtype, device, method)
    if tensor_norm == 0.0:
        warnings.warn("ntf: the tensor is all zero (where observed); returning zero factors",
                      RuntimeWarning, stacklevel=2)
        zeros = tuple(torch.zeros(size, rank, dtype=dtype, device=device) for size in shape)
        return NTFResult(torch.zeros(rank, dtype=dtype, device=device), zeros,
                         torch.zeros(1, dtype=torch.float64), 0, True, method)
    weights = torch.ones(rank, dtype=dtype, device=device)
    grams = [factor.t() @ factor for factor in factors]
    if isinstance(init, str):  # "random" (anything else was rejected above)
        model_norm = float(cp_norm_squared(weights, grams)) ** 0.5
        if model_norm > 0:
            scale = (tensor_norm / model_norm) ** (1.0 / num_modes)
            factors = [factor * scale for factor in factors]
            grams = [factor.t() @ factor for factor in factors]

    split = choose_split(shape)
    left_size = int(np.prod(shape[:split]))
    matrix = work.view(left_size, -1)
    epsilon = torch.finfo(dtype).eps
    right_size = matrix.shape[1]
    chunks = []  # (rows of the (P_left, P_right) view, flat index of their missing entries, local)
    if mask is not None:
        missing = torch.nonzero(~mask.reshape(-1)).squeeze(1)  # sorted flat indices
        missing_row = missing // right_size
        rows_with_missing = torch.unique_consecutive(missing_row)
        chunk_rows = max(1, _IMPUTE_CHUNK // right_size)
        for start in range(0, rows_with_missing.numel(), chunk_rows):
            rows = rows_with_missing[start:start + chunk_rows]
            first = int(torch.searchsorted(missing_row, rows[0]))
            last = int(torch.searchsorted(missing_row, rows[-1], right=True))
            local = (torch.searchsorted(rows, missing_row[first:last]) * right_size
                     + missing[first:last] % right_size)
            chunks.append((rows, missing[first:last], local.to(torch.int32)))
        del missing, missing_row, rows_with_missing

    def impute_missing() -> float:
        # Z[missing] = X_hat[missing]: X_hat of the rows holding missing entries from one GEMM
        # of partial Khatri-Rao products per chunk, then a gather/scatter of the missing
        # entries only. Returns sum over missing entries of X_hat^2.
        left_product = partial_khatri_rao(factors[:split])
        right_product_t = partial_khatri_rao(factors[split:]).t()
        flat_work = work.view(-1)
        total = 0.0
        for rows, flat_index, local in chunks:
            block = left_product.index_select(0, rows) @ right_product_t
            values = block.view(-1).index_select(0, local)
            flat_work.index_copy_(0, flat_index, values)
            total += float(torch.dot(values, values))
        return total

    def right_partial_and_error():
        # T_right = Z @ KR(right) (the first pass of the next iteration) and the error of the
        # current factors: ||Z||^2 + ||X_hat||^2 - 2 <T_right, KR(left)> (Z = X when unmasked).
        squared = norm_squared + (impute_missing() if mask is not None else 0.0)
        partial = matrix @ partial_khatri_rao(factors[split:])
        inner = float(torch.sum(partial * partial_khatri_rao(factors[:split])))
        model = float(cp_norm_squared(weights, grams))
        return partial, abs(squared + model - 2.0 * inner) ** 0.5 / tensor_norm

    def gram_error(mttkrp_last: torch.Tensor) -> float:
        inner = float(torch.sum(mttkrp_last * factors[-1]))
        model = float(cp_norm_squared(weights, grams))
        return abs(norm_squared + model - 2.0 * inner) ** 0.5 / tensor_norm

    partial, initial_error = right_partial_and_error()
    history = [initial_error]

    def update_mode(mode: int, mttkrp: torch.Tensor) -> None:
        hadamard = torch.ones(rank, rank, dtype=dtype, device=device)
        for other in range(num_modes):
            if other != mode:
                hadamard = hadamard * grams[other]
        if method == "hals":
            factor_t = factors[mode].t().contiguous()
            _hals_update(factor_t, mttkrp.t().contiguous(), hadamard, inner_iterations, inner_tol)
            factors[mode] = factor_t.t().contiguous()
        else:
            factors[mode] = _mu_update(factors[mode], mttkrp, hadamard, epsilon)
        grams[mode] = factors[mode].t() @ factors[mode]

    converged = False
    iterations = 0
    beta, beta_max = _EXTRAPOLATION["beta"], 1.0
    for iteration in range(1, n_iter_max + 1):
        start_factors = [factor.clone() for factor in factors] if extrapolate else None
        # Left group: the right modes are contracted once (their factors do not change
        # meanwhile); `partial` was computed after the previous iteration.
        if partial is None:
            partial = matrix @ partial_khatri_rao(factors[split:])
        partial = partial.view(*shape[:split], rank)
        for position in range(split):
            mttkrp = contract_group(partial, factors[:split], position, rank_axis=-1)
            update_mode(position, mttkrp)
        # Right group: the (updated) left modes are contracted once.
        partial = (partial_khatri_rao(factors[:split]).t() @ matrix).view(rank, *shape[split:])
        for position in range(num_modes - split):
            mttkrp = contract_group(partial, factors[split:], position, rank_axis=0)
            update_mode(split + position, mttkrp)
        if mask is not None:
            partial, error = right_partial_and_error()
        else:
            partial, error = None, gram_error(mttkrp)
        if extrapolate:
            updated = [factor.clone() for factor in factors]
            for mode in range(num_modes):
                step = updated[mode] - start_factors[mode]
                factors[mode] = torch.clamp(updated[mode] + beta * step, min=0)
                grams[mode] = factors[mode].t() @ factors[mode]
            candidate_partial, candidate_error = right_partial_and_error()
            if candidate_error < error:  # accept: the pass is the next iteration's first
                partial, error = candidate_partial, candidate_error
                beta = min(beta_max, beta * _EXTRAPOLATION["grow"])
                beta_max = min(1.0, beta_max * _EXTRAPOLATION["grow_max"])
            else:  # reject: back to the plain update, smaller step from now on
                beta_max, beta = beta, beta / _EXTRAPOLATION["shrink"]
                for mode in range(num_modes):
                    factors[mode] = updated[mode]
                    grams[mode] = updated[mode].t() @ updated[mode]
                partial = right_partial_and_error()[0] if mask is not None else None
        history.append(error)
        iterations = iteration
        if callback is not None:
            callback(iteration, tuple(factors), error)
        if iteration >= 2 and abs(history[-2] - history[-1]) < tol:
            converged = True
            break

    if mask is not None:
        # A row of A_n whose slice X[..., i_n, ...] holds no observed entry only ever meets
        # missing entries: the masked objective does not depend on it, so the updates keep
        # whatever the initialization gave it (a seed-dependent value). Our choice: return it
        # as 0, which leaves X_hat unchanged at every observed entry.
        for mode in range(num_modes):
            observed = mask
            for axis in range(num_modes - 1, -1, -1):
                if axis != mode:
                    observed = observed.any(dim=axis)
            factors[mode] = factors[mode] * observed[:, None].to(dtype)
    weights, sorted_factors = normalize_and_sort(weights, factors)
    return NTFResult(weights, tuple(sorted_factors), torch.tensor(history, dtype=torch.float64),
                     iterations, converged, method)
