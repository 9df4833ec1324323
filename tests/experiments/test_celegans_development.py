"""celegans_development on the shipped Witvliet data, with a short rank sweep."""
import csv

from experiments.runner import run_experiment
from neuro.connectome.celegans import WITVLIET_STAGES, load_celegans_connectomes


def test_celegans_development_runs_and_reports(tmp_path):
    result = run_experiment("celegans_development",
                            overrides={"ranks": (1, 2, 3), "num_replicates": 2, "n_iter_max": 60,
                                       "max_blocks": 4},
                            out_root=tmp_path, seed=0, quiet=True)
    metrics = result.metrics
    union = load_celegans_connectomes(WITVLIET_STAGES, align="union")
    assert metrics["num_neurons"] == int(union.present.all(axis=0).sum())  # in all eight stages
    assert 0.0 < metrics["edge_core_connection_fraction"] < metrics["edge_core_synapse_fraction"] < 1.0
    assert 0.0 <= metrics["core_mass_fraction"] <= 1.0
    assert metrics["adult_synapses_over_l1"] > 3.0  # Witvliet 2021: synapses multiply with age
    with open(result.path / "components.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["chosen_rank"]
    assert abs(sum(float(r["mass_share"]) for r in rows) - 1.0) < 1e-9
    for name in ("rank_selection", "developmental_time_courses", "component_communities"):
        assert (result.path / f"{name}.png").exists()
