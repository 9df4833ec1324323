"""Scores and figures of ``counterpart_what_when`` (helper module).

Scores (``neuro.reservoir.evaluation``) of every learner's trial-start ("probe") outputs
at one bin size: timing error of the "when" peak and the correlation of the fitted "what"
amplitudes with the true probabilities over blocks and identities, both from the mean
output of the last ``evaluation_trials`` of each block (as in ``what_when``); and the
trials to recover 90 % of the pre-switch performance (running mean over
``recovery_window`` trials) after the latency switch and the probability switch. Unlike
``what_when``, whose per-trial scores are the "when" NMSE inside the attention window and
the fitted-height score, the per-trial performance here is 1 - NMSE over the whole trial
(column 0 for "when", columns 1..M for "what"): one definition that every learner's output
(spiking or not) is held to. A recovery from a pre-switch performance <= 0 is not
informative: it counts as never (inf) in the ranking of ``verdict``.
"""
from __future__ import annotations

import numpy as np

from neuro.reservoir import evaluation as ev

COLORS = {"three_factor": "tab:green", "force": "tab:red", "force_reset": "tab:blue",
          "fast_weights": "tab:purple", "gated_fast_weights": "tab:brown", "softmax": "tab:orange"}


def unit_shapes(task, session, shapes, starts) -> np.ndarray:
    """[blocks, bins, R]: unit-height when pulse and what bump of each block's latency."""
    blocks = []
    for start in starts:
        s = shapes.shapes(session.latency_ms[start])
        blocks.append(np.concatenate([s["when"][:, None], np.repeat(s["bump"][:, None], task.num_identities, 1)], 1))
    return np.stack(blocks)


def score(config, task, session, shapes, ideal, outputs, seconds, macs):
    rc = config.reservoir
    starts = task.block_starts() + [session.num_trials]
    unit = unit_shapes(task, session, shapes, starts[:-1])
    # the ideal "when" peak at the same bin resolution (what_when's timing reference)
    onsets = ev.peak_times_ms(ideal[..., 0], config.bin_ms, task.cue_onset_ms + task.cue_ms)
    m, evaluation = task.num_identities, rc.evaluation_trials
    metrics, rows, performance = {}, [], {}
    for name, output in outputs.items():
        z = output[:, None]                                                   # [trials, 1, bins, R]
        when = ev.trial_performance(z, ideal, [0])[:, 0]
        what = ev.trial_performance(z, ideal, range(1, m + 1))[:, 0]
        performance[name] = (when, what)
        timing, heights, truths = [], [], []
        for b in range(len(starts) - 1):
            mean_output = output[starts[b + 1] - evaluation:starts[b + 1]].mean(0)
            peak = ev.peak_times_ms(mean_output[:, 0], config.bin_ms, task.cue_onset_ms + task.cue_ms)
            timing.append(float(peak - onsets[starts[b]]))
            heights.extend(ev.fitted_heights(mean_output[None], unit[b][None])[0][1:])
            truths.extend(session.probabilities[starts[b]])
        heights, truths = np.array(heights), np.array(truths)
        row = {"learner": name,
               "timing_error_ms": float(np.mean(np.abs(timing))),
               "what_probability_corr": float(np.corrcoef(heights, truths)[0, 1]) if np.std(heights) > 0 else float("nan"),
               "what_amplitude_error": float(np.mean(np.abs(heights - truths)))}
        for label, switch, perf in (("latency", starts[1], when), ("probability", starts[2], what)):
            trials, reference = ev.recovery_trials(perf, switch, reference_trials=evaluation,
                                                   window=rc.recovery_window)
            row[f"{label}_recovery_trials"] = trials
            row[f"{label}_reference_performance"] = reference
        row["when_performance_final"] = float(when[-evaluation:].mean())
        row["what_performance_final"] = float(what[-evaluation:].mean())
        row["seconds_per_trial"] = float(seconds[name])
        row["macs_per_trial"] = float(macs[name])
        rows.append(row)
        metrics.update({f"{name}_{key}": value for key, value in row.items() if key != "learner"})
    return metrics, rows, performance


def _informative_recovery(metrics, name, label) -> float:
    """Trials to recover after the switch; inf when the pre-switch performance was <= 0
    (nothing to recover) or not finite."""
    reference = metrics[f"{name}_{label}_reference_performance"]
    return metrics[f"{name}_{label}_recovery_trials"] if np.isfinite(reference) and reference > 0 else np.inf


