"""celegans_development on the shipped Witvliet data, with a short rank sweep."""
import csv

from experiments.runner import run_experiment


def test_celegans_development_runs_and_reports(tmp_path):
    result = run_experiment("celegans_development",
                            overrides={"ranks": (1, 2, 3), "num_replicates": 2, "n_iter_max": 60,
                                       "max_blocks": 4},
                            out_root=tmp_path, seed=0, quiet=True)
    metrics = result.metrics
    assert metrics["num_neurons"] == 161  # neurons present at all eight stages
    assert metrics["chosen_rank"] in (1, 2, 3)
    assert 0.0 < metrics["edge_core_connection_fraction"] < metrics["edge_core_synapse_fraction"] < 1.0
    assert 0.0 <= metrics["core_mass_fraction"] <= 1.0
    assert metrics["adult_synapses_over_l1"] > 3.0  # Witvliet 2021: synapses multiply with age
    for key in ("adult_sbm_ari_vs_classes", "adult_louvain_ari_vs_classes"):
        assert -1.0 <= metrics[key] <= 1.0
    with open(result.path / "components.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["chosen_rank"]
    assert abs(sum(float(r["mass_share"]) for r in rows) - 1.0) < 1e-9
    for name in ("rank_selection", "developmental_time_courses", "component_communities"):
        assert (result.path / f"{name}.png").exists()
