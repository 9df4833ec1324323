"""NTF, communities, induction-circuit read-out and figures of ``attention_connectome`` (helper).

Definitions (ours): a component's *induction fraction* is the share of its position pattern on
the induction pairs (t, t - n + 1), t = n .. 2n - 2 (n = T / 2); its *previous-token* and
*sink* fractions the shares on (t, t - 1) and (t, 0), t >= 1. The induction component is the
one with the largest induction fraction; it "forms" at the first checkpoint where its time
course reaches half its maximum, and its heads are the recordings whose loading reaches half
the largest. A head's direct induction score is its mean map on the induction pairs.
"""
from __future__ import annotations

import numpy as np


def _fractions(pattern: np.ndarray, length: int) -> dict:
    half = length // 2
    total = pattern.sum()
    t = np.arange(half, length - 1)
    rows = np.arange(1, length)
    share = lambda values: float(values.sum() / total) if total > 0 else 0.0
    return {"induction_fraction": share(pattern[t, t - half + 1]), "previous_token_fraction": share(pattern[rows, rows - 1]),
            "sink_fraction": share(pattern[rows, 0]), "self_fraction": share(pattern[np.arange(length), np.arange(length)])}


def analyse(config, maps, accuracies, steps, tensor, pairs, recordings, out):
    from experiments.attention_connectome import first_crossing, induction_scores
    from neuro.connectome import adjusted_rand_index, fit_sbm, louvain_partition, ntf

    checkpoints, seeds, _layers, _heads, length, _ = maps.shape
    metrics, threshold = {}, config.formed_threshold
    direct, previous = induction_scores(maps, length)                    # [C, S, L, H]
    for s in range(seeds):
        metrics[f"seed{s}_final_accuracy"] = float(accuracies[s, -1])
        metrics[f"seed{s}_accuracy_formed_step"] = first_crossing(accuracies[s], steps, threshold)
        best = direct[:, s].reshape(checkpoints, -1).max(-1)
        metrics[f"seed{s}_induction_head_formed_step"] = first_crossing(best, steps, threshold)
        metrics[f"seed{s}_final_best_head_induction_score"] = float(best[-1])  # last checkpoint
    direct_heads = {tuple(r) for r in recordings if direct[-1, r[0], r[1], r[2]] >= threshold}

    result = ntf(tensor, config.rank, n_iter_max=config.ntf_iterations, seed=out.seed)
    weights = result.weights.double().cpu().numpy()
    pair_factor, time_factor, head_factor = (f.double().cpu().numpy() for f in result.factors)
    metrics["ntf_relative_error"] = float(result.error_history[-1])
    components = []
    for r in range(config.rank):
        pattern = np.zeros((length, length))
        pattern[pairs[:, 0], pairs[:, 1]] = pair_factor[:, r]
        course = time_factor[:, r] / max(time_factor[:, r].max(), 1e-12)
        loading = head_factor[:, r] / max(head_factor[:, r].max(), 1e-12)
        top = [tuple(int(x) for x in recordings[i]) for i in np.flatnonzero(loading >= 0.5)]
        components.append({"component": r, "weight": float(weights[r]), **_fractions(pattern, length),
                           "half_max_step": first_crossing(course, steps, 0.5),
                           "heads (seed, layer, head)": " ".join(f"{s}.{l}.{h}" for s, l, h in top),
                           "_pattern": pattern, "_course": course, "_loading": loading, "_top": top})
    induction = max(components, key=lambda c: c["induction_fraction"])
    metrics.update({"induction_component": float(induction["component"]),
                    "induction_component_fraction": induction["induction_fraction"],
                    "induction_component_formed_step": induction["half_max_step"],
                    "induction_component_num_heads": float(len(induction["_top"])),
                    "direct_induction_num_heads": float(len(direct_heads))})
    found = set(induction["_top"])
    union = found | direct_heads
    metrics["induction_heads_jaccard_ntf_vs_direct"] = float(len(found & direct_heads) / len(union)) if union else 1.0
    layers_found = sorted({l for _, l, _ in found})
    metrics["induction_component_first_layer"] = float(layers_found[0]) if layers_found else float("nan")
    metrics["induction_component_last_layer"] = float(layers_found[-1]) if layers_found else float("nan")

    # communities of heads: cosine similarity of their loadings (weighted components)
    loadings = head_factor * weights[None, :]
    norms = np.linalg.norm(loadings, axis=1, keepdims=True)
    unit = loadings / np.where(norms > 0, norms, 1.0)
    similarity = np.clip(unit @ unit.T, 0.0, None)
    np.fill_diagonal(similarity, 0.0)
    sbm = fit_sbm(similarity, None, max_blocks=min(6, similarity.shape[0]), seed=out.seed)
    louvain = louvain_partition(similarity, seed=out.seed)
    metrics["head_communities_sbm"] = float(len(np.unique(sbm.labels)))
    metrics["head_communities_louvain"] = float(len(np.unique(louvain)))
    metrics["head_communities_ari_sbm_vs_louvain"] = float(adjusted_rand_index(sbm.labels, louvain))
    found_index = [i for i, r in enumerate(recordings) if tuple(r) in found]
    if found_index:
        labels = sbm.labels[found_index]
        metrics["induction_heads_sbm_purity"] = float(np.bincount(labels).max() / len(labels))
    position_communities = []
    for component in components:
        graph = component["_pattern"] + component["_pattern"].T
        np.fill_diagonal(graph, 0.0)
        labels = louvain_partition(graph, seed=out.seed)
        component["position_communities"] = len(np.unique(labels))
        position_communities.append(labels)

    head_rows = []
    for i, (s, l, h) in enumerate(recordings):
        head_rows.append({"seed": int(s), "layer": int(l), "head": int(h),
                          "final_induction_score": float(direct[-1, s, l, h]),
                          "final_previous_token_score": float(previous[-1, s, l, h]),
                          "induction_formed_step": first_crossing(direct[:, s, l, h], steps, threshold),
                          "induction_component_loading": float(induction["_loading"][i]),
                          "sbm_community": int(sbm.labels[i]), "louvain_community": int(louvain[i])})
    component_rows = [{k: v for k, v in c.items() if not k.startswith("_")} for c in components]
    tables = {"components": (component_rows, ("NTF components of the (position pair x checkpoint x head) "
                             "tensor: weight, share of the pattern on induction / previous-token / sink / self "
                             "pairs, first checkpoint at half its maximum, heads loading >= half the largest, "
                             "Louvain communities of its position graph.")),
              "heads": (head_rows, ("Per recorded head: direct induction and previous-token scores at the end, "
                        "step its induction score first reached the threshold, loading on the induction "
                        "component, and its community (weighted SBM and Louvain on loading similarity)."))}
    extra = {"components": components, "direct": direct, "previous": previous, "similarity": similarity,
             "sbm": sbm.labels, "position_communities": position_communities}
    out.save_arrays("ntf", pair_factor=pair_factor, time_factor=time_factor, head_factor=head_factor,
                    weights=weights, recordings=recordings, pairs=pairs, similarity=similarity)
    metrics["_extra"] = extra
    return metrics, tables


