"""Dynamic functional connectome: recover planted epochs and communities from calcium traces.

The pipeline of Dyballa et al. (arXiv 2402.14102) on our synthetic generator
(`make_dynamic_connectome`): traces of several animals -> sliding-window affinity tensor
(pairs x windows x animals) -> non-negative CP -> weighted-SBM communities of each component's
pair pattern (Louvain as the baseline). Each epoch is matched to the component whose time
course best correlates with the epoch indicator; metrics are that correlation, the cosine of
the component's animal loadings with the planted participation, and the ARI of its communities
with the epoch's planted communities (all blocks (epoch, community) of an epoch at once), for
the SBM with its number of blocks chosen by ICL and told the planted number.
Figures: affinity slices, component time courses vs epochs, animal loadings,
community-sorted pair matrices.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from experiments.store import RunDir
from neuro.connectome.affinity import MEASURES
from neuro.connectome.community import adjusted_rand_index, pair_graph
from neuro.connectome.pipeline import fit_dynamic_connectome, recovery_metrics
from neuro.connectome.sbm import fit_sbm
from neuro.connectome.synthetic import make_dynamic_connectome


@dataclass(frozen=True)
class Config:
    num_neurons: int = field(default=90, metadata={"min": 3, "max": 2000, "help": "neurons per animal"})
    num_animals: int = field(default=6, metadata={"min": 1, "max": 100, "help": "animals"})
    num_timesteps: int = field(default=6000, metadata={"min": 100, "help": "samples per recording"})
    num_epochs: int = field(default=4, metadata={"min": 1, "max": 20, "help": "planted epochs"})
    num_communities: int = field(default=3, metadata={"min": 1, "max": 20, "help": "communities per epoch"})
    remix_fraction: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0,
                                                         "help": "neurons reassigned between epochs"})
    noise_std: float = field(default=0.2, metadata={"min": 0.0, "help": "observation noise"})
    dt_s: float = field(default=0.1, metadata={"min": 0.001, "max": 10.0, "help": "sample interval"})
    tau_calcium_s: float = field(default=0.5, metadata={"min": 0.001, "max": 100.0, "help": "calcium decay"})
    window: int = field(default=100, metadata={"min": 2, "help": "affinity window (samples)"})
    step: int = field(default=50, metadata={"min": 1, "help": "window step (samples)"})
    measure: str = field(default="abs_correlation", metadata={"choices": MEASURES})
    extra_components: int = field(default=1, metadata={"min": 0, "max": 10,
                                                        "help": "rank = epochs + this (baseline)"})
    method: str = field(default="hals", metadata={"choices": ("hals", "mu")})
    n_iter_max: int = field(default=500, metadata={"min": 1, "help": "NTF iterations at most"})
    max_blocks: int = field(default=8, metadata={"min": 1, "max": 50, "help": "SBM blocks at most (ICL)"})

    def __post_init__(self):
        if self.window > self.num_timesteps:  # a config error, before any run directory
            raise ValueError(f"window ({self.window}) must be <= num_timesteps ({self.num_timesteps})")


DEMO = {"num_neurons": 60, "num_animals": 4, "num_timesteps": 3000, "num_epochs": 3}


def run(config: Config, out: RunDir) -> dict[str, float]:
    torch.set_num_threads(1)
    data_seed, fit_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(out.seed).spawn(2))
    start = time.perf_counter()
    truth = make_dynamic_connectome(
        num_neurons=config.num_neurons, num_animals=config.num_animals,
        num_timesteps=config.num_timesteps, num_epochs=config.num_epochs,
        num_communities=config.num_communities, remix_fraction=config.remix_fraction,
        noise_std=config.noise_std, dt_s=config.dt_s, tau_calcium_s=config.tau_calcium_s,
        seed=data_seed)
    rank = config.num_epochs + config.extra_components
    fit = fit_dynamic_connectome(truth.traces, window=config.window, step=config.step, rank=rank,
                                 measure=config.measure, method=config.method,
                                 n_iter_max=config.n_iter_max, max_blocks=config.max_blocks,
                                 seed=fit_seed, device=out.device)
    seconds = time.perf_counter() - start
    scores = recovery_metrics(fit, truth)
    # the same SBM told the planted number of communities (ICL may split a community)
    pair_factor = fit.decomposition.factors[0].detach().cpu().numpy()
    scores["sbm_ari_planted_blocks"] = np.array([
        adjusted_rand_index(fit_sbm(pair_graph(pair_factor[:, r], fit.affinity.pairs,
                                               config.num_neurons),
                                    config.num_communities, seed=fit_seed).labels, truth.labels[e])
        for e, r in enumerate(scores["matched_component"])])
    out.log(f"rank {rank}: {fit.decomposition.iterations} iterations, final error "
            f"{float(fit.decomposition.error_history[-1]):.4f}, {seconds:.1f} s")
    rows = [{"epoch": e, "component": int(scores["matched_component"][e]),
             "time_correlation": float(scores["time_correlation"][e]),
             "animal_cosine": float(scores["animal_cosine"][e]),
             "sbm_ari": float(scores["sbm_ari"][e]), "louvain_ari": float(scores["louvain_ari"][e]),
             "sbm_ari_planted_blocks": float(scores["sbm_ari_planted_blocks"][e]),
             "sbm_blocks": int(fit.sbm_labels[scores["matched_component"][e]].max() + 1)}
            for e in range(config.num_epochs)]
    out.save_table("recovery", rows, caption="Per planted epoch: matched component, time-course "
                   "correlation with the epoch indicator, animal-loading cosine with the planted "
                   "participation, ARI of SBM / Louvain communities with the planted communities.")
    factors = [f.detach().cpu().numpy() for f in fit.decomposition.factors]
    out.save_arrays("fit", pair_factor=factors[0], time_factor=factors[1], animal_factor=factors[2],
                    weights=fit.decomposition.weights.cpu().numpy(), sbm_labels=fit.sbm_labels,
                    louvain_labels=fit.louvain_labels, labels=truth.labels,
                    participation=truth.participation,
                    error_history=fit.decomposition.error_history.numpy())
    _figures(out, config, truth, fit, scores)
    return {
        "min_time_correlation": float(scores["time_correlation"].min()),
        "min_animal_cosine": float(scores["animal_cosine"].min()),
        "min_sbm_ari": float(scores["sbm_ari"].min()),
        "min_louvain_ari": float(scores["louvain_ari"].min()),
        "min_sbm_ari_planted_blocks": float(scores["sbm_ari_planted_blocks"].min()),
        "mean_sbm_ari": float(scores["sbm_ari"].mean()),
        "all_blocks_recovered": bool((scores["time_correlation"] >= 0.9).all()
                                     and (scores["animal_cosine"] >= 0.95).all()
                                     and (scores["sbm_ari"] >= 0.9).all()),
        "ntf_iterations": fit.decomposition.iterations,
        "ntf_final_error": float(fit.decomposition.error_history[-1]),
        "pipeline_seconds": seconds,
    }


def _figures(out: RunDir, config: Config, truth, fit, scores) -> None:
    from matplotlib.figure import Figure

    num_neurons = config.num_neurons
    values = fit.affinity.values.cpu().numpy()
    indicator = truth.epoch_indicator(config.window, config.step)
    order_by_epoch0 = np.argsort(truth.labels[0], kind="stable")
    fig = Figure(figsize=(3 * config.num_epochs, 3))
    axes = np.atleast_1d(fig.subplots(1, config.num_epochs))
    for epoch, ax in enumerate(axes):
        window_index = int(np.argmax(indicator[epoch]))
        matrix = pair_graph(values[:, window_index, 0], fit.affinity.pairs, num_neurons)
        ax.imshow(matrix[np.ix_(order_by_epoch0, order_by_epoch0)], cmap="viridis")
        ax.set_title(f"epoch {epoch}, window {window_index}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    out.save_figure(fig, "affinity_slices", caption="Affinity of every neuron pair in one window "
                    "of each epoch (animal 0); neurons sorted by their epoch-0 community, so the "
                    "blocks of epoch 0 sit on the diagonal and later epochs remix them.")

    time_factor = fit.decomposition.factors[1].cpu().numpy()
    starts = fit.affinity.window_starts * config.dt_s
    fig = Figure(figsize=(7, 3))
    ax = fig.subplots()
    for epoch in range(config.num_epochs):
        ax.fill_between(starts, 0, indicator[epoch] * time_factor.max(), alpha=0.12, step="mid")
    for component in range(time_factor.shape[1]):
        ax.plot(starts, time_factor[:, component], label=f"component {component}")
    ax.set_xlabel("window start (s)")
    ax.set_ylabel("time loading")
    ax.legend(fontsize=7)
    out.save_figure(fig, "time_courses", caption="Component time courses; shaded: planted epochs.")

    animal_factor = fit.decomposition.factors[2].cpu().numpy()
    matched = scores["matched_component"]
    fig = Figure(figsize=(3 * config.num_epochs, 2.6))
    axes = np.atleast_1d(fig.subplots(1, config.num_epochs))
    for epoch, ax in enumerate(axes):
        planted = truth.participation[:, epoch] / np.linalg.norm(truth.participation[:, epoch])
        fitted = animal_factor[:, matched[epoch]]
        x = np.arange(config.num_animals)
        ax.bar(x - 0.2, planted, 0.4, label="planted")
        ax.bar(x + 0.2, fitted / np.linalg.norm(fitted), 0.4, label="fitted")
        ax.set_title(f"epoch {epoch}: cosine {scores['animal_cosine'][epoch]:.3f}", fontsize=9)
        ax.set_xlabel("animal")
    axes[0].legend(fontsize=7)
    out.save_figure(fig, "animal_loadings", caption="Animal loadings of each epoch's component "
                    "against the planted participation (unit norm).")

    pair_factor = fit.decomposition.factors[0].cpu().numpy()
    fig = Figure(figsize=(3 * config.num_epochs, 3))
    axes = np.atleast_1d(fig.subplots(1, config.num_epochs))
    for epoch, ax in enumerate(axes):
        component = matched[epoch]
        order = np.lexsort((truth.labels[epoch], fit.sbm_labels[component]))
        graph = pair_graph(pair_factor[:, component], fit.affinity.pairs, num_neurons)
        ax.imshow(graph[np.ix_(order, order)], cmap="magma")
        ax.set_title(f"component {component}: SBM ARI {scores['sbm_ari'][epoch]:.2f}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    out.save_figure(fig, "community_sorted_pairs", caption="Pair pattern of each epoch's "
                    "component as a neuron x neuron matrix, sorted by its SBM communities.")
