"""A trained sequence model as a recorded brain: attention maps -> connectome tensor -> NTF -> communities.

Several seeds of a small causal model (bridges ``SequenceModel``, pattern of S/L/G mixers)
are trained on the induction-style copy task (or MQAR) of ``bridges.recall_tasks``. At
every checkpoint each head's position-to-position map (softmax weights, or |linear-attention
scores|) is averaged over a fixed probe batch, and the maps are arranged as the connectome
pipeline's (pair x time x animal) tensor: pairs = ordered position pairs (t, s <= t), time =
checkpoint, animal = one recorded head (seed, layer, head) (``bridges.attention_maps``).
A non-negative CP decomposition (``neuro.connectome.ntf``, Dyballa et al. arXiv 2402.14102)
splits it into components, each a position pattern with a time course over training and a
loading per head. The component whose pattern puts the most mass on the induction offset
(query t in the second copy attends to key t - T/2 + 1, the token after the earlier
occurrence of the current token) is the induction circuit; its time course says when it forms,
its loadings in which heads (when the NTF splits the pattern over several components with
comparable shares, the formation caption lists them all and no single one dates the circuit). Communities: Louvain on each component's (symmetrised)
position graph, and a weighted SBM (exponential weights) plus Louvain on the head-similarity
graph of the loadings. Cross-checked against direct per-head induction and previous-token
scores and the task accuracy (cf. "What needs to go right for an induction head?",
Singh et al. 2024, arXiv:2404.07129; Olsson et al. 2022).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from experiments.store import RunDir


@dataclass(frozen=True)
class Config:
    task: str = field(default="copy", metadata={"choices": ("copy", "repeat", "mqar"), "help": "copy (bridges, distinct tokens), repeat (random tokens with replacement), mqar"})
    length: int = field(default=32, metadata={"min": 8, "max": 256, "help": "sequence length T"})
    vocab_size: int = field(default=64, metadata={"min": 8, "help": "copy task vocabulary"})
    num_pairs: int = field(default=8, metadata={"min": 1, "help": "MQAR key-value pairs"})
    pattern: str = field(default="SS", metadata={"help": "mixer letters (S, L, G)"})
    model_dim: int = field(default=64, metadata={"min": 8, "help": "width"})
    num_heads: int = field(default=4, metadata={"min": 1, "help": "heads per layer"})
    num_seeds: int = field(default=3, metadata={"min": 1, "max": 32, "help": "trained networks ('animals')"})
    train_steps: int = field(default=600, metadata={"min": 2, "help": "optimiser steps per seed"})
    batch_size: int = field(default=32, metadata={"min": 1, "help": "sequences per step"})
    learning_rate: float = field(default=3e-3, metadata={"min": 0.0, "help": "peak AdamW learning rate"})
    weight_decay: float = field(default=0.1, metadata={"min": 0.0, "help": "AdamW weight decay"})
    checkpoint_every: int = field(default=10, metadata={"min": 1, "help": "steps between recorded checkpoints"})
    probe_sequences: int = field(default=64, metadata={"min": 1, "help": "sequences averaged per map"})
    rank: int = field(default=6, metadata={"min": 1, "max": 50, "help": "NTF rank"})
    ntf_iterations: int = field(default=300, metadata={"min": 1, "help": "HALS iterations"})
    formed_threshold: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0, "help": "induction score / accuracy that counts as formed"})

    def __post_init__(self):
        from bridges.attention_maps import MAPPABLE

        if self.model_dim % self.num_heads:
            raise ValueError(f"model_dim ({self.model_dim}) must be divisible by num_heads ({self.num_heads})")
        bad = sorted(set(self.pattern) - set(MAPPABLE))
        if bad or not self.pattern:
            raise ValueError(f"pattern must use only the mixers {MAPPABLE} (maps are defined for them), got {self.pattern!r}")
        if self.task == "copy" and (self.length % 2 or self.length // 2 >= self.vocab_size):
            raise ValueError(f"copy task: length must be even and length / 2 < vocab_size, got length={self.length}, "
                             f"vocab_size={self.vocab_size}")
        if self.task == "mqar" and self.length < 3 * self.num_pairs:
            raise ValueError(f"mqar task: length must be >= 3 * num_pairs = {3 * self.num_pairs} (2P context tokens "
                             f"and P queries), got length={self.length}")


DEMO = {"num_seeds": 2, "train_steps": 250, "checkpoint_every": 25, "rank": 4}


def induction_scores(maps: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-map induction and previous-token scores for the copy layout x_1..x_n x_1..x_n.

    maps [..., T, T] -> (mean of A[t, t - n + 1] over t = n .. 2n - 2, mean of A[t, t - 1]
    over t = 1 .. T - 1), each [...]."""
    half = length // 2
    queries = np.arange(half, length - 1)
    induction = maps[..., queries, queries - half + 1].mean(-1)
    rows = np.arange(1, length)
    previous = maps[..., rows, rows - 1].mean(-1)
    return induction, previous


