"""HMM-GLM recovery with no / Gaussian / one-hot priors at several training lengths.

Li et al., "One-hot Generalized Linear Model for Switching Brain State Discovery"
(ICLR 2024, arXiv 2310.15263), simulated setting: K=5 states, N=20 neurons, connection
types from a Dirichlet(0.2, 1.6, 0.2) prior whose argmax is the anatomical skeleton,
strengths log(1+3u) (problem (b) of ``neuro.hmmglm.simulate``). For every prior and
training length (nested prefixes of one long sample) it reports held-out bits per spike
(and the gap to the true parameters'), state accuracy after Hungarian matching on the training
bins (the inferred state path of the data fitted, against the true one), the
correlation of fitted and true coupling filters, and the 3-class connection-type accuracy
off the diagonal (one-hot: its fitted types; none/Gaussian: the sign of weights whose
magnitude exceeds the one-hot strength floor, our reading). It then checks the paper's
claim that the priors help most with little data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from experiments.store import RunDir
from neuro.hmmglm import HMMGLM, make_params, paper_problem

PRIOR_CHOICES = ("none", "gaussian", "onehot")


@dataclass(frozen=True)
class Config:
    train_lengths: tuple[int, ...] = field(default=(2000, 5000, 20000), metadata={
        "min": 50, "help": "training lengths (bins), nested prefixes"})
    test_length: int = field(default=10000, metadata={"min": 100, "help": "held-out bins"})
    priors: tuple[str, ...] = field(default=PRIOR_CHOICES, metadata={"choices": PRIOR_CHOICES,
                                                                     "help": "none, gaussian, onehot"})
    num_states: int = field(default=5, metadata={"min": 2, "max": 20, "help": "K (the simulated problem needs >= 2)"})
    num_neurons: int = field(default=20, metadata={"min": 2, "max": 200, "help": "N"})
    num_iters: int = field(default=100, metadata={"min": 1, "max": 1000, "help": "max EM iterations"})
    num_restarts: int = field(default=1, metadata={"min": 1, "max": 64, "help": "restarts per fit"})
    threads: int = field(default=1, metadata={"min": 1, "max": 64, "help": "torch threads"})

    def __post_init__(self):
        if not self.train_lengths or not self.priors:
            raise ValueError("train_lengths and priors must each name at least one value")


DEMO = {"train_lengths": (2000, 5000), "test_length": 5000}


def _match(true_states, inferred, k):
    overlap = np.zeros((k, k))
    np.add.at(overlap, (true_states, inferred), 1)
    rows, cols = linear_sum_assignment(-overlap)
    return overlap[rows, cols].sum() / len(true_states), cols


def _types(model: HMMGLM) -> np.ndarray:
    if model.settings.prior == "onehot":
        return model.prior_state.types.cpu().numpy()
    w = model.params.weights[..., 0].cpu().numpy() if model.basis.shape[0] == 1 else \
        model.params.weights.sum(-1).cpu().numpy()
    return np.where(np.abs(w) < model.settings.strength_floor, 0, np.sign(w)).astype(int)


def run(config: Config, out: RunDir) -> dict[str, float]:
    torch.set_num_threads(config.threads)
    k, n = config.num_states, config.num_neurons
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(out.seed).spawn(3)]
    problem = paper_problem(max(config.train_lengths), seed=seeds[0], num_states=k, num_neurons=n)
    truth = HMMGLM(k, n, basis=problem.basis, link=problem.link, device=out.device)
    truth.set_params(make_params(problem.initial, problem.transition, problem.bias, problem.weights))
    held_out, _, _ = truth.sample(config.test_length, seed=seeds[1])
    true_bps = truth.score(held_out)
    off = ~np.eye(n, dtype=bool)
    true_types = np.sign(problem.weights[..., 0]).astype(int)
    true_filters = problem.weights[..., 0]
    out.log(f"problem (b): K={k}, N={n}, rate {problem.spikes.mean():.3f} spikes/bin, "
            f"true held-out {true_bps:.4f} bits/spike")

    rows, metrics, curves, fitted = [], {"true_heldout_bits_per_spike": true_bps}, {}, {}
    for length in config.train_lengths:
        spikes, states = problem.spikes[:length], problem.states[:length]
        oracle = truth.posterior(spikes).smoothed[0].argmax(-1).cpu().numpy()
        for prior in out.progress(config.priors, desc=f"T={length}"):
            model = HMMGLM(k, n, basis=problem.basis, link=problem.link, prior=prior, device=out.device)
            history = model.fit(spikes, num_iters=config.num_iters, num_restarts=config.num_restarts,
                                seed=seeds[2])
            gamma = model.posterior(spikes).smoothed[0].cpu().numpy()
            accuracy, perm = _match(states, gamma.argmax(-1), k)
            model = model.permute(perm)
            weights = model.params.weights[..., 0].cpu().numpy()
            types = _types(model)
            row = {
                "prior": prior, "train_bins": length,
                "heldout_bits_per_spike": model.score(held_out),
                "gap_to_truth_bits_per_spike": true_bps - model.score(held_out),
                "state_accuracy": accuracy,
                "oracle_state_accuracy": float((oracle == states).mean()),
                "weight_correlation": float(np.corrcoef(weights.ravel(), true_filters.ravel())[0, 1]),
                "type_accuracy_off_diagonal": float((types == true_types)[:, off].mean()),
                "em_iterations": history["num_iters"], "fit_seconds": history["seconds"],
            }
            if prior == "onehot":
                learned = model.prior_state.log_type_prior.cpu().numpy().argmax(-1) - 1
                row["prior_argmax_matches_skeleton"] = float((learned == problem.skeleton)[off].mean())
            rows.append(row)
            curves[f"{prior}_{length}"] = np.asarray(history["objective"])
            fitted[(prior, length)] = model
            for key in ("heldout_bits_per_spike", "state_accuracy", "weight_correlation",
                        "type_accuracy_off_diagonal", "prior_argmax_matches_skeleton"):
                if key in row:
                    metrics[f"{prior}_{key}_T{length}"] = row[key]
            out.log(", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                              for key, value in row.items()))

    verdict = _claim(rows, config, metrics)
    out.save_table("recovery", rows, caption="Per prior and training length: held-out bits/spike "
                   "(gap = truth - model), state accuracy (Hungarian), weight correlation, "
                   "connection-type accuracy off the diagonal.")
    out.log(verdict)
    _figures(out, problem, truth, fitted, curves, rows, config, held_out)
    out.save_arrays("fits", **{f"weights_{p}_{t}": m.params.weights.cpu().numpy()
                               for (p, t), m in fitted.items()},
                    true_weights=problem.weights, skeleton=problem.skeleton)
    return metrics


def _claim(rows, config, metrics) -> str:
    """Does a prior's held-out gain over no prior shrink as the training set grows?"""
    if "none" not in config.priors or len(config.train_lengths) < 2:
        return "claim not tested (needs the 'none' prior and two lengths)"
    by = {(r["prior"], r["train_bins"]): r["heldout_bits_per_spike"] for r in rows}
    short, long = min(config.train_lengths), max(config.train_lengths)
    lines = []
    for prior in config.priors:
        if prior == "none":
            continue
        gain_short = by[(prior, short)] - by[("none", short)]
        gain_long = by[(prior, long)] - by[("none", long)]
        metrics[f"{prior}_gain_over_none_bits_per_spike_T{short}"] = gain_short
        metrics[f"{prior}_gain_over_none_bits_per_spike_T{long}"] = gain_long
        holds = gain_short > gain_long and gain_short > 0
        metrics[f"{prior}_helps_most_with_little_data"] = bool(holds)
        lines.append(f"{prior}: gain over no prior {gain_short:+.4f} bits/spike at T={short}, "
                     f"{gain_long:+.4f} at T={long}: claim {'holds' if holds else 'does NOT hold'}")
    return "; ".join(lines)