def formation_caption(metrics, components, seeds: int, threshold: float) -> str:
    """Caption of the formation figure from the measurements: the component with the largest
    induction share, every other component whose share is at least half of it (the NTF can
    split one circuit over several components: then no single component says when the circuit
    forms or in which heads), and the direct per-head cross-check."""
    induction = components[int(metrics["induction_component"])]
    largest = induction["induction_fraction"]
    others = [c for c in components if c is not induction and largest > 0 and c["induction_fraction"] >= 0.5 * largest]
    text = ("Accuracy, the best head's direct induction score per seed, and the time course of the NTF component "
            f"with the largest share on induction pairs, component {induction['component']} (share "
            f"{largest:.3f}; half its maximum at step {induction['half_max_step']:.0f}; heads "
            f"{induction['heads (seed, layer, head)'] or 'none'}).")
    if others:
        listed = "; ".join(f"component {c['component']}: share {c['induction_fraction']:.3f}, half maximum at step "
                           f"{c['half_max_step']:.0f}, heads {c['heads (seed, layer, head)'] or 'none'}" for c in others)
        text += (f" The induction pattern is split: {len(others)} other component(s) carry at least half that share "
                 f"({listed}), so this component alone does not date the circuit or list its heads.")
    formed = ", ".join(f"{metrics[f'seed{s}_induction_head_formed_step']:.0f}" for s in range(seeds))
    text += (f" Direct cross-check: {metrics['direct_induction_num_heads']:.0f} heads score >= {threshold:g} at the end "
             f"(Jaccard with the component's heads {metrics['induction_heads_jaccard_ntf_vs_direct']:.2f}); the best "
             f"head reaches {threshold:g} at step {formed} (per seed).")
    return text