def _train_seed(config: Config, seed_index: int, root_seed: int, device, out):
    """Train one seed, recording maps and accuracy at every checkpoint (step 0 included)."""
    import torch.nn.functional as F

    from bridges.attention_maps import attention_maps
    from bridges.recall_tasks import IGNORE_INDEX, copy_batch, mqar_batch, mqar_vocab_size
    from bridges.sequence_model import SequenceModel, SequenceModelConfig
    from bridges.training import Optimization, accuracy

    data_seed, probe_seed, model_seed = np.random.SeedSequence([root_seed, seed_index]).spawn(3)
    if config.task == "copy":
        vocab = config.vocab_size
        make = lambda n, rng: copy_batch(n, config.length, vocab, seed=rng, device=device)
    elif config.task == "repeat":
        vocab = config.vocab_size
        make = lambda n, rng: copy_batch(n, config.length, vocab, seed=rng, device=device,
                                          with_replacement=True)
    else:
        keys = max(config.num_pairs, 16)
        vocab = mqar_vocab_size(keys, keys)
        make = lambda n, rng: mqar_batch(n, config.length, config.num_pairs, keys, keys, seed=rng, device=device)
    model = SequenceModel(SequenceModelConfig(vocab_size=vocab, pattern=config.pattern, model_dim=config.model_dim,
                                              num_heads=config.num_heads, max_length=config.length),
                          seed=int(model_seed.generate_state(1)[0]), device=device)
    probe_tokens, probe_targets = make(config.probe_sequences, np.random.default_rng(probe_seed))
    rng = np.random.default_rng(data_seed)
    steps = config.train_steps
    optimization = Optimization(model, config.learning_rate, steps, weight_decay=config.weight_decay)
    maps, accuracies, checkpoints, losses = [], [], [], []
    for step in out.progress(range(steps + 1), desc=f"seed {seed_index}"):
        if step % config.checkpoint_every == 0 or step == steps:
            maps.append(attention_maps(model, probe_tokens).cpu().numpy())
            accuracies.append(accuracy(model, probe_tokens, probe_targets))
            checkpoints.append(step)
        if step == steps:
            break
        model.train()
        tokens, targets = make(config.batch_size, rng)
        loss = F.cross_entropy(model(tokens).flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        losses.append(optimization.step(loss))
    return np.stack(maps), np.asarray(accuracies), np.asarray(checkpoints), np.asarray(losses)


def first_crossing(values: np.ndarray, steps: np.ndarray, threshold: float) -> float:
    """First step at which ``values`` reaches ``threshold`` (inf if never)."""
    hits = np.flatnonzero(values >= threshold)
    return float(steps[hits[0]]) if hits.size else float("inf")


def run(config: Config, out: RunDir) -> dict[str, float]:
    import torch

    from bridges.attention_maps import connectome_tensor
    from experiments._attention_connectome_analysis import analyse, figures

    torch.set_num_threads(1)
    runs = [_train_seed(config, s, out.seed, out.device, out) for s in range(config.num_seeds)]
    maps = np.stack([r[0] for r in runs], axis=1)                          # [C, S, L, H, T, T]
    accuracies = np.stack([r[1] for r in runs])                           # [S, C]
    steps = runs[0][2]
    tensor, pairs, recordings = connectome_tensor(maps)
    out.log(f"connectome tensor {tensor.shape} (pairs x checkpoints x recorded heads); "
            f"final accuracy per seed {np.round(accuracies[:, -1], 3).tolist()}")
    metrics, tables = analyse(config, maps, accuracies, steps, tensor, pairs, recordings, out)
    for name, (rows, caption) in tables.items():
        out.save_table(name, rows, caption=caption)
    figures(out, config, maps, accuracies, steps, metrics, tables)
    out.save_arrays("attention", maps=maps.astype(np.float32), accuracies=accuracies, steps=steps,
                    losses=np.stack([r[3] for r in runs]))
    return metrics
