"""Train and score a :class:`~bridges.sequence_model.SequenceModel` on a synthetic recall task.

Plain next-token cross-entropy on the scored positions (``targets != -100``), AdamW
(betas 0.9/0.98, weight decay 0.1 on every parameter), learning-rate schedule
(linear warm-up over 10 % of the steps, then cosine decay), gradient-norm clipping at 1. These optimiser settings are our choice
(the Zoology recipe, scaled to a few hundred CPU steps).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bridges._validation import check_int, check_number, check_tokens, numpy_rng
from bridges.recall_tasks import IGNORE_INDEX

BatchMaker = Callable[[int, np.random.Generator], tuple[Tensor, Tensor]]


class TrainingResult(NamedTuple):
    losses: np.ndarray          # training loss per step
    eval_steps: np.ndarray      # steps at which accuracy was measured
    eval_accuracy: np.ndarray   # held-out accuracy at those steps


def _check_pair(tokens: object, targets: object, source: str = "") -> None:
    """tokens and targets: int64/int32 tensors [B, T] of one shape (``source`` names where
    they came from in the messages)."""
    check_tokens(f"tokens{source}", tokens)
    check_tokens(f"targets{source}", targets)
    if targets.shape != tokens.shape:
        raise ValueError(f"targets{source} must have tokens' shape {tuple(tokens.shape)} [B, T], "
                         f"got {tuple(targets.shape)}")


@torch.no_grad()
def accuracy(model: nn.Module, tokens: Tensor, targets: Tensor, batch_size: int = 256) -> float:
    """Fraction of scored positions whose arg-max prediction equals the target.

    tokens, targets: integer tensors [B, T] of one shape (targets -100 where not scored)."""
    _check_pair(tokens, targets)
    batch_size = check_int("batch_size", batch_size)
    was_training = model.training
    model.eval()
    correct = total = 0
    for start in range(0, tokens.shape[0], batch_size):
        x, y = tokens[start:start + batch_size], targets[start:start + batch_size]
        scored = y != IGNORE_INDEX
        prediction = model(x).argmax(-1)
        correct += int((prediction[scored] == y[scored]).sum())
        total += int(scored.sum())
    model.train(was_training)
    if total == 0:
        raise ValueError("targets score no position (all are the ignore index -100)")
    return correct / total


def _warmup_cosine(num_steps: int, warmup_fraction: float = 0.1):
    """Learning-rate factor: linear warm-up over 10 % of the steps, then cosine to 0."""
    warmup = max(1, round(warmup_fraction * num_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, num_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


class Optimization:
    """One optimiser step as every sequence model here takes it: AdamW, linear warm-up over
    10 % of ``num_steps`` then cosine decay (:func:`_warmup_cosine`), gradient-norm
    clipping at ``max_grad_norm``. ``step(loss)`` back-propagates and returns the loss."""

    def __init__(self, model: nn.Module, learning_rate: float, num_steps: int, *,
                 weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.98),
                 max_grad_norm: float = 1.0):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        learning_rate = check_number("learning_rate", learning_rate, low=0.0)
        num_steps = check_int("num_steps", num_steps)
        weight_decay = check_number("weight_decay", weight_decay, low=0.0)
        max_grad_norm = check_number("max_grad_norm", max_grad_norm, low=0.0, low_open=True)
        self.parameters = list(model.parameters())
        self.optimizer = torch.optim.AdamW(self.parameters, lr=learning_rate, betas=betas,
                                           weight_decay=weight_decay)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _warmup_cosine(num_steps))
        self.max_grad_norm = max_grad_norm

    def step(self, loss: Tensor) -> float:
        if not isinstance(loss, Tensor):
            raise TypeError(f"loss must be a one-element torch.Tensor, got {type(loss).__name__}")
        if loss.numel() != 1:
            raise ValueError(f"loss must be a one-element tensor, got shape {tuple(loss.shape)}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        self.optimizer.step()
        self.schedule.step()
        return float(loss.detach())


def train(model: nn.Module, make_batch: BatchMaker, *, num_steps: int, batch_size: int = 32,
          learning_rate: float = 3e-3, seed=0, eval_set: tuple[Tensor, Tensor] | None = None,
          eval_every: int = 100, progress: Callable | None = None) -> TrainingResult:
    """Train in place. ``make_batch(batch_size, rng) -> (tokens, targets)`` draws fresh data:
    integer tensors [B, T] (int64 or int32) of one shape, targets -100 where not scored. A
    batch that scores no position is skipped: its loss is recorded as NaN and no optimiser
    or schedule step is taken (one host read of the targets per step); the evaluations of
    ``eval_set`` still run every ``eval_every`` steps and after the last step.

    ``progress`` wraps the step range (e.g. an experiment's ``out.progress``); ``seed`` an
    int >= 0, np.random.SeedSequence or np.random.Generator; ``eval_set`` (tokens, targets).
    """
    num_steps, batch_size, eval_every = (check_int(name, value) for name, value in (
        ("num_steps", num_steps), ("batch_size", batch_size), ("eval_every", eval_every)))
    if not callable(make_batch):
        raise TypeError(f"make_batch must be callable, got {type(make_batch).__name__}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be None or callable, got {type(progress).__name__}")
    pair = isinstance(eval_set, (tuple, list))
    if eval_set is not None and not (pair and len(eval_set) == 2):
        got = f"a {type(eval_set).__name__} of length {len(eval_set)}" if pair else \
            type(eval_set).__name__
        raise TypeError(f"eval_set must be None or a (tokens, targets) pair, got {got}")
    if eval_set is not None:   # checked now, not after eval_every steps of training
        _check_pair(*eval_set, " (eval_set)")
        if not bool((eval_set[1] != IGNORE_INDEX).any()):
            raise ValueError("targets (eval_set) score no position (all are the ignore index "
                             f"{IGNORE_INDEX})")
    rng = numpy_rng(seed)
    optimization = Optimization(model, learning_rate, num_steps)
    losses, eval_steps, eval_accuracy = [], [], []
    steps = range(num_steps) if progress is None else progress(range(num_steps))
    model.train()
    for step in steps:
        batch = make_batch(batch_size, rng)
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            got = f"a {type(batch).__name__} of length {len(batch)}" if isinstance(
                batch, (tuple, list)) else type(batch).__name__
            raise TypeError(f"make_batch must return a (tokens, targets) pair, got {got}")
        tokens, targets = batch
        _check_pair(tokens, targets, " (from make_batch)")
        if bool((targets != IGNORE_INDEX).any()):
            logits = model(tokens)
            # int32 targets are accepted as by accuracy(); cross_entropy needs int64 class indices
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten().long(),
                                   ignore_index=IGNORE_INDEX)
            losses.append(optimization.step(loss))
        else:  # nothing scored: no signal, no step (AdamW would still decay and move the weights)
            losses.append(float("nan"))
        # evaluated on schedule whether or not this batch stepped (a skipped last batch dropped
        # the final evaluation)
        if eval_set is not None and ((step + 1) % eval_every == 0 or step + 1 == num_steps):
            eval_steps.append(step + 1)
            eval_accuracy.append(accuracy(model, *eval_set))
    return TrainingResult(np.asarray(losses), np.asarray(eval_steps, dtype=int),
                          np.asarray(eval_accuracy))