def figures(out, config, maps, accuracies, steps, metrics, tables):
    from matplotlib.figure import Figure

    extra = metrics.pop("_extra")
    components, direct = extra["components"], extra["direct"]
    checkpoints, seeds, layers, heads, _length, _ = maps.shape
    induction = components[int(metrics["induction_component"])]

    fig = Figure(figsize=(11, 3.4))
    axes = fig.subplots(1, 3)
    for s in range(seeds):
        axes[0].plot(steps, accuracies[s], label=f"seed {s}")
        axes[1].plot(steps, direct[:, s].reshape(checkpoints, -1).max(-1), label=f"seed {s}")
    axes[2].plot(steps, induction["_course"], color="k")
    titles = ("task accuracy (probe batch)", "best head's induction score", f"NTF induction component {induction['component']}")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9), ax.set_xlabel("training step")
        ax.axhline(config.formed_threshold if ax is not axes[2] else 0.5, color="gray", ls=":", lw=0.8)
    axes[0].legend(fontsize=7)
    out.save_figure(fig, "formation", caption=formation_caption(metrics, components, seeds, config.formed_threshold))

    rank = len(components)
    fig = Figure(figsize=(2.4 * rank, 7.2))
    axes = fig.subplots(3, rank, squeeze=False)
    for r, c in enumerate(components):
        axes[0, r].imshow(c["_pattern"], cmap="viridis")
        axes[0, r].set_title(f"c{r}: ind {c['induction_fraction']:.2f}, prev {c['previous_token_fraction']:.2f}", fontsize=7)
        axes[0, r].set_xlabel("key position", fontsize=7), axes[0, r].set_ylabel("query position", fontsize=7)
        axes[1, r].plot(steps, c["_course"]), axes[1, r].set_xlabel("step", fontsize=7)
        axes[2, r].imshow(c["_loading"].reshape(seeds, layers * heads), cmap="magma", vmin=0, vmax=1, aspect="auto")
        axes[2, r].set_xlabel("layer x head", fontsize=7), axes[2, r].set_ylabel("seed", fontsize=7)
    out.save_figure(fig, "components", caption="NTF components: position pattern (top), time course over training "
                    "(middle), loading per recorded head (bottom; columns layer-major).")

    fig = Figure(figsize=(2.2 * heads, 2.2 * layers))
    axes = fig.subplots(layers, heads, squeeze=False)
    for l in range(layers):
        for h in range(heads):
            axes[l, h].imshow(maps[-1, 0, l, h], cmap="viridis", vmin=0)
            axes[l, h].set_title(f"layer {l} head {h}: ind {direct[-1, 0, l, h]:.2f}", fontsize=7)
            axes[l, h].set_xticks([]), axes[l, h].set_yticks([])
    out.save_figure(fig, "final_maps", caption="Seed 0's mean attention maps at the end of training (query rows, key columns).")

    fig = Figure(figsize=(5, 4.2))
    ax = fig.subplots()
    order = np.argsort(extra["sbm"], kind="stable")
    ax.imshow(extra["similarity"][np.ix_(order, order)], cmap="magma")
    ax.set_title("head similarity (loadings), sorted by SBM community", fontsize=8)
    out.save_figure(fig, "head_communities", caption="Cosine similarity of the heads' NTF loadings, ordered by "
                    "weighted-SBM community.")
