"""Pavlovian capacity: recall of a Hebbian (linear-attention) memory vs load n/d_k, with theory.

Qiao, "Understanding Transformers through the Lens of Pavlovian Conditioning"
(arXiv:2508.08289). For each key size d_k, store n = ratio * d_k random pairs (unit keys,
Rademacher values) in seeded memories (``num_trials`` at the largest d_k; by default scaled by
max(d_k)/d_k so every point stores as many items: with a flat 20 trials the d_k = 32 point
has a standard error of ~0.003 in bit error, too coarse for a 0.005 criterion) and
recall each by its cue. Measured:
sign bit error and cosine against the theory Phi(-sqrt(d_k/(n-1))) and
(1+(n-1)/d_k)^(-1/2) (average case, O(d_k) capacity); whether the curves of all d_k
collapse on n/d_k; top-1 identification as the control that does not follow the law;
forgetting curves by item age under synaptic decay; and the Hebbian write against the
delta-rule write (beta = 1) beyond capacity. The worst-case coherence bound (~sqrt(d_k),
the paper's first abstract) is listed beside the measured capacity.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from experiments.store import RunDir


@dataclass(frozen=True)
class Config:
    key_dims: tuple[int, ...] = field(default=(32, 64, 128, 256),
                                      metadata={"min": 2, "help": "key sizes d_k"})
    load_ratios: tuple[float, ...] = field(
        default=(0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
        metadata={"min": 0.001, "max": 64.0, "help": "n / d_k (n rounded to an integer)"})
    value_dim: int = field(default=64, metadata={"min": 1, "help": "d_v (bits per value)"})
    num_trials: int = field(default=20, metadata={"min": 1, "help": "seeded memories per point "
                                                   "at the largest d_k"})
    equalize_items: bool = field(default=True, metadata={
        "help": "scale trials by max(key_dims)/d_k so every point stores the same number of "
                "items (equal statistical weight)"})
    forgetting_key_dim: int = field(default=64, metadata={"min": 2, "help": "d_k of the "
                                                          "forgetting study"})
    forgetting_num_pairs: int = field(default=256, metadata={"min": 2, "help": "items stored in "
                                                             "the forgetting study"})
    decays: tuple[float, ...] = field(default=(1.0, 0.99, 0.97, 0.9),
                                      metadata={"min": 0.01, "max": 1.0,
                                                "help": "synaptic decay factors per write"})
    delta_write_strength: float = field(default=1.0, metadata={"min": 0.0, "max": 2.0,
                                                               "help": "beta of the delta rule"})
    collapse_tolerance: float = field(default=0.01, metadata={"min": 0.0, "help": "max spread of "
                                                              "bit error across d_k"})
    theory_tolerance: float = field(default=0.005, metadata={"min": 0.0, "help": "max |sim - "
                                                             "theory| of the mean bit error"})

    def __post_init__(self):
        # a config error (exit 2, before any run directory): with one d_k the collapse on
        # n/d_k tests nothing, and its spread 0 read as "the curves collapse"
        for name in ("key_dims", "load_ratios", "decays"):  # curves are drawn in this order
            object.__setattr__(self, name, tuple(sorted(getattr(self, name), reverse=name == "decays")))
        if len(set(self.key_dims)) < 2:
            raise ValueError(f"key_dims: {list(self.key_dims)} gives one key size; the study "
                              "compares the error curves of at least two (e.g. [32, 64])")


DEMO = {"num_trials": 10, "forgetting_num_pairs": 128}


def _trials(config: Config, key_dim: int) -> int:
    """Trials for a d_k: ``num_trials``, times max(key_dims)/d_k when ``equalize_items``."""
    if not config.equalize_items:
        return config.num_trials
    return round(config.num_trials * max(config.key_dims) / key_dim)


def _capacity_sweep(config: Config, seeds, out: RunDir):
    from bridges.pavlovian import predicted_bit_error, predicted_cosine, simulate_recall

    rows = []
    points = [(d, r) for d in config.key_dims for r in config.load_ratios]
    for (key_dim, ratio), seed in zip(out.progress(points, desc="capacity"), seeds):
        num_pairs = max(1, round(ratio * key_dim))
        trials = _trials(config, key_dim)
        stats = simulate_recall(num_pairs, key_dim, config.value_dim, trials,
                                seed=int(seed.generate_state(1)[0]), device=out.device)
        rows.append({"key_dim": key_dim, "num_pairs": num_pairs, "load": num_pairs / key_dim,
                     "trials": trials,
                     "ratio": ratio, "bit_error": float(stats.bit_error.mean()),
                     "bit_error_theory": float(predicted_bit_error(num_pairs, key_dim)),
                     "cosine": float(stats.cosine.mean()),
                     "cosine_theory": float(predicted_cosine(num_pairs, key_dim)),
                     "top1": float(stats.top1.mean())})
    return rows


def _spread(rows, column):
    """Max over load ratios of (max - min across d_k) of ``column``."""
    spreads = []
    for ratio in sorted({r["ratio"] for r in rows}):
        values = [r[column] for r in rows if r["ratio"] == ratio]
        spreads.append(max(values) - min(values))
    return max(spreads)


def _forgetting(config: Config, seeds, out: RunDir):
    from bridges.pavlovian import predicted_forgetting, simulate_recall

    curves, deviations = {}, {}
    n, d = config.forgetting_num_pairs, config.forgetting_key_dim
    for decay, seed in zip(config.decays, seeds):
        stats = simulate_recall(n, d, config.value_dim, _trials(config, d), decay=decay,
                                seed=int(seed.generate_state(1)[0]), device=out.device)
        measured = stats.bit_error.mean(0)[::-1]            # by age, 0 = newest
        theory, _ = predicted_forgetting(n, d, decay)
        curves[decay] = (measured, theory)
        deviations[decay] = float(np.abs(measured - theory).mean())
    return curves, deviations


def _rules(config: Config, seeds, out: RunDir):
    from bridges.pavlovian import simulate_recall

    rows, by_age = [], {}
    d = config.forgetting_key_dim
    for ratio, seed in zip(config.load_ratios, seeds):
        n = max(1, round(ratio * d))
        for rule in ("hebbian", "delta"):
            stats = simulate_recall(n, d, config.value_dim, _trials(config, d), rule=rule,
                                    write_strength=config.delta_write_strength if rule == "delta"
                                    else 1.0, seed=int(seed.generate_state(1)[0]),
                                    device=out.device)
            rows.append({"rule": rule, "key_dim": d, "num_pairs": n, "load": n / d,
                         "bit_error": float(stats.bit_error.mean()),
                         "newest_bit_error": float(stats.bit_error[:, -1].mean()),
                         "cosine": float(stats.cosine.mean())})
            by_age[(rule, ratio)] = stats.bit_error.mean(0)[::-1]
    return rows, by_age


def _load_axis(ax, ratios) -> None:
    """Log x axis with the load ratios as plain tick labels (no crowded minor labels)."""
    from matplotlib.ticker import NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(list(ratios), [f"{r:g}" for r in ratios])


def _against(value: float, tolerance: float, holds: bool) -> tuple[str, str]:
    """``value`` (3 decimals) and ``tolerance`` (%g) as a caption prints them, with more
    digits where those would read on the wrong side: read as printed, value <= tolerance
    exactly when ``holds`` (never "0.004 (above 0.0044)")."""
    for digits in range(3, 18):
        shown, limit = f"{value:.{digits}f}", f"{tolerance:.{max(digits, 6)}g}"
        if (float(shown) <= float(limit)) == bool(holds):
            return shown, limit
    return repr(float(value)), repr(float(tolerance))


def _top1_caption(spread: float, tolerance: float) -> str:
    """Caption of the top-1 control from its measured spread across d_k at equal n/d_k: it
    says the control departs from the n/d_k law only when that spread exceeds the collapse
    tolerance (at low loads top-1 sits at 1 for every d_k and collapses like the bit error)."""
    departs = spread > tolerance
    shown, limit = _against(spread, tolerance, not departs)
    head = ("Control: top-1 identification among the stored values (it depends on n itself: "
            f"more candidates). Spread across d_k at equal n/d_k: {shown}")
    if departs:
        return f"{head}, above the collapse tolerance {limit}: it does not collapse on n/d_k."
    return (f"{head}, within the collapse tolerance {limit}: at these loads the control does not "
            "depart from the n/d_k law.")


def _figures(config: Config, rows, curves, rule_rows, by_age, metrics, out: RunDir) -> None:
    """The figures; captions state what was measured (``metrics``), not what was expected."""
    from matplotlib.figure import Figure

    from bridges.pavlovian import predicted_bit_error, predicted_cosine

    fine = np.geomspace(min(config.load_ratios), max(config.load_ratios), 200)
    big = 4096                                    # the large-d_k limit of the law
    for column, theory, label, name in (
            ("bit_error", predicted_bit_error(np.maximum(1, fine * big), big),
             "bit error of sign recall", "capacity_bit_error"),
            ("cosine", predicted_cosine(np.maximum(1, fine * big), big),
             "mean cosine(recall, value)", "capacity_cosine"),
            ("top1", None, "top-1 identification accuracy", "top1_control")):
        fig = Figure(figsize=(5.8, 3.8))
        ax = fig.subplots()
        if theory is not None:
            ax.plot(fine, theory, "-", color="0.3", lw=1.5, label="theory (d_k -> inf)")
        for key_dim in config.key_dims:
            points = [r for r in rows if r["key_dim"] == key_dim]
            ax.plot([r["load"] for r in points], [r[column] for r in points], "o--", ms=4,
                    lw=0.8, label=f"d_k = {key_dim}")
        _load_axis(ax, config.load_ratios)
        ax.set_xlabel("stored pairs per key dimension, n / d_k")
        ax.set_ylabel(label)
        ax.legend(frameon=False, fontsize=8)
        collapse = "within" if metrics["collapse_holds"] else "above"
        match = "within" if metrics["theory_match"] else "above"
        spread, spread_limit = _against(metrics["collapse_spread_bit_error"], config.collapse_tolerance,
                                        metrics["collapse_holds"])
        deviation, deviation_limit = _against(metrics["max_theory_deviation_bit_error"],
                                              config.theory_tolerance, metrics["theory_match"])
        caption = {"capacity_bit_error": "Sign-recall bit error vs load for every d_k, with the "
                   "theory Phi(-sqrt(d_k/(n-1))). Spread across d_k at equal n/d_k: "
                   f"{spread} ({collapse} the collapse tolerance {spread_limit}); largest "
                   f"|simulation - theory|: {deviation} ({match} {deviation_limit}).",
                   "capacity_cosine": "Mean cosine of recall and stored value vs load, with "
                   "(1+(n-1)/d_k)^(-1/2); largest |simulation - theory|: "
                   f"{metrics['max_theory_deviation_cosine']:.3f}.",
                   "top1_control": _top1_caption(metrics["top1_collapse_spread"],
                                                 config.collapse_tolerance)}
        out.save_figure(fig, name, caption=caption[name])

    fig = Figure(figsize=(5.8, 3.8))
    ax = fig.subplots()
    for decay, (measured, theory) in curves.items():
        line, = ax.plot(measured, ".", ms=3, alpha=0.7, label=f"decay {decay:g}")
        ax.plot(theory, "-", color=line.get_color(), lw=1)
    ax.set_xlabel("item age (writes since it was stored)")
    ax.set_ylabel("bit error")
    ax.legend(frameon=False, fontsize=8)
    out.save_figure(fig, "forgetting", caption=(
        f"Forgetting curves: bit error by age, {config.forgetting_num_pairs} items, d_k = "
        f"{config.forgetting_key_dim}; dots simulation, lines theory (signal a^s against the "
        "decayed crosstalk of all other items)."))

    fig = Figure(figsize=(9.5, 3.6))
    left, right = fig.subplots(1, 2)
    for rule in ("hebbian", "delta"):
        points = [r for r in rule_rows if r["rule"] == rule]
        left.plot([r["load"] for r in points], [r["bit_error"] for r in points], "o-", ms=4,
                  label=f"{rule}: all items")
        left.plot([r["load"] for r in points], [r["newest_bit_error"] for r in points], "x:",
                  label=f"{rule}: newest item")
        largest = max(config.load_ratios)
        right.plot(by_age[(rule, largest)], ".", ms=3, label=rule)
    _load_axis(left, config.load_ratios)
    left.set_xlabel("n / d_k")
    left.set_ylabel("bit error")
    left.legend(frameon=False, fontsize=8)
    right.set_xlabel(f"item age at n/d_k = {max(config.load_ratios):g}")
    right.set_ylabel("bit error")
    right.legend(frameon=False, fontsize=8)
    hebbian, delta = metrics["hebbian_bit_error_at_max_load"], metrics["delta_bit_error_at_max_load"]
    newest = metrics["delta_newest_bit_error_at_max_load"]
    out.save_figure(fig, "hebbian_vs_delta", caption=(
        f"Hebbian vs delta-rule (beta = {config.delta_write_strength:g}) writes. At the largest "
        f"load: bit error {hebbian:.3f} (Hebbian, all items), {delta:.3f} (delta, all items), "
        f"{newest:.3f} (delta, newest item): the delta rule "
        + ("keeps its newest item cleaner than the Hebbian memory keeps its items on average" if newest < hebbian
           else "does not keep its newest item cleaner than the Hebbian average here")
        + ". Expected beyond capacity: Hebbian degrades every item alike, delta overwrites the old."))


def run(config: Config, out: RunDir) -> dict[str, float]:
    from bridges.pavlovian import predicted_bit_error, worst_case_capacity

    if not config.key_dims or not config.load_ratios or not config.decays:
        raise ValueError("key_dims, load_ratios and decays must each name at least one value")
    streams = np.random.SeedSequence(out.seed).spawn(3)
    num_points = len(config.key_dims) * len(config.load_ratios)
    rows = _capacity_sweep(config, streams[0].spawn(num_points), out)
    curves, deviations = _forgetting(config, streams[1].spawn(len(config.decays)), out)
    rule_rows, by_age = _rules(config, streams[2].spawn(len(config.load_ratios)), out)

    out.save_table("capacity", rows, caption="Mean over trials per (d_k, n): simulation and "
                   "theory.")
    out.save_table("rules", rule_rows, caption="Hebbian vs delta-rule write at d_k = "
                   f"{config.forgetting_key_dim}.")
    out.save_arrays("capacity", **{k: np.array([r[k] for r in rows]) for k in rows[0]})
    out.save_arrays("forgetting", decays=np.array(list(curves)),
                    measured=np.stack([m for m, _ in curves.values()]),
                    theory=np.stack([t for _, t in curves.values()]))
    bit_deviation = max(abs(r["bit_error"] - r["bit_error_theory"]) for r in rows)
    cosine_deviation = max(abs(r["cosine"] - r["cosine_theory"]) for r in rows)
    spread = _spread(rows, "bit_error")
    largest = max(config.load_ratios)
    top_load = max(r["load"] for r in rule_rows)
    at_largest = {r["rule"]: r for r in rule_rows if r["load"] == top_load}
    metrics = {
        "collapse_spread_bit_error": spread,
        "collapse_holds": spread <= config.collapse_tolerance,
        "max_theory_deviation_bit_error": bit_deviation,
        "theory_match": bit_deviation <= config.theory_tolerance,
        "max_theory_deviation_cosine": cosine_deviation,
        "top1_collapse_spread": _spread(rows, "top1"),
        "forgetting_max_mean_abs_deviation": max(deviations.values()),
        "hebbian_bit_error_at_max_load": at_largest["hebbian"]["bit_error"],
        "delta_bit_error_at_max_load": at_largest["delta"]["bit_error"],
        "delta_newest_bit_error_at_max_load": at_largest["delta"]["newest_bit_error"],
        "max_load": largest,
    }
    # Average-case load at 1 % bit error (theory, large d_k) vs the worst-case guarantee.
    loads = np.geomspace(1e-3, 10, 4000)
    metrics["load_at_1pct_bit_error_theory"] = float(
        loads[np.argmax(predicted_bit_error(np.maximum(1, loads * 4096), 4096) > 0.01)])
    for key_dim in config.key_dims:
        metrics[f"worst_case_capacity_dk{key_dim}"] = worst_case_capacity(key_dim)
    _figures(config, rows, curves, rule_rows, by_age, metrics, out)
    out.log(f"collapse spread {spread:.4f}, max |sim - theory| {bit_deviation:.4f}, "
            f"top-1 spread {metrics['top1_collapse_spread']:.3f}")
    return metrics
