"""dynamic_connectome end to end on a small planted problem."""
import csv

from experiments.runner import run_experiment


def test_dynamic_connectome_recovers_planted_blocks(tmp_path):
    result = run_experiment(
        "dynamic_connectome",
        overrides={"num_neurons": 60, "num_animals": 4, "num_timesteps": 3000, "num_epochs": 3,
                   "max_blocks": 5},  # the DEMO size (neuro demo runs it)
        out_root=tmp_path, seed=0, quiet=True)
    metrics = result.metrics
    assert metrics["all_blocks_recovered"] is True
    assert metrics["min_time_correlation"] >= 0.9 and metrics["min_animal_cosine"] >= 0.95
    assert metrics["min_sbm_ari"] >= 0.9
    for name in ("affinity_slices", "time_courses", "animal_loadings", "community_sorted_pairs"):
        assert (result.path / f"{name}.png").stat().st_size > 0
    with open(result.path / "recovery.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and {r["epoch"] for r in rows} == {"0", "1", "2"}


def test_window_longer_than_the_recording_is_a_config_error(tmp_path):
    # window=200 over 100 timesteps made a run directory and then failed in the affinity step
    import pytest

    from experiments.config import ConfigError

    with pytest.raises(ConfigError, match="window"):
        run_experiment("dynamic_connectome", overrides={"num_timesteps": 100, "window": 200},
                       out_root=tmp_path, seed=0, quiet=True)
    assert not list(tmp_path.rglob("config.yaml"))
