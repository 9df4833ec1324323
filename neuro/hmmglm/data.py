"""Checked spike data, design matrices, and the pooled/padded layouts of the EM.

Every sequence (trial) gets its own design matrix (its history starts empty), the M-step
pools all bins of all sequences, and the E-step pads sequences to a (B, T_max) batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuro.hmmglm.basis import design_matrix


def _as_tensor(array, dtype, device) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        if array.is_complex():
            raise TypeError(f"spikes must be real counts, got dtype {array.dtype}")
        return array.detach().to(device=device, dtype=dtype)
    arr = np.asarray(array)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"spikes must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"spikes must be real counts, got dtype {arr.dtype}")
    return torch.as_tensor(arr.astype(np.float64)).to(device=device, dtype=dtype)


def check_spikes(spikes, num_neurons: int | None, num_lags: int, distribution: str,
                 dtype=torch.float64, device="cpu") -> list[torch.Tensor]:
    """Validate (T, N) counts or a list of them; return a list of tensors of ``dtype``.
    The counts are checked in float64, before the cast (in float32, 1 + 1e-8 rounded to a
    whole count first)."""
    seqs = list(spikes) if isinstance(spikes, (list, tuple)) else [spikes]
    if not seqs:
        raise ValueError("spikes is an empty list: give at least one (T, N) array")
    out = []
    for i, seq in enumerate(seqs):
        name = "spikes" if len(seqs) == 1 else f"spikes[{i}]"
        y = _as_tensor(seq, torch.float64, device)
        if y.dim() != 2:
            raise ValueError(f"{name} must have rank 2 (num_timesteps, num_neurons), got shape {tuple(y.shape)}")
        if num_neurons is not None and y.shape[1] != num_neurons:
            raise ValueError(f"{name} has {y.shape[1]} neurons (columns), the model has {num_neurons}")
        if y.shape[0] <= num_lags:
            raise ValueError(f"{name} has {y.shape[0]} time bins, shorter than the history basis: "
                             f"need more than num_lags={num_lags}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"{name} contains NaN or inf; counts must be finite")
        if bool((y < 0).any()):
            raise ValueError(f"{name} contains negative counts (min {float(y.min())}); counts must be >= 0")
        if not bool((y == torch.round(y)).all()):
            raise ValueError(f"{name} contains non-integer counts; spike counts must be whole numbers")
        if distribution == "bernoulli" and bool((y > 1).any()):
            raise ValueError(f"{name} has counts above 1 (max {float(y.max())}); bernoulli needs 0/1")
        out.append(y.to(dtype))
    return out


@dataclass(frozen=True)
class PreparedData:
    counts: torch.Tensor  # (T_total, N), all sequences stacked
    design: torch.Tensor  # (T_total, D)
    lengths: torch.Tensor  # (B,)
    starts: torch.Tensor  # (B,)
    log_count_factorial: torch.Tensor  # (T_total,) sum_n -log y_tn! (Poisson constant)
    spikes: tuple[torch.Tensor, torch.Tensor] | None = None  # (t, n) of the nonzero counts

    @property
    def num_sequences(self) -> int:
        return int(self.lengths.numel())

    def pad(self, per_bin: torch.Tensor) -> torch.Tensor:
        """(T_total, *rest) -> (*rest[:-1], B, T_max, rest[-1]), padding with zeros."""
        if self.num_sequences == 1:
            return per_bin.movedim(0, -2).unsqueeze(-3)
        t_max = int(self.lengths.max())
        steps = torch.arange(t_max, device=per_bin.device)
        index = self.starts.unsqueeze(1) + steps.unsqueeze(0)  # (B, T_max)
        valid = steps.unsqueeze(0) < self.lengths.unsqueeze(1)
        gathered = per_bin[index.clamp_max(per_bin.shape[0] - 1)]  # (B, T_max, *rest)
        gathered = gathered * valid.view(*valid.shape, *([1] * (per_bin.dim() - 1)))
        return gathered.movedim(1, -2).movedim(0, -3)

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """Inverse of pad for (*lead, B, T_max, K) -> (T_total, *lead, K)."""
        if self.num_sequences == 1:
            return padded.squeeze(-3).movedim(-2, 0)
        pieces = [padded[..., b, : int(length), :] for b, length in enumerate(self.lengths.tolist())]
        return torch.cat(pieces, dim=-2).movedim(-2, 0)


def prepare(sequences: list[torch.Tensor], basis: torch.Tensor) -> PreparedData:
    designs = [design_matrix(y, basis) for y in sequences]
    lengths = torch.tensor([y.shape[0] for y in sequences], device=sequences[0].device)
    starts = torch.cumsum(lengths, 0) - lengths
    counts = torch.cat(sequences, 0)
    constant = -torch.lgamma(counts + 1.0).sum(-1)
    # nonzero positions found once per fit (a host sync on a GPU), not on every Newton step
    return PreparedData(counts, torch.cat(designs, 0), lengths, starts, constant,
                        counts.nonzero(as_tuple=True))