def _figures(out, problem, truth, fitted, curves, rows, config, held_out):
    from matplotlib.figure import Figure

    longest = max(config.train_lengths)
    k = problem.bias.shape[0]
    priors = [p for p in config.priors if (p, longest) in fitted]
    fig = Figure(figsize=(2.2 * k, 2.2 * (1 + len(priors))))
    axes = fig.subplots(1 + len(priors), k, squeeze=False)
    limit = np.abs(problem.weights).max()
    for col in range(k):
        panels = [("true", problem.weights[col, ..., 0])] + [
            (p, fitted[(p, longest)].params.weights[col, ..., 0].cpu().numpy()) for p in priors]
        for row, (label, matrix) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{label}, state {col}", fontsize=8)
    out.save_figure(fig, "coupling_matrices", caption=f"True vs fitted coupling matrices per state "
                    f"(rows: truth, then each prior; T={longest} bins; red excitatory, blue inhibitory).")

    if ("onehot", longest) in fitted:
        model = fitted[("onehot", longest)]
        prob = np.exp(model.prior_state.log_type_prior.cpu().numpy())
        fig = Figure(figsize=(10, 3.2))
        axes = fig.subplots(1, 3)
        axes[0].imshow(problem.skeleton, cmap="RdBu_r", vmin=-1, vmax=1)
        axes[0].set_title("skeleton (argmax of true type prior)", fontsize=8)
        axes[1].imshow(prob.argmax(-1) - 1, cmap="RdBu_r", vmin=-1, vmax=1)
        axes[1].set_title("argmax of learned prior", fontsize=8)
        image = axes[2].imshow(prob[..., 2] - prob[..., 0], cmap="RdBu_r", vmin=-1, vmax=1)
        axes[2].set_title("learned p(exc) - p(inh)", fontsize=8)
        fig.colorbar(image, ax=axes[2])
        out.save_figure(fig, "learned_prior", caption="The one-hot model's learned connection-type "
                        "prior (shared across states) against the anatomical skeleton.")

        window = slice(0, min(3000, longest))
        inferred = model.most_likely_states(problem.spikes[:longest])
        fig = Figure(figsize=(10, 2.4))
        ax = fig.subplots()
        ax.plot(problem.states[window], lw=1.2, label="true")
        ax.plot(inferred[window] + 0.1, lw=0.8, label="inferred (Viterbi, one-hot)")
        ax.set_xlabel("time bin"), ax.set_ylabel("state"), ax.legend(fontsize=7)
        out.save_figure(fig, "state_raster", caption="True vs inferred state sequence (first bins).")

    fig = Figure(figsize=(10, 3.2))
    axes = fig.subplots(1, 2)
    for name, curve in curves.items():
        if name.endswith(f"_{longest}"):
            axes[0].plot(curve, label=name.rsplit("_", 1)[0])
    axes[0].set_xlabel("EM iteration (one-hot: warm-up, then one-hot phase)")
    axes[0].set_ylabel("log-likelihood + log-prior (nats)"), axes[0].legend(fontsize=7)
    for prior in config.priors:
        values = [(r["train_bins"], r["heldout_bits_per_spike"]) for r in rows if r["prior"] == prior]
        axes[1].plot(*zip(*values), marker="o", label=prior)
    axes[1].axhline(truth.score(held_out), color="k", ls="--", lw=0.8, label="true parameters")
    axes[1].set_xscale("log"), axes[1].set_xlabel("training bins")
    axes[1].set_ylabel("held-out bits/spike"), axes[1].legend(fontsize=7)
    out.save_figure(fig, "loglik_curves", caption="Left: EM objective per iteration at the longest "
                    "length. Right: held-out bits per spike vs training length.")