def verdict(metrics, names) -> tuple[str | None, str]:
    """Fastest re-adapting learner (sum of recovery trials; inf if never, or from a
    pre-switch performance <= 0) among those whose final when and what performance is
    positive, and a sentence with its cost. None, and a sentence that says so, when no
    learner with positive final performance recovered after both switches (a learner that
    never recovers is not the fastest)."""
    usable = [n for n in names if metrics[f"{n}_when_performance_final"] > 0 and metrics[f"{n}_what_performance_final"] > 0]
    total = {n: _informative_recovery(metrics, n, "latency") + _informative_recovery(metrics, n, "probability")
             for n in usable}
    finite = [n for n in usable if np.isfinite(total[n])]
    best = min(finite, key=lambda n: (total[n], metrics[f"{n}_seconds_per_trial"])) if finite else None
    parts = [f"{n}: {_informative_recovery(metrics, n, 'latency'):.0f}+"
             f"{_informative_recovery(metrics, n, 'probability'):.0f} "
             f"trials, {metrics[f'{n}_seconds_per_trial'] * 1e3:.1f} ms/trial, {metrics[f'{n}_macs_per_trial']:.3g} MAC/trial"
             for n in names]
    if best is not None:
        head = f"fastest re-adaptation (latency + probability recovery trials): {best}. "
    elif usable:
        head = ("no learner with positive final performance recovered after both switches (latency + "
                "probability recovery trials): none is the fastest. ")
    else:
        head = "no learner ends with positive when and what performance: none is ranked. "
    return best, head + "; ".join(parts)


def plot_all(out, config, task, session, ideal, outputs, performance, metrics, losses) -> str:
    from matplotlib.figure import Figure

    names = list(outputs)
    starts = task.block_starts()
    best, text = verdict(metrics, names)
    metrics["fastest_learner_index"] = float(names.index(best)) if best is not None else float("nan")

    fig = Figure(figsize=(11, 5.5))
    axes = fig.subplots(2, 1, sharex=True)
    window = max(1, config.reservoir.recovery_window)
    for name in names:
        for ax, perf in zip(axes, performance[name]):
            smooth = np.convolve(perf, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(window - 1, len(perf)), np.clip(smooth, -1, 1), color=COLORS.get(name), label=name)
    for ax, label in zip(axes, ("when performance", "what performance")):
        for s in starts[1:]:
            ax.axvline(s, color="k", ls="--", lw=0.8)
        ax.set_ylabel(label), ax.set_ylim(-1, 1.05)
    axes[0].legend(fontsize=7, ncol=6), axes[1].set_xlabel("trial")
    out.save_figure(fig, "performance", caption="Per-trial performance 1 - ||z - y*||^2/||y*||^2 "
                    f"(running mean over {window} trials, clipped to [-1, 1]) of every learner; dashed: "
                    f"latency switch, probability switch. {text}")

    fig = Figure(figsize=(12, 2.4 * len(names)))
    axes = fig.subplots(len(names), 3, squeeze=False, sharex=True)
    bins = ideal.shape[1]
    time_ms = (np.arange(bins) + 0.5) * config.bin_ms
    ends = starts[1:] + [session.num_trials]
    evaluation = config.reservoir.evaluation_trials
    for row, name in enumerate(names):
        for b, end in enumerate(ends):
            ax = axes[row, b]
            mean_output, mean_ideal = outputs[name][end - evaluation:end].mean(0), ideal[end - evaluation:end].mean(0)
            for r in range(ideal.shape[-1]):
                line, = ax.plot(time_ms, mean_output[:, r], lw=1.2, label="when" if r == 0 else f"what {r}")
                ax.plot(time_ms, mean_ideal[:, r], color=line.get_color(), ls=":", lw=1)
            ax.set_title(f"{name}, block {b}", fontsize=8)
        axes[row, 0].legend(fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("time in trial (ms)")
    out.save_figure(fig, "outputs", caption="Mean output over the last evaluation trials of each block "
                    "(solid) against the expected-value target (dotted): when pulse and what bumps.")

    fig = Figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 2)
    for name in names:
        total = _informative_recovery(metrics, name, "latency") + _informative_recovery(metrics, name, "probability")
        shown = total if np.isfinite(total) else 2 * max(config.reservoir.trials_per_block)
        for ax, cost in zip(axes, ("seconds_per_trial", "macs_per_trial")):
            ax.scatter(max(metrics[f"{name}_{cost}"], 1e-6), shown, color=COLORS.get(name), s=50, label=name,
                       marker="o" if np.isfinite(total) else "x")
    for ax, label in zip(axes, ("measured seconds per trial (learner only)", "multiply-accumulates per trial")):
        ax.set_xscale("log"), ax.set_xlabel(label), ax.set_ylabel("recovery trials (latency + probability)")
    axes[0].legend(fontsize=7)
    out.save_figure(fig, "cost", caption="Re-adaptation against compute: lower left is better; x: never "
                    "recovered, or from a pre-switch performance <= 0 (drawn at twice the longest block). Reservoir learners exclude the shared "
                    "spiking simulation (see metrics).")

    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    for name, curve in losses.items():
        ax.plot(curve, color=COLORS.get(name), label=name)
    ax.set_yscale("log"), ax.set_xlabel("meta-training step"), ax.set_ylabel("episode MSE"), ax.legend(fontsize=7)
    out.save_figure(fig, "meta_training", caption="Slow-weight meta-training on episodes with other latencies "
                    "and probabilities.")
    return text
