"""A causal sequence model over real-valued inputs (spike counts, task channels).

The blocks are those of :class:`bridges.sequence_model.SequenceModel` (pre-norm, one token
mixer per letter of ``pattern``, see :mod:`bridges.mixers`); only the ends differ:

    x [B, T, C] -> Linear(C, d) + learned position embedding -> blocks -> RMSNorm
                -> Linear(d, num_outputs) -> y [B, T, num_outputs]

``forward(x, return_hidden=True)`` also returns the residual stream after the input layer and
after each block (for linear probes). Used by the comparative studies: as the slow-weight
key encoder of the what/when counterpart and as the next-bin Poisson model of spike trains.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from bridges._validation import (
    check_device,
    check_dtype,
    check_features,
    check_flag,
    check_int,
    torch_seed,
)
from bridges.sequence_model import Block, SequenceModelConfig

__all__ = ["ContinuousSequenceModel"]


class ContinuousSequenceModel(nn.Module):
    """Causal model (module docstring). ``pattern`` e.g. "SS", "LL", "GG", "DD"."""

    def __init__(self, num_inputs: int, num_outputs: int, *, pattern: str = "SS", model_dim: int = 32,
                 num_heads: int = 2, max_length: int = 256, mlp_ratio: int = 2, chunk_size: int = 64,
                 seed=0, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        check_int("num_inputs", num_inputs)
        check_int("num_outputs", num_outputs)
        check_dtype("dtype", dtype, optional=True)
        check_device("device", device, optional=True)
        # vocab_size is unused here; the config validates the rest
        self.config = SequenceModelConfig(vocab_size=1, pattern=pattern, model_dim=model_dim,
                                          num_heads=num_heads, max_length=max_length,
                                          mlp_ratio=mlp_ratio, chunk_size=chunk_size)
        # Initialise on the CPU under a private, seeded CPU generator state (the global RNG is left
        # untouched; torch.manual_seed would also reseed every CUDA device), then move: the same
        # weights on every device, also under torch.set_default_device.
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            torch.random.default_generator.manual_seed(torch_seed(seed))
            self.input = nn.Linear(num_inputs, model_dim)
            self.position = nn.Embedding(max_length, model_dim)
            nn.init.normal_(self.position.weight, std=0.02)
            self.blocks = nn.ModuleList(Block(letter, self.config) for letter in pattern)
            self.final_norm = nn.RMSNorm(model_dim)
            self.readout = nn.Linear(model_dim, num_outputs)
        self.to(device=torch.get_default_device() if device is None else device, dtype=dtype)

    def forward(self, x: Tensor, return_hidden: bool = False):
        """x [B, T, num_inputs] (the parameters' dtype) -> y [B, T, num_outputs] (and hidden)."""
        check_features("x", x, features=self.input.in_features, dtype=self.input.weight.dtype)
        return_hidden = check_flag("return_hidden", return_hidden)
        length = x.shape[1]
        if length > self.config.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length {self.config.max_length}")
        h = self.input(x) + self.position(torch.arange(length, device=x.device))
        hidden = [h]
        for block in self.blocks:
            h = block(h)
            hidden.append(h)
        y = self.readout(self.final_norm(h))
        return (y, hidden) if return_hidden else y
