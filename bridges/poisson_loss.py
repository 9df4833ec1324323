"""Next-bin Poisson loss for sequence models of spike counts, and bits per spike.

A causal model reads counts y_1..y_t [N] and outputs a log rate eta_t [N] for bin t + 1.
The negative log-likelihood of the next bin's counts under independent Poissons is

    -log p(y_{t+1} | eta_t) = sum_n [ exp(eta_tn) - y_{t+1,n} eta_tn + log Gamma(y_{t+1,n} + 1) ]

(``poisson_nll``; the log Gamma term does not depend on the model and is kept so that the
value is the exact log-likelihood). Bits per spike (Pillow et al. 2008; the HMM-GLM's
``score``): the log-likelihood gain over a homogeneous Poisson model with each neuron's mean
rate on the same data, divided by the number of spikes and by ln 2.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from bridges._validation import check_counts, check_number, check_tensor

__all__ = ["bits_per_spike", "homogeneous_log_likelihood", "next_bin_loss", "poisson_nll"]


def _check(counts: Tensor, log_rate: Tensor) -> None:
    if not isinstance(counts, Tensor) or not isinstance(log_rate, Tensor):
        raise TypeError(f"counts and log_rate must be torch tensors, got {type(counts).__name__} "
                        f"and {type(log_rate).__name__}")
    check_tensor("log_rate", log_rate, layout="counts' shape")
    if counts.shape != log_rate.shape:
        raise ValueError(f"counts {tuple(counts.shape)} and log_rate {tuple(log_rate.shape)} "
                         "must have the same shape")
    check_counts("counts", counts)


def poisson_nll(log_rate: Tensor, counts: Tensor) -> Tensor:
    """Elementwise -log Poisson(counts | exp(log_rate)), same shape as the inputs (nats)."""
    _check(counts, log_rate)
    counts = counts.to(log_rate.dtype)
    return torch.exp(log_rate) - counts * log_rate + torch.lgamma(counts + 1)


def next_bin_loss(log_rate: Tensor, counts: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean next-bin NLL per scored (bin, neuron) entry.

    log_rate [B, T, N]: the model's output after reading bins 0..t; counts [B, T, N]: the
    same bins' counts. Output t is scored against counts t + 1 (the last output has no
    target). mask [B, T - 1] (True = scored) selects the scored predictions; an all-False mask
    scores nothing and gives 0 (zero gradient), so a batch of padding trains nothing. Unscored
    log rates are replaced by 0 before exp(): an overflowing or NaN output at a padded position
    changes neither the loss nor any gradient (mask [B, T - 1] on log_rate's device)."""
    _check(counts, log_rate)
    if log_rate.dim() != 3 or log_rate.shape[1] < 2 or 0 in log_rate.shape:
        raise ValueError(f"log_rate and counts must be [B >= 1, T >= 2, N >= 1], "
                         f"got {tuple(log_rate.shape)}")
    predictions, targets = log_rate[:, :-1], counts[:, 1:]
    if mask is None:
        return poisson_nll(predictions, targets).sum(-1).mean() / counts.shape[-1]
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be None or a bool tensor [B, T - 1] (True = scored), got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != predictions.shape[:2]:
        raise ValueError(f"mask must have shape {tuple(predictions.shape[:2])} [B, T - 1], "
                         f"got {tuple(mask.shape)}")
    if mask.device != log_rate.device:
        raise ValueError(f"mask is on {mask.device} but log_rate is on {log_rate.device}; "
                         "give mask on log_rate's device")
    # select before exp(): `loss * mask` kept inf * 0 = NaN from an unscored entry
    predictions = predictions.masked_fill(~mask[..., None], 0.0)
    loss = poisson_nll(predictions, targets).sum(-1)                    # [B, T - 1]
    scored = mask.to(loss.dtype)
    return (loss * scored).sum() / scored.sum().clamp_min(1.0) / counts.shape[-1]


def homogeneous_log_likelihood(counts: Tensor) -> Tensor:
    """log-likelihood (nats) of counts [T, N] (finite, >= 0) under Poisson(mean rate of each
    neuron)."""
    if not isinstance(counts, Tensor):
        raise TypeError(f"counts must be a torch tensor [T, N], got {type(counts).__name__}")
    if counts.dim() != 2:
        raise ValueError(f"counts must be [T, N], got shape {tuple(counts.shape)}")
    check_counts("counts", counts)
    rate = counts.double().mean(0).clamp_min(1e-12)
    c = counts.double()
    return (c * torch.log(rate) - rate - torch.lgamma(c + 1)).sum()


def bits_per_spike(log_likelihood: float, counts: Tensor) -> float:
    """(log_likelihood - homogeneous_log_likelihood(counts)) / (spikes * ln 2); counts [T, N]
    are the scored bins."""
    if isinstance(log_likelihood, Tensor) and log_likelihood.numel() == 1:
        log_likelihood = log_likelihood.item()
    log_likelihood = check_number("log_likelihood", log_likelihood)
    homogeneous = float(homogeneous_log_likelihood(counts))
    spikes = float(counts.sum().clamp_min(1.0))
    return float((log_likelihood - homogeneous) / (spikes * math.log(2.0)))
