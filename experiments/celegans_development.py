"""C. elegans development: non-negative CP of Witvliet's eight connectomes, core vs stage-specific.

Data: Witvliet et al. 2021 (Nature 596:257), eight hermaphrodites from L1 to adult, shipped
with the package (derived from the MIT-licensed `cect`); neurons present at every stage.
Tensor X[pre, post, stage] = synapse counts (chemical, gap junction or both), log1p-transformed
by default (counts are heavy-tailed). Rank by `select_rank` (reconstruction error and replicate
stability; when no rank meets its rule it falls back on the largest rank tried, and the report
and `rank_rule_met` say so); each component's stage loading is its developmental time course.

Core vs stage-dependent (our definitions): a component is "core" when its time course
follows the animal's overall growth: Pearson correlation >= `core_correlation` with the total
count per stage of the synapses factorized, and its course relative to the tensor's total per stage is flat
(coefficient of variation <= `core_max_relative_cv`); the core share is the fraction of the
fitted tensor's mass (sum of entries) in core components. Edge-level cross-check: the
fraction of adult synapses, and of adult connections, on connections present at all stages.

Communities (our construction): component r's graph gives each real connection its share of
the fit, G_r = sum_s X_s * (component_r,s / X_hat_s), symmetrised; communities by the weighted
SBM (variational EM, ICL) and by Louvain, each compared with the known neuron classes
(sensory / interneuron / motor) by ARI, and with each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from experiments.store import RunDir
from neuro.connectome.celegans import STAGE_NAMES, WITVLIET_STAGES, load_celegans_connectomes
from neuro.connectome.community import adjusted_rand_index, louvain_partition
from neuro.connectome.cp_ops import cp_reconstruct
from neuro.connectome.rank import select_rank
from neuro.connectome.sbm import fit_sbm

CLASSES = ("sensory", "interneuron", "motor")
# select_rank's floor on the error improvement: a rank is kept when the next one improves the
# error by less than max(min_relative_improvement x error, this) (passed explicitly, so that
# _rank_rule_met and the caption apply the very rule that chose the rank)
MIN_ABSOLUTE_IMPROVEMENT = 1e-4


@dataclass(frozen=True)
class Config:
    synapses: str = field(default="both", metadata={"choices": ("both", "chemical", "gap_junction")})
    transform: str = field(default="log1p", metadata={"choices": ("log1p", "none")})
    ranks: tuple[int, ...] = field(default=(1, 2, 3, 4, 5, 6, 7, 8), metadata={"min": 1, "help": "ranks tried"})
    num_replicates: int = field(default=4, metadata={"min": 1, "max": 50, "help": "random starts per rank"})
    n_iter_max: int = field(default=400, metadata={"min": 1, "help": "NTF iterations at most"})
    min_stability: float = field(default=0.8, metadata={"min": 0.0, "max": 1.0, "help": "rank rule"})
    min_relative_improvement: float = field(default=0.01, metadata={"min": 0.0, "max": 1.0, "help": "rank rule"})
    core_correlation: float = field(default=0.9, metadata={"min": -1.0, "max": 1.0,
                                                           "help": "core: corr. with growth >= this"})
    core_max_relative_cv: float = field(default=0.2, metadata={"min": 0.0, "max": 10.0,
                                        "help": "core: CV of the growth-relative course <= this"})
    max_blocks: int = field(default=8, metadata={"min": 1, "max": 50, "help": "SBM blocks at most (ICL)"})


DEMO = {"ranks": (1, 2, 3, 4, 5, 6), "num_replicates": 2, "n_iter_max": 200}


def _counts(config: Config, data) -> np.ndarray:
    """(stage, pre, post) synapse counts of the kind ``config.synapses`` names."""
    return {"both": data.chemical + data.gap_junction, "chemical": data.chemical,
            "gap_junction": data.gap_junction}[config.synapses]


def _tensor(config: Config, data) -> np.ndarray:
    tensor = np.moveaxis(_counts(config, data), 0, -1)  # (pre, post, stage)
    return np.log1p(tensor) if config.transform == "log1p" else tensor


def run(config: Config, out: RunDir) -> dict[str, float]:
    torch.set_num_threads(1)
    data = load_celegans_connectomes(WITVLIET_STAGES)
    tensor = _tensor(config, data)
    classes = np.array(data.neuron_classes)
    out.log(f"{len(data.neuron_names)} neurons common to all 8 stages, tensor {tensor.shape}")
    selection = select_rank(tensor, list(config.ranks), num_replicates=config.num_replicates,
                            min_stability=config.min_stability,
                            min_relative_improvement=config.min_relative_improvement,
                            min_absolute_improvement=MIN_ABSOLUTE_IMPROVEMENT, seed=out.seed,
                            n_iter_max=config.n_iter_max, tol=1e-8)
    rank = selection.chosen_rank
    fit = selection.best_fits[list(config.ranks).index(rank)]
    out.save_table("rank_selection", [
        {"rank": int(r), "error": float(e), "stability": float(s)}
        for r, e, s in zip(selection.ranks, selection.errors, selection.stability)],
        caption=_rank_caption(selection, config))
    weights = fit.weights.numpy()
    pre, post, stage = (f.numpy() for f in fit.factors)
    growth = _counts(config, data).sum(axis=(1, 2))  # total count of the synapses factorized
    mass = weights * pre.sum(0) * post.sum(0) * stage.sum(0)
    correlation = np.array([np.corrcoef(stage[:, r], growth)[0, 1] if stage[:, r].std() > 0 else 0.0
                            for r in range(rank)])
    # course relative to the tensor's own growth (its total per stage): flat = scales with the
    # animal, varying = the component's share of the connectome changes with the stage
    relative = stage / tensor.sum(axis=(0, 1))[:, None]
    relative_cv = relative.std(0) / np.maximum(relative.mean(0), 1e-300)
    core = (correlation >= config.core_correlation) & (relative_cv <= config.core_max_relative_cv)
    reconstruction = cp_reconstruct(fit.weights, list(fit.factors)).numpy()
    safe = np.where(reconstruction > 0, reconstruction, 1.0)

    counts = _counts(config, data)
    adult = counts[-1]
    persistent = (counts > 0).all(axis=0)
    edge_core_fraction = float(adult[persistent].sum() / adult.sum())
    edge_core_connections = float(persistent.sum() / (adult > 0).sum())
    known = np.isin(classes, CLASSES)
    rows, graphs = [], []
    for r in range(rank):
        component = weights[r] * np.einsum("i,j,s->ijs", pre[:, r], post[:, r], stage[:, r])
        graph = (tensor * component / safe).sum(-1)
        graph = graph + graph.T
        graphs.append(graph)
        sbm_labels = fit_sbm(graph, max_blocks=config.max_blocks, seed=out.seed).labels
        louvain_labels = louvain_partition(graph, seed=out.seed)
        rows.append({
            "component": r, "weight": float(weights[r]), "mass_share": float(mass[r] / mass.sum()),
            "growth_correlation": float(correlation[r]), "relative_cv": float(relative_cv[r]),
            "core": bool(core[r]),
            **{f"stage_{k + 1}_{STAGE_NAMES[s]}": float(stage[k, r] / stage[:, r].max())
               for k, s in enumerate(WITVLIET_STAGES)},
            "sbm_blocks": int(sbm_labels.max() + 1), "louvain_blocks": int(louvain_labels.max() + 1),
            "sbm_ari_vs_classes": adjusted_rand_index(sbm_labels[known], classes[known]),
            "louvain_ari_vs_classes": adjusted_rand_index(louvain_labels[known], classes[known]),
            "sbm_ari_vs_louvain": adjusted_rand_index(sbm_labels, louvain_labels),
            "_sbm": sbm_labels,
        })
    adult_graph = adult + adult.T
    adult_sbm = fit_sbm(adult_graph, max_blocks=config.max_blocks, seed=out.seed).labels
    adult_louvain = louvain_partition(adult_graph, seed=out.seed)
    out.save_table("components", [{k: v for k, v in row.items() if not k.startswith("_")}
                                  for row in rows],
                   caption="Components: share of the fitted mass, correlation of the stage course "
                   "with total synapse count, stage course (max = 1), communities of the "
                   "component's graph and their ARI with neuron classes and with each other.")
    out.save_arrays("fit", pre=pre, post=post, stage=stage, weights=weights,
                    neuron_names=np.array(data.neuron_names), classes=classes,
                    sbm_labels=np.array([row["_sbm"] for row in rows]))
    _figures(out, selection, stage, correlation, graphs, rows, classes)
    metrics = {
        "num_neurons": len(data.neuron_names),
        "chosen_rank": rank,
        "rank_rule_met": _rank_rule_met(selection, config),
        "relative_error": float(fit.error_history[-1]),
        "core_components": int(core.sum()),
        "core_mass_fraction": float(mass[core].sum() / mass.sum()),
        "edge_core_synapse_fraction": edge_core_fraction,
        "edge_core_connection_fraction": edge_core_connections,
        "adult_synapses_over_l1": float(growth[-1] / growth[0]),
        "adult_sbm_blocks": int(adult_sbm.max() + 1),
        "adult_sbm_ari_vs_classes": adjusted_rand_index(adult_sbm[known], classes[known]),
        "adult_louvain_ari_vs_classes": adjusted_rand_index(adult_louvain[known], classes[known]),
        "adult_sbm_ari_vs_louvain": adjusted_rand_index(adult_sbm, adult_louvain),
        "mean_component_sbm_ari_vs_classes": float(np.mean([r["sbm_ari_vs_classes"] for r in rows])),
        "mean_component_louvain_ari_vs_classes": float(np.mean([r["louvain_ari_vs_classes"] for r in rows])),
    }
    out.log(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return metrics


def _rank_rule_met(selection, config: Config) -> bool:
    """Whether ``select_rank``'s rule picked the chosen rank: its replicate stability reaches
    ``min_stability`` and the next rank tried improves the error by less than
    ``min_relative_improvement`` (relative) or ``MIN_ABSOLUTE_IMPROVEMENT``, whichever is
    larger. When no rank meets it, select_rank falls back on the largest
    rank tried, whatever its stability."""
    ranks = [int(r) for r in selection.ranks]
    index = ranks.index(int(selection.chosen_rank))
    if index + 1 >= len(ranks):
        return False
    errors = selection.errors
    return bool(selection.stability[index] >= config.min_stability
                and errors[index] - errors[index + 1] < max(config.min_relative_improvement * errors[index],
                                                            MIN_ABSOLUTE_IMPROVEMENT))


def _rank_caption(selection, config: Config) -> str:
    """Caption of the rank table: the chosen rank and whether the rule chose it."""
    rank = int(selection.chosen_rank)
    stability = float(selection.stability[[int(r) for r in selection.ranks].index(rank)])
    head = f"Rank selection (best relative error, mean pairwise factor-match score); chosen {rank}"
    rule = (f"stability >= {config.min_stability:g} and the next rank improving the error by < "
            f"{100 * config.min_relative_improvement:g} % or < {MIN_ABSOLUTE_IMPROVEMENT:g}, whichever is larger")
    if _rank_rule_met(selection, config):
        return f"{head} by the rule ({rule})."
    side = "below" if stability < config.min_stability else "at or above"
    return (f"{head}: no rank tried met the rule ({rule}), so the largest rank tried is used; its "
            f"stability {stability:.3f} is {side} {config.min_stability:g}.")


def _figures(out, selection, stage, correlation, graphs, rows, classes) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3))
    left, right = fig.subplots(1, 2)
    left.plot(selection.ranks, selection.errors, "o-")
    left.set_xlabel("rank"), left.set_ylabel("relative error")
    right.plot(selection.ranks, selection.stability, "o-", color="tab:orange")
    right.set_xlabel("rank"), right.set_ylabel("stability (mean FMS)")
    for ax in (left, right):
        ax.axvline(selection.chosen_rank, color="grey", linestyle=":")
    out.save_figure(fig, "rank_selection", caption="Reconstruction error and replicate stability "
                    "per rank; dotted: chosen rank.")

    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    labels = [f"{k + 1}\n{STAGE_NAMES[s]}" for k, s in enumerate(WITVLIET_STAGES)]
    for r in range(stage.shape[1]):
        kind = "core" if rows[r]["core"] else "stage-dependent"
        ax.plot(range(8), stage[:, r] / stage[:, r].max(), "o-",
                label=f"{r} ({kind}, r={correlation[r]:.2f})")
    ax.set_xticks(range(8), labels, fontsize=8)
    ax.set_ylabel("stage loading (max = 1)")
    ax.legend(fontsize=7)
    out.save_figure(fig, "developmental_time_courses", caption="Developmental time course of each "
                    "component (Witvliet datasets 1-8); r: correlation with total synapse count.")

    class_code = {name: k for k, name in enumerate(CLASSES + ("pharyngeal_polymodal", "unknown_function"))}
    colors = np.array([class_code.get(c, len(class_code)) for c in classes])
    count = len(graphs)
    fig = Figure(figsize=(3 * count, 3.3))
    axes = np.atleast_1d(fig.subplots(1, count))
    for r, ax in enumerate(axes):
        order = np.lexsort((colors, rows[r]["_sbm"]))
        ax.imshow(np.log1p(graphs[r][np.ix_(order, order)]), cmap="magma")
        ax.scatter(np.full(order.size, -3), np.arange(order.size), c=colors[order], s=2,
                   cmap="tab10", vmin=0, vmax=9)
        ax.set_title(f"component {r}: {rows[r]['sbm_blocks']} SBM blocks", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    out.save_figure(fig, "component_communities", caption="Each component's graph (log scale), "
                    "neurons sorted by SBM community; dots: neuron class (sensory / inter / motor / "
                    "other).")
