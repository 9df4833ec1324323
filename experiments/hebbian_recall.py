"""Hebbian associative memory: recall quality vs number of stored pairs, against theory.

A memory M = sum_i v_i k_i^T stores n pairs of random unit keys k_i in R^d_k and
Rademacher values v_i in {-1, +1}^d_v. Reading with a stored key gives
v_hat = M k_j = v_j + sum_{i != j} (k_i . k_j) v_i; the crosstalk term has variance
(n - 1) / d_k per component, so the sign-retrieval bit error is Phi(-sqrt(d_k / (n - 1)))
(Qiao, arXiv 2508.08289; average-case O(d_k) capacity). This small study is the
foundation's end-to-end check (config, seeded computation, figure, metrics, report);
the full capacity study is ``pavlovian_capacity``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from experiments.store import RunDir


@dataclass(frozen=True)
class Config:
    key_dim: int = field(default=64, metadata={"min": 2, "max": 4096, "help": "d_k"})
    value_dim: int = field(default=64, metadata={"min": 1, "max": 4096, "help": "d_v"})
    load_ratios: tuple[float, ...] = field(
        default=(0.25, 0.5, 1.0, 2.0, 4.0), metadata={"min": 0.01, "max": 64.0,
                                                      "help": "n / d_k values to test"})
    trials: int = field(default=20, metadata={"min": 1, "max": 10_000, "help": "seeded trials"})


DEMO = {"trials": 10}


def predicted_bit_error(num_pairs: int, key_dim: int) -> float:
    """Phi(-sqrt(d_k / (n - 1))); zero for a single stored pair."""
    if num_pairs <= 1:
        return 0.0
    return 0.5 * math.erfc(math.sqrt(key_dim / (num_pairs - 1)) / math.sqrt(2.0))


def measured_bit_error(num_pairs: int, config: Config, rng: np.random.Generator) -> float:
    keys = rng.standard_normal((config.trials, num_pairs, config.key_dim))
    keys /= np.linalg.norm(keys, axis=-1, keepdims=True)
    values = rng.choice([-1.0, 1.0], size=(config.trials, num_pairs, config.value_dim))
    memory = np.einsum("tnv,tnk->tvk", values, keys)            # M = sum_i v_i k_i^T
    recalled = np.einsum("tvk,tnk->tnv", memory, keys)          # M k_j for every stored j
    return float(np.mean(np.sign(recalled) != values))


def run(config: Config, out: RunDir) -> dict[str, float]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    rng = np.random.default_rng(np.random.SeedSequence(out.seed))
    rows, measured, predicted = [], [], []
    # in increasing load: the curve is drawn, and bit_error_at_load_1 interpolated, along it
    for ratio in out.progress(sorted(config.load_ratios), desc="load"):
        num_pairs = max(1, round(ratio * config.key_dim))
        error = measured_bit_error(num_pairs, config, rng)
        theory = predicted_bit_error(num_pairs, config.key_dim)
        measured.append(error)
        predicted.append(theory)
        rows.append({"num_pairs": num_pairs, "load_ratio": num_pairs / config.key_dim,
                     "bit_error": error, "theory": theory})
        out.log(f"n={num_pairs}: bit error {error:.4f} (theory {theory:.4f})")
    out.save_table("recall", rows, caption="Sign-retrieval bit error per load n/d_k.")
    out.save_arrays("recall", load_ratio=[r["load_ratio"] for r in rows],
                    bit_error=measured, theory=predicted)

    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    loads = [r["load_ratio"] for r in rows]
    ax.plot(loads, predicted, "-", color="0.3", label=r"theory $\Phi(-\sqrt{d_k/(n-1)})$")
    ax.plot(loads, measured, "o", color="tab:red", label=f"simulation, d_k={config.key_dim}")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("stored pairs per key dimension, n / d_k")
    ax.set_ylabel("bit error of sign recall")
    ax.legend(frameon=False)
    out.save_figure(fig, "recall_curve", caption="Recall error of a Hebbian outer-product "
                    "memory vs load, with the crosstalk theory (Qiao, arXiv 2508.08289).")
    deviation = np.abs(np.asarray(measured) - np.asarray(predicted))
    # interpolated between the measured loads; NaN when n/d_k = 1 lies outside them (np.interp
    # would return the nearest end's error as if it had been measured at load 1)
    at_load_1 = float(np.interp(1.0, loads, measured)) if loads[0] <= 1.0 <= loads[-1] else float("nan")
    return {"max_abs_deviation_from_theory": float(deviation.max()),
            "bit_error_at_load_1": at_load_1,
            "num_loads": len(rows)}
