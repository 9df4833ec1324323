"""Token mixers as thin ``nn.Module`` layers over the references of ``bridges``.

One letter per mixer, used by the pattern string of :class:`bridges.sequence_model.SequenceModel`:

====  ==============  =======================================================================
 S    softmax         causal softmax attention (:mod:`bridges.softmax_attention`)
 L    linear          causal linear attention, chunked (:mod:`bridges.linear_attention`)
 G    gla             gated linear attention, per-key decay (:mod:`bridges.gated_linear_attention`)
 D    delta           delta rule, chunked (:mod:`bridges.delta_rule`)
 E    gated_delta     gated delta rule (:mod:`bridges.gated_delta_rule`)
 F    fixed           fixed mixing: learned causal position-to-position weights that do not
                      depend on the input (the "sequence-independent" relaxation of Xue et al.,
                      "Deconstructing Attention", arXiv:2510.11602)
 N    none            no token mixing: each position sees only itself (their "no mixing"
                      control, which they report collapses to near chance)
====  ==============  =======================================================================

Our choices (not fixed by the papers): for L, G, D, E the queries and keys are
L2-normalised per head (unit keys, as in the capacity theory and DeltaNet), the scale is 1,
and each head's output is RMS-normalised (as fla's GLA/DeltaNet layers do); GLA gates are
``logsigmoid(W x) / 16`` (fla's gate normaliser), delta write strengths ``sigmoid(W x)``,
gated-delta decays ``logsigmoid(W x) / 16`` per head. S uses scale ``head_dim ** -0.5`` and
rotary position embeddings on q and k (Su et al., arXiv:2104.09864, base 10000), the usual
choice for softmax layers in recall studies (Zoology); the other mixers get no positions
(recurrences and fixed mixing are order-aware by construction).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bridges._validation import check_choice, check_features, check_int, check_number, check_tensor
from bridges.delta_rule import delta_rule
from bridges.gated_delta_rule import gated_delta_rule
from bridges.gated_linear_attention import gated_linear_attention
from bridges.linear_attention import linear_attention
from bridges.softmax_attention import softmax_attention

MIXER_NAMES = {"S": "softmax", "L": "linear", "G": "gla", "D": "delta", "E": "gated_delta",
               "F": "fixed", "N": "none"}
GATE_LOGIT_NORMALIZER = 16.0


def rotary(x: Tensor, base: float = 10000.0) -> Tensor:
    """Rotate pairs (x_i, x_{i+h}) of x [B, T, H, D], h = D // 2, by angle t * base^(-i/h)
    (RoPE: base^(-2i/D) for even D; an odd D's last entry passes unrotated); ``base`` a
    finite number > 0. Angles in float32 (float64 for float64 x)."""
    check_tensor("x", x, ndim=4, layout="[B, T, H, D]")
    base = check_number("base", base, low=0.0, low_open=True)
    length, dim = x.shape[1], x.shape[-1]
    half = dim // 2
    if half == 0:
        return x
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # float32 capped float64
    frequencies = base ** (-torch.arange(half, dtype=dtype, device=x.device) / half)
    angles = torch.arange(length, dtype=dtype, device=x.device)[:, None] * frequencies
    cos, sin = angles.cos().to(x.dtype)[:, None], angles.sin().to(x.dtype)[:, None]  # [T,1,half]
    first, second = x[..., :half], x[..., half:2 * half]
    rotated = torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)
    return torch.cat([rotated, x[..., 2 * half:]], dim=-1)


class TokenMixer(nn.Module):
    """Projections shared by every mixer: x [B, T, D] -> heads [B, T, H, D/H] -> x [B, T, D]."""

    def __init__(self, letter: str, model_dim: int, num_heads: int, max_length: int,
                 chunk_size: int = 64):
        super().__init__()
        check_choice("letter", letter, MIXER_NAMES)
        model_dim, num_heads, max_length, chunk_size = (check_int(name, value) for name, value in (
            ("model_dim", model_dim), ("num_heads", num_heads), ("max_length", max_length),
            ("chunk_size", chunk_size)))
        if model_dim % num_heads:
            raise ValueError(f"model_dim ({model_dim}) must be divisible by num_heads ({num_heads})")
        self.letter, self.num_heads, self.head_dim = letter, num_heads, model_dim // num_heads
        self.max_length, self.chunk_size = max_length, chunk_size
        self.query = nn.Linear(model_dim, model_dim, bias=False)
        self.key = nn.Linear(model_dim, model_dim, bias=False)
        self.value = nn.Linear(model_dim, model_dim, bias=False)
        self.output = nn.Linear(model_dim, model_dim, bias=False)
        if letter == "G":
            self.gate = nn.Linear(model_dim, model_dim)
        if letter in ("D", "E"):
            self.write_strength = nn.Linear(model_dim, num_heads)
        if letter == "E":
            self.decay = nn.Linear(model_dim, num_heads)
        if letter == "F":   # zeros: uniform causal averaging at initialisation
            self.position_logits = nn.Parameter(torch.zeros(num_heads, max_length, max_length))

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim))

    def queries_and_keys(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The q, k [B, T, H, D/H] this mixer uses (S: rotary; L, G, D, E: L2-normalised).

        For analyses (attention maps) that must see exactly what the mixer computes.
        """
        self._check_input(x)
        if self.letter in ("N", "F"):
            raise ValueError(f"mixer {self.letter!r} ({MIXER_NAMES[self.letter]}) has no "
                             "queries and keys")
        return self._queries_and_keys(x)

    def _queries_and_keys(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q, k = self._heads(self.query(x)), self._heads(self.key(x))
        if self.letter == "S":
            return rotary(q), rotary(k)
        return F.normalize(q, dim=-1), F.normalize(k, dim=-1)

    def _check_input(self, x: Tensor) -> None:
        check_features("x", x, features=self.query.in_features, dtype=self.query.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, model_dim] (the parameters' dtype) -> [B, T, model_dim]; causal."""
        self._check_input(x)
        length = x.shape[1]
        v = self._heads(self.value(x))
        if self.letter == "N":
            return self.output(v.flatten(-2))
        if self.letter == "F":
            if length > self.max_length:
                raise ValueError(f"sequence length {length} exceeds max_length {self.max_length} "
                                 "of the fixed-mixing layer")
            causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            logits = self.position_logits[:, :length, :length].masked_fill(~causal, float("-inf"))
            mixed = torch.einsum("hts,bshd->bthd", torch.softmax(logits, dim=-1), v)
            return self.output(mixed.flatten(-2))
        q, k = self._queries_and_keys(x)
        if self.letter == "S":
            out, _ = softmax_attention(q, k, v)
            return self.output(out.flatten(-2))
        if self.letter == "L":
            out, _ = linear_attention(q, k, v, 1.0, chunk_size=self.chunk_size)
        elif self.letter == "G":
            g = F.logsigmoid(self._heads(self.gate(x))) / GATE_LOGIT_NORMALIZER
            # chunk 8: the fastest setting of the CPU reference (measured); Triton ignores it.
            out, _ = gated_linear_attention(q, k, v, g, 1.0, chunk_size=min(self.chunk_size, 8))
        else:
            beta = torch.sigmoid(self.write_strength(x))
            if self.letter == "D":
                out, _ = delta_rule(q, k, v, beta, 1.0, chunk_size=self.chunk_size)
            else:
                g = F.logsigmoid(self.decay(x)) / GATE_LOGIT_NORMALIZER
                out, _ = gated_delta_rule(q, k, v, g, beta, 1.0, chunk_size=self.chunk_size)
        out = F.rms_norm(out, (self.head_dim,))
        return self.output(out.flatten(-2))
