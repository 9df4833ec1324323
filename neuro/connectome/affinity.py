"""Affinity tensors: sliding-window pairwise affinities of calcium traces from several animals.

For animal a, neurons i, j and window w (samples t in [w * step, w * step + window)), with
z the window's z-scored trace (population standard deviation):

    rho_ij(w, a) = (1 / window) sum_t z_i(t) z_j(t)

    measure="abs_correlation":      A = |rho|
    measure="positive_correlation": A = max(rho, 0)
    measure="spearman":             A = |Spearman rho| (rho of the within-window ranks; tied
                                    values share their average rank). This non-linear measure is OUR
                                    choice: the affinity of Dyballa et al. (arXiv 2402.14102)
                                    is not public.

A window in which a neuron's trace is constant has affinity 0 with every partner (one
warning per call, never NaN). Layouts: "pairs" (P, W, A) with P = N (N - 1) / 2 pairs in
row-major upper-triangle order (0,1), (0,2), ..., (0,N-1), (1,2), ..., as in the paper; or
"square" (N, N, W, A), symmetric, the diagonal masked. The mask is False where a neuron is
missing (all-NaN row, a name absent in that animal) or its window holds a non-finite sample,
and for windows past the end of a shorter recording.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from neuro.connectome._checks import (
    as_real_array,
    check_choice,
    check_device,
    check_positive_int,
    check_real,
    check_sequence,
    check_values,
    resolve_dtype,
)

__all__ = ["MEASURES", "AffinityTensor", "affinity_tensor", "pair_index"]

MEASURES = ("abs_correlation", "positive_correlation", "spearman")


class AffinityTensor(NamedTuple):
    """values (P, W, A) or (N, N, W, A), 0 where masked; mask: bool, same shape, True =
    observed; pairs (P, 2) int64 neuron indices of the pair layout rows; neuron_names
    (tuple of str, or None); window_starts (W,) sample index of each window; layout."""

    values: torch.Tensor
    mask: torch.Tensor
    pairs: np.ndarray
    neuron_names: tuple[str, ...] | None
    window_starts: np.ndarray
    layout: str


def pair_index(num_neurons: int) -> np.ndarray:
    """(P, 2) neuron pairs i < j in row-major upper-triangle order."""
    rows, cols = np.triu_indices(num_neurons, k=1)
    return np.stack([rows, cols], axis=1).astype(np.int64)


def _as_arrays(traces) -> list[np.ndarray]:
    """One float64 (neurons, timesteps) array per animal, checked."""
    if hasattr(traces, "ndim"):  # one numpy array or torch tensor
        if traces.ndim != 3:
            raise ValueError(f"traces given as one array must be 3-D (animals, neurons, "
                             f"timesteps), got shape {tuple(traces.shape)}; for one animal pass "
                             "[array] or array[None]")
        traces = list(traces)
    check_sequence("traces", traces, "a list of (neurons, timesteps) arrays, one per animal, "
                   "or an (animals, neurons, timesteps) array")
    if len(traces) < 1:
        raise ValueError("traces must hold at least one animal")
    arrays = []
    for index, trace in enumerate(traces):
        array = as_real_array(f"traces[{index}]", trace, ndim=2)
        check_values(f"traces[{index}]", array, finite=False)
        arrays.append(array)
    return arrays


def _align(arrays, neuron_names):
    if neuron_names is None:
        sizes = {array.shape[0] for array in arrays}
        if len(sizes) != 1:
            raise ValueError(
                f"animals have different neuron counts {[a.shape[0] for a in arrays]} and no "
                "neuron_names to align them: pass neuron_names (one list per animal)")
        return arrays, None
    check_sequence("neuron_names", neuron_names, "a list of name lists, one per animal")
    if len(neuron_names) != len(arrays):
        raise ValueError(f"neuron_names must hold one list per animal ({len(arrays)}), got "
                         f"{len(neuron_names)}")
    for index, (names, array) in enumerate(zip(neuron_names, arrays)):
        check_sequence(f"neuron_names[{index}]", names, "a list of names")
        distinct = set(map(str, names))  # names are compared as str (the union is of str)
        if len(names) != array.shape[0] or len(distinct) != len(names):
            raise ValueError(f"neuron_names[{index}] must hold {array.shape[0]} distinct names "
                             f"(compared as str), got {len(names)} ({len(distinct)} distinct)")
    union = sorted(set().union(*[set(map(str, names)) for names in neuron_names]))
    position = {name: k for k, name in enumerate(union)}
    aligned = []
    for names, array in zip(neuron_names, arrays):
        full = np.full((len(union), array.shape[1]), np.nan)
        full[[position[str(n)] for n in names]] = array
        aligned.append(full)
    return aligned, tuple(union)


def _window_affinity(windows: torch.Tensor, valid: torch.Tensor, measure: str):
    """windows (N, W, L) finite; valid (N, W). Returns (W, N, N) affinity and the number of
    valid zero-variance (neuron, window) cells."""
    if measure == "spearman":  # average ranks of tied values (scipy's), 0-based
        ordered = torch.sort(windows, dim=-1).values
        below = torch.searchsorted(ordered, windows, side="left")
        below_or_equal = torch.searchsorted(ordered, windows, side="right")
        windows = (below + below_or_equal - 1).to(windows.dtype) / 2
    centred = windows - windows.mean(dim=-1, keepdim=True)
    # std = peak * sqrt(mean((centred / peak)^2)), peak = max |centred|: squaring tiny traces
    # (~1e-160) directly would underflow to 0 and mark them flat.
    peak = centred.abs().amax(dim=-1, keepdim=True)
    std = peak[..., 0] * (centred / torch.where(peak > 0, peak, torch.ones_like(peak))
                          ).pow(2).mean(dim=-1).sqrt()
    scale = windows.abs().amax(dim=-1)
    flat = std <= 1e-12 * torch.clamp(scale, min=1e-300)
    zscored = torch.where(flat[..., None], torch.zeros_like(centred),
                          centred / torch.where(flat, torch.ones_like(std), std)[..., None])
    per_window = zscored.permute(1, 0, 2)  # (W, N, L)
    rho = torch.bmm(per_window, per_window.transpose(1, 2)) / windows.shape[-1]
    rho = rho.clamp_(-1.0, 1.0)
    if measure == "positive_correlation":
        affinity = rho.clamp_(min=0.0)
    else:
        affinity = rho.abs_()
    return affinity, int((flat & valid).sum())


def affinity_tensor(
    traces: Sequence[np.ndarray] | np.ndarray,
    window: int,
    step: int,
    *,
    measure: str = "abs_correlation",
    layout: str = "pairs",
    neuron_names: Sequence[Sequence[str]] | None = None,
    max_bytes: int = 2 * 1024**3,
    dtype: torch.dtype | None = torch.float64,
    device: str | torch.device = "cpu",
) -> AffinityTensor:
    """Affinity tensor of `traces` (a list of (N_k, T_k) arrays, one per animal, or an
    (animals, N, T) array; NaN = not identified). Animals with different neuron sets need
    `neuron_names` (their sorted union becomes the neuron axis). Recordings of different
    lengths are padded with NaN to the longest (the extra windows are masked). Raises
    ValueError before allocating when the estimated memory exceeds `max_bytes`."""
    check_choice("measure", measure, MEASURES)
    check_choice("layout", layout, ("pairs", "square"))
    window = check_positive_int("window", window, minimum=2)
    step = check_positive_int("step", step)
    check_real("max_bytes", max_bytes, 0, low_open=True, allow_inf=True)
    device = check_device("device", device)
    arrays, names = _align(_as_arrays(traces), neuron_names)
    num_neurons = arrays[0].shape[0]
    if num_neurons < 3:
        raise ValueError(f"need at least 3 neurons, got {num_neurons}")
    shortest = min(array.shape[1] for array in arrays)
    if window > shortest:
        raise ValueError(f"window ({window}) must be <= the shortest recording ({shortest} "
                         "timesteps)")
    longest = max(array.shape[1] for array in arrays)
    num_windows = (longest - window) // step + 1
    num_animals = len(arrays)
    dtype = resolve_dtype(dtype, torch.float64)
    itemsize = torch.empty((), dtype=dtype).element_size()
    num_pairs = num_neurons * (num_neurons - 1) // 2
    cells = (num_pairs if layout == "pairs" else num_neurons**2) * num_windows * num_animals
    estimate = cells * (itemsize + 1) + 3 * num_windows * num_neurons * (num_neurons + window) * 8
    if estimate > max_bytes:
        raise ValueError(
            f"affinity tensor needs about {estimate / 1024**3:.2f} GiB ({cells} cells for "
            f"{num_neurons} neurons, {num_windows} windows, {num_animals} animals), above "
            f"max_bytes={max_bytes}; raise max_bytes, step or window, or use fewer neurons")

    shape = ((num_pairs,) if layout == "pairs" else (num_neurons, num_neurons))
    values = torch.zeros(*shape, num_windows, num_animals, dtype=dtype, device=device)
    mask = torch.zeros(*shape, num_windows, num_animals, dtype=torch.bool, device=device)
    rows, cols = torch.triu_indices(num_neurons, num_neurons, offset=1)
    zero_variance = 0
    observed = False  # some window holds two neurons with finite samples
    for animal, array in enumerate(arrays):
        padded = np.full((num_neurons, longest), np.nan)
        padded[:, :array.shape[1]] = array
        recording = torch.from_numpy(padded)
        windows = recording.unfold(-1, window, step)[:, :num_windows]  # (N, W, L)
        valid = torch.isfinite(windows).all(dim=-1)  # (N, W)
        observed = observed or bool((valid.sum(dim=0) >= 2).any())
        windows = torch.where(torch.isfinite(windows), windows, torch.zeros(()))
        affinity, flat = _window_affinity(windows, valid, measure)
        zero_variance += flat
        pair_valid = valid.t()[:, :, None] & valid.t()[:, None, :]  # (W, N, N)
        affinity = torch.where(pair_valid, affinity, torch.zeros(()))
        if layout == "pairs":
            values[:, :, animal] = affinity[:, rows, cols].t().to(device=device, dtype=dtype)
            mask[:, :, animal] = pair_valid[:, rows, cols].t().to(device)
        else:
            eye = torch.eye(num_neurons, dtype=torch.bool)
            pair_valid = pair_valid & ~eye
            affinity = torch.where(pair_valid, affinity, torch.zeros(()))
            values[:, :, :, animal] = affinity.permute(1, 2, 0).to(device=device, dtype=dtype)
            mask[:, :, :, animal] = pair_valid.permute(1, 2, 0).to(device)
    if not observed:
        raise ValueError("traces hold no window in which two neurons of the same animal have "
                         "only finite samples: every affinity would be masked")
    if zero_variance:
        warnings.warn(f"affinity_tensor: {zero_variance} (neuron, window) cells have zero "
                      "variance; their affinities are set to 0", RuntimeWarning, stacklevel=2)
    pairs = pair_index(num_neurons)
    return AffinityTensor(values, mask, pairs, names, np.arange(num_windows) * step, layout)
