"""A small causal sequence model whose token mixer is chosen per layer by a pattern string.

    tokens [B, T] -> embedding (+ learned absolute position embedding if asked)
                  -> L blocks:  x = x + mixer_l(norm(x));  x = x + mlp(norm(x))   (pre-norm)
                  -> norm -> readout -> logits [B, T, vocab_size]

``pattern`` has one letter per block (see :mod:`bridges.mixers`): "SS" two softmax layers,
"SLLL" one softmax layer then three linear ones, "NN" no token mixing at all (the control of
Xue et al., "Deconstructing Attention", arXiv:2510.11602), "FS" fixed mixing below softmax
(a hybrid in the sense of that paper and of MASFormer). Norms are RMSNorm, the MLP is
``W_2 gelu(W_1 x)`` with hidden size ``mlp_ratio * model_dim``. Positions: softmax layers
use rotary embeddings (see :mod:`bridges.mixers`); an absolute learned position embedding
is off by default (``absolute_positions``), our choice.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bridges._validation import (
    check_device,
    check_dtype,
    check_flag,
    check_int,
    check_tokens,
    torch_seed,
)
from bridges.mixers import MIXER_NAMES, TokenMixer


@dataclass(frozen=True)
class SequenceModelConfig:
    """Hyperparameters; ``pattern`` letters from :data:`bridges.mixers.MIXER_NAMES`."""

    vocab_size: int
    pattern: str = "SS"
    model_dim: int = 64
    num_heads: int = 2
    max_length: int = 256
    mlp_ratio: int = 4
    chunk_size: int = 64
    absolute_positions: bool = False

    def __post_init__(self):
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ValueError(f"pattern must be a non-empty string of mixer letters "
                             f"{''.join(MIXER_NAMES)}, got {self.pattern!r}")
        unknown = sorted(set(self.pattern) - set(MIXER_NAMES))
        if unknown:
            raise ValueError(f"pattern {self.pattern!r} has unknown mixer letter(s) {unknown}; "
                             f"allowed: " + ", ".join(f"{k}={v}" for k, v in MIXER_NAMES.items()))
        for name in ("vocab_size", "model_dim", "num_heads", "max_length", "mlp_ratio",
                     "chunk_size"):
            check_int(name, getattr(self, name))
        check_flag("absolute_positions", self.absolute_positions)
        if self.model_dim % self.num_heads:
            raise ValueError(f"model_dim ({self.model_dim}) must be divisible by num_heads "
                             f"({self.num_heads})")

    @property
    def state_size(self) -> int:
        """Numbers of recurrent state per layer for the fixed-size memories (H * d_h^2)."""
        head_dim = self.model_dim // self.num_heads
        return self.num_heads * head_dim * head_dim


class Block(nn.Module):
    def __init__(self, letter: str, config: SequenceModelConfig):
        super().__init__()
        self.mixer_norm = nn.RMSNorm(config.model_dim)
        self.mixer = TokenMixer(letter, config.model_dim, config.num_heads, config.max_length,
                                config.chunk_size)
        self.mlp_norm = nn.RMSNorm(config.model_dim)
        hidden = config.mlp_ratio * config.model_dim
        self.mlp = nn.Sequential(nn.Linear(config.model_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, config.model_dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.mixer(self.mixer_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class SequenceModel(nn.Module):
    """Causal sequence model (module docstring); ``forward(tokens [B, T]) -> logits``."""

    def __init__(self, config: SequenceModelConfig, *, seed=0,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        if not isinstance(config, SequenceModelConfig):
            raise TypeError(f"config must be a SequenceModelConfig, got {type(config).__name__}")
        check_dtype("dtype", dtype, optional=True)
        check_device("device", device, optional=True)
        self.config = config
        # Initialise on the CPU under a private, seeded CPU generator state (the global RNG is left
        # untouched; torch.manual_seed would also reseed every CUDA device), then move: the same
        # weights on every device, also under torch.set_default_device.
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            torch.random.default_generator.manual_seed(torch_seed(seed))
            self.embedding = nn.Embedding(config.vocab_size, config.model_dim)
            self.position = (nn.Embedding(config.max_length, config.model_dim)
                             if config.absolute_positions else None)
            if self.position is not None:
                nn.init.normal_(self.position.weight, std=0.02)
            self.blocks = nn.ModuleList(Block(letter, config) for letter in config.pattern)
            self.final_norm = nn.RMSNorm(config.model_dim)
            self.readout = nn.Linear(config.model_dim, config.vocab_size, bias=False)
        self.to(device=torch.get_default_device() if device is None else device, dtype=dtype)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [B, T] int64/int32 in [0, vocab_size) (range checked on CPU only)."""
        check_tokens("tokens", tokens, vocab_size=self.config.vocab_size)
        length = tokens.shape[1]
        if length > self.config.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length {self.config.max_length}")
        x = self.embedding(tokens)
        if self.position is not None:
            x = x + self.position(torch.arange(length, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.readout(self.final_norm(x))
