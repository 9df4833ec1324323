"""Sequence models of spike counts for ``counterpart_spikes`` (helper module): training with
the next-bin Poisson loss, held-out log-likelihood by sliding windows, linear probes.

Model: :class:`bridges.counterpart_model.ContinuousSequenceModel` reading log(1 + y_t) [N]
and emitting the log rate of bin t + 1 (readout bias initialised at log of the mean rate).
Training: random windows of ``window`` bins from the training part, AdamW, cosine schedule,
early stopping on the last ``validation_fraction`` of the training bins (the parameters with
the best validation loss are kept) -- with 2,000 bins a flexible model overfits, and the
comparison with the HMM-GLM is only fair if both stop on their own data. Held-out: windows
of ``window`` bins with stride window / 2; every bin after the first is predicted once,
with at least window / 2 - 1 bins of context (except in the first window). Our choices.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from bridges.counterpart_model import ContinuousSequenceModel
from bridges.poisson_loss import bits_per_spike, next_bin_loss, poisson_nll
from bridges.training import Optimization


def make_model(pattern: str, num_neurons: int, *, model_dim: int, num_heads: int, window: int,
               mean_rate: np.ndarray, seed, device) -> ContinuousSequenceModel:
    model = ContinuousSequenceModel(num_neurons, num_neurons, pattern=pattern, model_dim=model_dim,
                                    num_heads=num_heads, max_length=window, seed=seed, device=device)
    with torch.no_grad():
        model.readout.bias.copy_(torch.as_tensor(np.log(np.maximum(mean_rate, 1e-3)), dtype=torch.float32))
    return model


def train(model: nn.Module, counts: np.ndarray, *, window: int, steps: int, batch: int, learning_rate: float,
          validation_fraction: float, eval_every: int, rng: np.random.Generator, device) -> dict:
    """Train in place on counts [T, N]; returns losses and the best validation loss (nats/bin/neuron)."""
    data = torch.as_tensor(counts, dtype=torch.float32, device=device)
    split = round(data.shape[0] * (1 - validation_fraction))
    train_part, valid_part = data[:split], data[split:]
    length = min(window, train_part.shape[0])
    if length < 8 or valid_part.shape[0] < 2:
        raise ValueError(f"too little data: {data.shape[0]} bins for window {window} and validation "
                         f"fraction {validation_fraction}")
    optimization = Optimization(model, learning_rate, steps, weight_decay=0.01, betas=(0.9, 0.999))
    best, best_state, losses, valid_losses = math.inf, copy.deepcopy(model.state_dict()), [], []
    for step in range(steps):
        starts = rng.integers(0, train_part.shape[0] - length + 1, size=batch)
        x = torch.stack([train_part[s:s + length] for s in starts])
        model.train()
        loss = next_bin_loss(model(torch.log1p(x)), x)
        losses.append(optimization.step(loss))
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            # validation bins predicted with the end of the training part as context
            context = torch.cat([train_part[-(window // 2):], valid_part])
            log_likelihood, _, _ = held_out_log_likelihood(model, context.cpu().numpy(), window,
                                                           first_scored=min(window // 2, train_part.shape[0]))
            value = -log_likelihood / (valid_part.shape[0] * valid_part.shape[1])
            valid_losses.append(value)
            if value < best:
                best, best_state = value, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return {"losses": np.asarray(losses), "validation": np.asarray(valid_losses), "best_validation": best}


@torch.no_grad()
def held_out_log_likelihood(model: nn.Module, counts: np.ndarray, window: int, first_scored: int = 1,
                            collect_hidden: bool = False, batch_windows: int = 64):
    """Sum over bins t >= first_scored of log p(y_t | y_<t) (nats), by sliding windows of
    ``window`` bins, stride window / 2. Returns (log-likelihood, scored bins [S], hidden
    activations per layer [S, d] or None). The prediction for bin t uses the output at t - 1."""
    model.eval()
    data = torch.as_tensor(counts, dtype=torch.float32, device=next(model.parameters()).device)
    num_bins = data.shape[0]
    window = min(window, num_bins)
    stride = max(1, window // 2)
    starts = list(range(0, num_bins - window + 1, stride))
    if starts[-1] + window < num_bins:
        starts.append(num_bins - window)
    plan, next_bin = [], first_scored                                 # (start, scored bins)
    for start in starts:
        bins = np.arange(max(next_bin, start + 1), start + window)
        if bins.size:
            plan.append((start, bins))
            next_bin = int(bins[-1]) + 1
    total, scored_bins, hidden_rows = 0.0, [], []
    for first in range(0, len(plan), batch_windows):
        group = plan[first:first + batch_windows]
        x = torch.stack([data[start:start + window] for start, _ in group])
        output = model(torch.log1p(x), return_hidden=collect_hidden)
        log_rate, hidden = output if collect_hidden else (output, None)
        for row, (start, bins) in enumerate(group):
            positions = torch.as_tensor(bins - start - 1, device=data.device)
            total += float(-poisson_nll(log_rate[row, positions], data[torch.as_tensor(bins, device=data.device)]).sum())
            scored_bins.append(bins)
            if collect_hidden:
                hidden_rows.append([h[row, positions].cpu().numpy() for h in hidden])
    scored = np.concatenate(scored_bins) if scored_bins else np.zeros(0, int)
    hidden = None
    if collect_hidden and hidden_rows:
        hidden = [np.concatenate([rows[layer] for rows in hidden_rows]) for layer in range(len(hidden_rows[0]))]
    return total, scored, hidden


def held_out_bits_per_spike(model, counts: np.ndarray, window: int, collect_hidden: bool = False):
    log_likelihood, scored, hidden = held_out_log_likelihood(model, counts, window, collect_hidden=collect_hidden)
    return bits_per_spike(log_likelihood, torch.as_tensor(counts[scored])), scored, hidden


def probe_accuracy(features: np.ndarray, states: np.ndarray, seed: int = 0) -> float:
    """Multinomial logistic-regression probe: fit on the first half of the bins, accuracy on
    the second half (contiguous halves: no leak through temporal correlation within a state)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    half = features.shape[0] // 2
    if np.unique(states[:half]).size < 2:
        return float("nan")
    scaler = StandardScaler().fit(features[:half])
    probe = LogisticRegression(max_iter=500, C=1.0, random_state=seed)
    probe.fit(scaler.transform(features[:half]), states[:half])
    return float((probe.predict(scaler.transform(features[half:])) == states[half:]).mean())
