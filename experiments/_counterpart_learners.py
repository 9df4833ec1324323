"""Transformer-side learners of the ``counterpart_what_when`` study (helper module).

Both read the what/when task in bins (inputs [bins, C] per trial) through a small causal
slow-weight encoder (:class:`bridges.counterpart_model.ContinuousSequenceModel`, one trial
at a time) that emits a query q_t, a key k_t (unit norm) and, for the fast-weight memory,
a write strength beta_t per bin. Across trials they differ only in the memory:

* ``fast_weights``: a delta-rule memory S [K, R] (:mod:`bridges.fast_weights`) read with
  the trial's queries at the trial start (z_t = q_t S), then written with the trial's
  (key, target) pairs -- test-time memorisation; fixed state, whole history.
* ``gated_fast_weights``: the same with a learned forgetting gate (gated delta rule,
  arXiv:2412.06464; Titans' forgetting): before each write the memory decays by
  exp(g_t), g_t = logsigmoid(u_t) / bins, so the retention over a trial is the geometric
  mean of sigmoid(u_t) over its bins (our parameterisation; u_t from the encoder, its bias
  initialised at +2, i.e. ~0.88 retention per trial).
* ``softmax``: softmax attention from the trial's queries over the (key, target) pairs of
  the last ``context_trials`` trials, z_t = sum_s softmax_s(tau q_t . k_s) y_s; the cache
  grows with the context.

The slow weights are meta-trained (gradient through the memory) on episodes whose
latencies and probabilities differ from the test session's, with one switch per episode;
at test time they are frozen and only the memory changes. Our construction (the issue
asks for "test-time memorisation, Titans style", arXiv:2501.00663); the episode design,
sizes and optimiser are our choices.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bridges.counterpart_model import ContinuousSequenceModel
from bridges.fast_weights import initial_memory, read, write
from bridges.training import Optimization

KINDS = ("fast_weights", "gated_fast_weights", "softmax")


class TrialShapes:
    """Binned unit shapes of the task per latency, composed into trials of any identity and
    probabilities exactly as ``WhatWhenTask.trial`` builds them (then bin-averaged)."""

    def __init__(self, task, dt_ms: float, bin_ms: float):
        from neuro.reservoir.task import TaskSession

        self.task, self.dt_ms, self.bin_steps = task, dt_ms, round(bin_ms / dt_ms)
        self._session = TaskSession
        self._cache: dict[float, dict] = {}

    def _bin(self, array: np.ndarray) -> np.ndarray:
        bins = array.shape[0] // self.bin_steps
        return array[: bins * self.bin_steps].reshape(bins, self.bin_steps, *array.shape[1:]).mean(1)

    def shapes(self, latency_ms: float) -> dict:
        key = float(latency_ms)
        if key not in self._cache:
            m = self.task.num_identities
            fake = self._session(block=np.zeros(1, int), latency_ms=np.array([key]),
                                 identity=np.zeros(1, int), probabilities=np.ones((1, m)))
            arrays = self.task.trial(fake, 0, self.dt_ms, dtype=torch.float64)
            inputs = self._bin(arrays.inputs.numpy())
            self._cache[key] = {"cue": inputs[:, 0], "stimulus": inputs[:, 1],
                                "trace": inputs[:, 1 + m] if inputs.shape[1] > 1 + m else None,
                                "when": self._bin(arrays.ideal.numpy()[:, 0]),
                                "bump": self._bin(arrays.ideal.numpy()[:, 1]),
                                "gate": self._bin(arrays.gate.numpy())}
        return self._cache[key]

    def trials(self, latency_ms, identity, probabilities):
        """Arrays per trial n: inputs [n, bins, C], target, ideal [n, bins, 1 + M] (float32)."""
        latency_ms, identity = np.asarray(latency_ms, float), np.asarray(identity, int)
        probabilities = np.asarray(probabilities, float)
        m, c = self.task.num_identities, self.task.num_inputs
        bins = self.shapes(latency_ms[0])["cue"].shape[0]
        n = latency_ms.shape[0]
        inputs, target, ideal = np.zeros((n, bins, c)), np.zeros((n, bins, 1 + m)), np.zeros((n, bins, 1 + m))
        for i in range(n):
            s = self.shapes(latency_ms[i])
            inputs[i, :, 0] = s["cue"]
            if s["trace"] is not None:
                inputs[i, :, 1 + m] = s["trace"]
            if identity[i] >= 0:
                inputs[i, :, 1 + identity[i]] = s["stimulus"]
                target[i, :, 1 + identity[i]] = s["bump"]
            target[i, :, 0] = ideal[i, :, 0] = s["when"]
            ideal[i, :, 1:] = s["bump"][:, None] * probabilities[i][None, :]
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)
        return as_tensor(inputs), as_tensor(target), as_tensor(ideal)


def sample_episodes(shapes: TrialShapes, batch: int, trials: int, latencies_ms, rng: np.random.Generator):
    """Meta-training episodes [batch, trials, bins, .]: one block switch per episode at a
    random trial in [trials/4, 3 trials/4]; at the switch the latency, the probabilities or
    both change (equally likely). Probabilities (p_1..p_M, p_none) ~ Dirichlet(1)."""
    m = shapes.task.num_identities
    lat, ident, probs = np.zeros((batch, trials)), np.zeros((batch, trials), int), np.zeros((batch, trials, m))
    for b in range(batch):
        switch = int(rng.integers(trials // 4, 3 * trials // 4 + 1))
        first_latency, first_p = rng.choice(latencies_ms), rng.dirichlet(np.ones(m + 1))[:m]
        kind = int(rng.integers(3))
        second_latency = rng.choice([x for x in latencies_ms if x != first_latency]) if kind != 1 else first_latency
        second_p = rng.dirichlet(np.ones(m + 1))[:m] if kind != 0 else first_p
        for t in range(trials):
            lat[b, t], p = (first_latency, first_p) if t < switch else (second_latency, second_p)
            probs[b, t] = p
            draw = rng.choice(m + 1, p=np.append(p, max(0.0, 1 - p.sum())) / max(1.0, p.sum() + max(0.0, 1 - p.sum())))
            ident[b, t] = draw if draw < m else -1
    inputs, target, ideal = shapes.trials(lat.ravel(), ident.ravel(), probs.reshape(-1, m))
    unflat = lambda x: x.reshape(batch, trials, *x.shape[1:])
    return unflat(inputs), unflat(target), unflat(ideal)


class Counterpart(nn.Module):
    """Slow encoder + cross-trial memory of one ``kind`` (module docstring)."""

    def __init__(self, kind: str, num_inputs: int, num_readouts: int, bins: int, *, pattern: str,
                 model_dim: int, key_dim: int, context_trials: int, seed=0, device="cpu"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.key_dim, self.num_readouts = kind, key_dim, num_readouts
        self.context_trials = context_trials
        self.bins = bins
        self.encoder = ContinuousSequenceModel(num_inputs, 2 * key_dim + 2, pattern=pattern,
                                               model_dim=model_dim, num_heads=2, max_length=bins,
                                               seed=seed, device=device)
        with torch.no_grad():
            self.encoder.readout.bias[-1] = 2.0
        # softmax temperature (log tau); unit keys and queries need tau >> 1 to be selective
        self.log_temperature = nn.Parameter(torch.tensor(math.log(10.0), device=device))

    def encode(self, inputs: Tensor):
        """inputs [n, bins, C] -> queries, keys [n, bins, K] (unit norm), beta [n, bins],
        log decay [n, bins] (None unless gated)."""
        out = self.encoder(inputs)
        q = F.normalize(out[..., :self.key_dim], dim=-1)
        k = F.normalize(out[..., self.key_dim:2 * self.key_dim], dim=-1)
        gated = self.kind == "gated_fast_weights"
        log_decay = F.logsigmoid(out[..., -1]) / self.bins if gated else None
        return q, k, torch.sigmoid(out[..., -2]), log_decay

    def episode(self, inputs: Tensor, target: Tensor) -> Tensor:
        """Predictions [B, E, bins, R] for episodes inputs [B, E, bins, C], each trial read from
        the memory left by the episode's earlier trials (differentiable)."""
        batch, trials, _bins, _ = inputs.shape
        q, k, beta, log_decay = self.encode(inputs.flatten(0, 1))
        q, k, beta = (x.unflatten(0, (batch, trials)) for x in (q, k, beta))
        if self.kind == "softmax":
            return self._softmax_episode(q, k, target)
        log_decay = None if log_decay is None else log_decay.unflatten(0, (batch, trials))
        state = initial_memory(batch, self.key_dim, self.num_readouts, device=inputs.device)
        predictions = []
        for t in range(trials):
            predictions.append(read(state, q[:, t]))
            state = write(state, k[:, t], target[:, t], beta[:, t], None if log_decay is None else log_decay[:, t])
        return torch.stack(predictions, 1)

    def _softmax_episode(self, q, k, target):
        _batch, trials, bins, _ = q.shape
        trial_of = torch.arange(trials, device=q.device).repeat_interleave(bins)
        lag = trial_of[:, None] - trial_of[None, :]
        allowed = (lag >= 1) & (lag <= self.context_trials)
        scores = torch.einsum("btk,bsk->bts", q.flatten(1, 2), k.flatten(1, 2)) * self.log_temperature.exp()
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1).nan_to_num(0.0)
        out = weights @ target.flatten(1, 2)
        return out.unflatten(1, (trials, bins))

    @torch.no_grad()
    def stream_trial(self, state, inputs: Tensor, target: Tensor):
        """One test trial: inputs, target [bins, .] -> (prediction [bins, R] from the memory at
        the trial start, memory after writing the trial)."""
        q, k, beta, log_decay = self.encode(inputs.unsqueeze(0))
        if self.kind != "softmax":
            state = state if state is not None else initial_memory(1, self.key_dim, self.num_readouts,
                                                                   device=inputs.device)
            prediction = read(state, q)[0]
            return prediction, write(state, k, target.unsqueeze(0), beta, log_decay)
        keys, values = state if state is not None else ([], [])
        if keys:
            cache_k, cache_v = torch.cat(keys), torch.cat(values)
            weights = torch.softmax(q[0] @ cache_k.T * self.log_temperature.exp(), dim=-1)
            prediction = weights @ cache_v
        else:
            prediction = torch.zeros(q.shape[1], self.num_readouts, device=inputs.device)
        keys, values = (keys + [k[0]])[-self.context_trials:], (values + [target])[-self.context_trials:]
        return prediction, (keys, values)

    def macs_per_trial(self, bins: int) -> int:
        """Multiply-accumulates per test trial: encoder linear layers and mixers, plus the memory
        (fast weights: read K R + write ~3 K R per bin; softmax: C bins (K + R) per query bin)."""
        linear = sum(m.in_features * m.out_features for m in self.encoder.modules() if isinstance(m, nn.Linear))
        config = self.encoder.config
        mixer = len(config.pattern) * 3 * config.model_dim * (config.model_dim // config.num_heads)
        encoder = bins * (linear + mixer)
        if self.kind != "softmax":
            gate = int(self.kind == "gated_fast_weights")
            return int(encoder + bins * (4 + gate) * self.key_dim * self.num_readouts)
        return int(encoder + bins * self.context_trials * bins * (self.key_dim + self.num_readouts))


def meta_train(model: Counterpart, shapes: TrialShapes, *, steps: int, batch: int, trials: int,
               latencies_ms, learning_rate: float, rng: np.random.Generator, device="cpu",
               progress=None) -> np.ndarray:
    """AdamW on the episode MSE between predictions and the (outcome) targets; returns losses."""
    optimization = Optimization(model, learning_rate, steps, weight_decay=0.01, betas=(0.9, 0.999))
    losses = []
    for _ in (progress(range(steps)) if progress else range(steps)):
        inputs, target, _ = sample_episodes(shapes, batch, trials, latencies_ms, rng)
        inputs, target = inputs.to(device), target.to(device)
        loss = F.mse_loss(model.episode(inputs, target), target)
        losses.append(optimization.step(loss))
    model.eval()
    return np.asarray(losses)
