"""Attention maps of a trained sequence model, per layer and head, arranged like a connectome.

``attention_maps(model, tokens)`` runs the model once and returns, for every block, the
mean over the batch of its token mixer's position-to-position map A [H, T, T] (query t,
key s <= t):

* S (softmax):  A_ts = softmax_s(q_t . k_s / sqrt(d_h))            (rows sum to 1)
* L (linear):   A_ts = |q_t . k_s|, unit q and k (the weight of v_s in o_t)
* G (GLA):      A_ts = |sum_j q_tj k_sj exp(G_tj - G_sj)|, G the cumulative log gate

(the |.| keeps the maps non-negative for the non-negative factorisation; our choice). The
queries and keys are recomputed from the mixer's own projections on the input the block
hands it (captured by a forward pre-hook), with the conventions of :mod:`bridges.mixers`.

``connectome_tensor(maps)`` arranges maps [checkpoints, seeds, layers, heads, T, T] as the
connectome pipeline's (pair x time x animal) tensor (Dyballa et al., arXiv 2402.14102): a
pair is an ordered position pair (t, s), s <= t, in row-major lower-triangle order
(0,0), (1,0), (1,1), (2,0), ...; time is the training checkpoint; an "animal" is one
recorded head, ordered (seed, layer, head) with the head fastest. Heads are not identified
across seeds (any permutation of a layer's heads is the same network), so each seed's heads
are separate recordings; treating them as such is our choice.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MAPPABLE", "attention_maps", "causal_pairs", "connectome_tensor"]

MAPPABLE = ("S", "L", "G")


def _mixer_map(mixer: nn.Module, x: Tensor) -> Tensor:
    """x [B, T, d] (the mixer's input) -> mean map [H, T, T] (module docstring)."""
    from bridges.mixers import GATE_LOGIT_NORMALIZER

    q, k = mixer.queries_and_keys(x)                                    # [B, T, H, D]
    length = x.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    if mixer.letter == "S":
        scores = torch.einsum("bthd,bshd->bhts", q, k) * mixer.head_dim ** -0.5
        maps = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
    else:
        if mixer.letter == "L":
            maps = torch.einsum("bthd,bshd->bhts", q, k).abs()
        else:
            g = F.logsigmoid(mixer._heads(mixer.gate(x))) / GATE_LOGIT_NORMALIZER
            cum = torch.cumsum(g, dim=1)                                   # [B, T, H, D]
            diff = cum.unsqueeze(2) - cum.unsqueeze(1)                     # [B, T, S, H, D]
            decay = torch.exp(diff.masked_fill(~causal[None, :, :, None, None], float("-inf")))
            maps = torch.einsum("bthd,bshd,btshd->bhts", q, k, decay).abs()
        maps = maps.masked_fill(~causal, 0.0)
    return maps.mean(0)


@torch.no_grad()
def attention_maps(model: nn.Module, inputs: Tensor) -> Tensor:
    """Mean maps [layers, heads, T, T] of every block of ``model`` on ``inputs``.

    model: a :class:`bridges.sequence_model.SequenceModel` or
    :class:`bridges.counterpart_model.ContinuousSequenceModel` (anything with ``.blocks``
    whose items have a ``.mixer``) whose pattern uses only S, L, G."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TypeError(f"model must have .blocks of mixer blocks, got {type(model).__name__}")
    letters = [block.mixer.letter for block in blocks]
    bad = [letter for letter in letters if letter not in MAPPABLE]
    if bad:
        raise ValueError(f"attention maps are defined for mixers {MAPPABLE}, the model's pattern "
                         f"{''.join(letters)!r} has {bad}")
    captured: list[Tensor] = []
    hooks = [block.mixer.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
             for block in blocks]
    was_training = model.training
    model.eval()
    try:
        model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return torch.stack([_mixer_map(block.mixer, x) for block, x in zip(blocks, captured)])


def causal_pairs(length: int) -> np.ndarray:
    """(P, 2) position pairs (t, s), s <= t, row-major lower-triangle order; P = T (T + 1) / 2."""
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    rows, cols = np.tril_indices(int(length))
    return np.stack([rows, cols], axis=1).astype(np.int64)


def connectome_tensor(maps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """maps [C, S, L, H, T, T] -> (tensor [P, C, S * L * H], pairs [P, 2], recordings [S*L*H, 3]).

    tensor[p, c, r] = maps[c, seed, layer, head, t, s] with (t, s) = pairs[p] and
    (seed, layer, head) = recordings[r] (module docstring for the orders)."""
    try:
        # via float64 in torch: numpy has no bfloat16 (a bf16 model's maps were refused)
        maps = (maps.detach().cpu().double().numpy() if isinstance(maps, Tensor)
                else np.asarray(maps, dtype=np.float64))
    except (TypeError, ValueError):
        raise TypeError(f"maps must be an array or tensor of numbers, got {type(maps).__name__}") \
            from None
    if maps.ndim != 6 or maps.shape[-1] != maps.shape[-2] or maps.size == 0:
        raise ValueError(f"maps must have shape [checkpoints, seeds, layers, heads, T, T] with "
                         f"every size >= 1, got {maps.shape}")
    if (maps < 0).any() or not np.isfinite(maps).all():
        raise ValueError("maps must be finite and non-negative")
    checkpoints, seeds, layers, heads, length, _ = maps.shape
    pairs = causal_pairs(length)
    selected = maps[..., pairs[:, 0], pairs[:, 1]]                      # [C, S, L, H, P]
    tensor = selected.reshape(checkpoints, seeds * layers * heads, -1).transpose(2, 0, 1)
    recordings = np.stack(np.meshgrid(np.arange(seeds), np.arange(layers), np.arange(heads),
                                      indexing="ij"), axis=-1).reshape(-1, 3)
    return np.ascontiguousarray(tensor), pairs, recordings
