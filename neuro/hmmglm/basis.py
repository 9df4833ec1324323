"""Causal history bases and the spike-history convolution of a GLM.

A basis is a (L, num_lags) matrix ``B``; column ``lag - 1`` weights the spike count
``lag`` bins in the past (lag >= 1, so a spike never affects its own bin). The history
features of every presynaptic neuron are

    X[t, n', j] = sum_{lag=1}^{num_lags} B[j, lag - 1] * y[t - lag, n']     (y[s] = 0 for s < 0)

and a coupling filter with coefficients ``w[j]`` has the lag profile ``w @ B``.
The paper (Li et al., arXiv 2310.15263) uses one exponential filter over 5 lags; our
default keeps 5 lags and spans them with three exponentials (time constants 1, 2, 4
bins), which contains the paper's filter shape (our choice, see ``default_basis``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from neuro.checks import check_int


def exponential_basis(num_lags: int = 5, time_constants_bins=(1.0, 2.0, 4.0)) -> np.ndarray:
    """Rows ``exp(-(lag - 1) / tau)`` for lag = 1..num_lags, one row per time constant."""
    if int(num_lags) != num_lags or num_lags < 1:
        raise ValueError(f"num_lags must be a positive integer, got {num_lags!r}")
    try:
        taus = np.asarray(time_constants_bins, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ValueError(f"time_constants_bins must be positive and finite, got "
                         f"{time_constants_bins!r}") from error
    if taus.size == 0 or not np.all(np.isfinite(taus)) or np.any(taus <= 0):
        raise ValueError(f"time_constants_bins must be positive and finite, got {time_constants_bins!r}")
    lags = np.arange(num_lags, dtype=np.float64)
    return np.exp(-lags[None, :] / taus[:, None])


def raised_cosine_basis(num_basis: int = 3, num_lags: int = 10) -> np.ndarray:
    """Raised-cosine bumps on a log-stretched lag axis (Pillow et al. 2008, Nature 454:995).

    Bump j is ``0.5 * (1 + cos(clip(u - c_j, -pi, pi)))`` with ``u = a*log(lag + 1)``,
    centres c_0 = u(lag 1) .. c_{num_basis-1} = u(num_lags) spaced by pi/2: the bumps sum to 2
    between the second and the second-to-last centre and less towards either end (1.5 at
    the first and the last lag), where fewer bumps overlap. More bumps than lags are linearly
    dependent (a singular design), so ``num_basis <= num_lags`` is required.
    """
    num_basis = check_int("num_basis", num_basis)
    num_lags = check_int("num_lags", num_lags)
    if num_basis > num_lags:
        raise ValueError(f"num_basis must be <= num_lags ({num_lags}): {num_basis} bumps over "
                         f"{num_lags} lags are linearly dependent, got num_basis={num_basis}")
    lags = np.arange(1, num_lags + 1, dtype=np.float64)
    u = np.log(lags + 1.0)
    span = u[-1] - u[0]
    spacing = span / max(num_basis - 1, 1)
    centres = u[0] + spacing * np.arange(num_basis)
    scaled = (u[None, :] - centres[:, None]) * (math.pi / 2) / max(spacing, 1e-12)
    return 0.5 * (1.0 + np.cos(np.clip(scaled, -math.pi, math.pi)))


def lag_basis(num_lags: int = 5) -> np.ndarray:
    """Identity basis: one coefficient per lag (the 'raw lags' design)."""
    return np.eye(check_int("num_lags", num_lags))


def default_basis() -> np.ndarray:
    """Three exponentials (tau = 1, 2, 4 bins) over 5 lags."""
    return exponential_basis(5, (1.0, 2.0, 4.0))


def validate_basis(basis) -> torch.Tensor:
    if isinstance(basis, torch.Tensor):  # a tensor that requires grad or lives on a GPU
        basis = basis.detach().cpu()
    try:
        basis_t = torch.as_tensor(np.asarray(basis, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise TypeError(f"basis must be a (num_basis, num_lags) array of real numbers, "
                        f"got {basis!r}") from error
    if basis_t.dim() == 1:
        basis_t = basis_t.unsqueeze(0)
    if basis_t.dim() != 2 or basis_t.shape[0] < 1 or basis_t.shape[1] < 1:
        raise ValueError(f"basis must be a (num_basis, num_lags) matrix, got shape {tuple(basis_t.shape)}")
    if not bool(torch.isfinite(basis_t).all()):
        raise ValueError("basis must be finite")
    return basis_t


def history_features(spikes: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Causal history features X (T, N, L) of spikes (T, N) under basis (L, num_lags).

    Either may be a numpy array (e.g. ``default_basis()``); integer or bool counts give
    float64 features (the basis is never cast to an integer dtype, which would truncate it).
    """
    spikes = torch.as_tensor(spikes)
    if not spikes.is_floating_point():
        spikes = spikes.to(torch.float64)
    basis = torch.as_tensor(basis).to(spikes)
    if spikes.dim() != 2 or basis.dim() != 2:
        raise ValueError(f"spikes must be (T, N) and basis (L, num_lags), got shapes "
                         f"{tuple(spikes.shape)} and {tuple(basis.shape)}")
    num_timesteps, num_neurons = spikes.shape
    num_basis, num_lags = basis.shape
    features = spikes.new_zeros(num_timesteps, num_neurons, num_basis)
    for lag in range(1, min(num_lags, num_timesteps - 1) + 1):
        features[lag:] += spikes[:-lag].unsqueeze(-1) * basis[:, lag - 1]
    return features


def design_matrix(spikes: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Rows ``phi_t = [1, X[t].flatten()]`` of shape (T, 1 + N*L); flattened as (n', j)."""
    features = history_features(spikes, basis)
    ones = features.new_ones(features.shape[0], 1)
    return torch.cat([ones, features.reshape(features.shape[0], -1)], dim=1)


def filters_from_weights(weights: torch.Tensor | np.ndarray, basis) -> np.ndarray:
    """Lag profiles (..., num_lags) of coefficient arrays (..., L): ``w @ B``."""
    w = np.asarray(weights.detach().cpu() if isinstance(weights, torch.Tensor) else weights)
    return w @ np.asarray(basis)
