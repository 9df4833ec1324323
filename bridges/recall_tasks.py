"""Synthetic recall tasks for the mixer comparison: MQAR and induction-style copying.

Both return ``(tokens [B, T] int64, targets [B, T] int64)`` with ``targets = -100`` (PyTorch's
ignore index) where nothing is scored; the model predicts ``targets[:, t]`` from
``tokens[:, :t+1]``.

* :func:`mqar_batch` -- multi-query associative recall (Arora et al., "Zoology",
  arXiv:2312.04927). Token 0 is filler, keys are 1..num_keys, values
  num_keys+1..num_keys+num_values. The context lists ``num_pairs`` pairs ``k_1 v_1 ... k_P v_P``
  (distinct keys, values drawn with replacement); in the rest of the sequence each key
  reappears once at a random position, filler elsewhere. At a key's reappearance the target
  is its value. Chance accuracy is 1/num_values.
* :func:`copy_batch` -- induction-style copying: ``x_1 .. x_n x_1 .. x_n`` with n = T/2
  distinct random tokens; positions in the second copy predict the next token, which needs
  "find my earlier occurrence, output what followed it" (an induction head). Chance is
  1/(vocab_size - 1) at best.

Layouts and filler conventions are our reading of the Zoology set-up, scaled down.
"""
from __future__ import annotations

import numpy as np
import torch

from bridges._validation import check_device, check_flag, check_int, numpy_rng

IGNORE_INDEX = -100


def mqar_vocab_size(num_keys: int, num_values: int) -> int:
    return 1 + check_int("num_keys", num_keys) + check_int("num_values", num_values)


def mqar_batch(batch_size: int, length: int, num_pairs: int, num_keys: int = 64,
               num_values: int = 64, *, seed=0, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """One MQAR batch (module docstring); needs ``num_pairs <= num_keys`` and ``3 P <= T``."""
    batch_size, length, num_pairs, num_keys, num_values = (
        check_int(name, value) for name, value in (
            ("batch_size", batch_size), ("length", length), ("num_pairs", num_pairs),
            ("num_keys", num_keys), ("num_values", num_values)))
    check_device("device", device)
    if num_pairs > num_keys:
        raise ValueError(f"num_pairs must be in [1, num_keys={num_keys}], got {num_pairs}")
    if 3 * num_pairs > length:
        raise ValueError(f"length must be >= 3 * num_pairs = {3 * num_pairs} (context of 2P "
                         f"tokens and P queries), got {length}")
    rng = numpy_rng(seed)
    keys = np.argsort(rng.random((batch_size, num_keys)), axis=1)[:, :num_pairs] + 1
    values = rng.integers(0, num_values, size=(batch_size, num_pairs)) + 1 + num_keys
    tokens = np.zeros((batch_size, length), dtype=np.int64)
    targets = np.full((batch_size, length), IGNORE_INDEX, dtype=np.int64)
    tokens[:, 0:2 * num_pairs:2] = keys
    tokens[:, 1:2 * num_pairs:2] = values
    query_span = length - 2 * num_pairs
    slots = np.argsort(rng.random((batch_size, query_span)), axis=1)[:, :num_pairs] + 2 * num_pairs
    rows = np.arange(batch_size)[:, None]
    tokens[rows, slots] = keys
    targets[rows, slots] = values
    return (torch.as_tensor(tokens, device=device), torch.as_tensor(targets, device=device))


def copy_batch(batch_size: int, length: int, vocab_size: int = 128, *, seed=0, device="cpu",
               with_replacement: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One copy batch (module docstring); ``length`` even, ``length / 2 < vocab_size``.

    ``with_replacement=True`` draws the segment's tokens uniformly WITH replacement from
    1..vocab_size - 1, so a token may recur inside a copy (the repeated-random-tokens task
    of Olsson et al. 2022); then ``vocab_size`` need not exceed ``length / 2``."""
    batch_size = check_int("batch_size", batch_size)
    vocab_size = check_int("vocab_size", vocab_size, 2)
    check_device("device", device)
    length = check_int("length", length, 4)
    if length % 2:
        raise ValueError(f"length must be an even number >= 4, got {length}")
    half = length // 2
    rng = numpy_rng(seed)
    if check_flag("with_replacement", with_replacement):
        segment = rng.integers(1, vocab_size, size=(batch_size, half))
    elif half >= vocab_size:
        raise ValueError(f"vocab_size must exceed length / 2 = {half} (distinct tokens), "
                         f"got {vocab_size}")
    else:
        segment = np.argsort(rng.random((batch_size, vocab_size - 1)), axis=1)[:, :half] + 1
    tokens = np.concatenate([segment, segment], axis=1).astype(np.int64)
    targets = np.full((batch_size, length), IGNORE_INDEX, dtype=np.int64)
    targets[:, half:length - 1] = segment[:, 1:]
    return (torch.as_tensor(tokens, device=device), torch.as_tensor(targets, device=device))
