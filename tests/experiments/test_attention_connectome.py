"""attention_connectome: induction scores on planted maps, the repeated-token task layout, and a
tiny end-to-end run (train -> maps -> connectome tensor -> NTF -> communities)."""
import numpy as np
import pytest

from experiments.attention_connectome import first_crossing, induction_scores
from experiments.runner import run_experiment


def test_induction_and_previous_token_scores_of_planted_maps():
    length, half = 12, 6
    induction = np.zeros((length, length))
    previous = np.zeros((length, length))
    induction[0, 0] = previous[0, 0] = 1.0
    for t in range(1, length):
        previous[t, t - 1] = 1.0
        induction[t, t - half + 1 if t >= half else t] = 1.0
    maps = np.stack([induction, previous, np.tril(np.ones((length, length))) / np.arange(1, length + 1)[:, None]])
    ind, prev = induction_scores(maps, length)
    assert ind[0] == pytest.approx(1.0) and prev[1] == pytest.approx(1.0)
    assert prev[0] == pytest.approx(0.0) and ind[1] == pytest.approx(0.0)
    uniform = np.mean([1 / (t + 1) for t in range(half, length - 1)])
    assert ind[2] == pytest.approx(uniform)


def test_first_crossing():
    assert first_crossing(np.array([0.1, 0.4, 0.6, 0.2]), np.array([0, 10, 20, 30]), 0.5) == 20.0
    assert first_crossing(np.array([0.1]), np.array([0]), 0.5) == float("inf")


def test_end_to_end_tiny_run(tmp_path):
    overrides = {"num_seeds": 2, "train_steps": 20, "checkpoint_every": 10, "rank": 3, "length": 12, "vocab_size": 16,
                 "num_heads": 2, "model_dim": 16, "probe_sequences": 8, "ntf_iterations": 20, "batch_size": 8}
    result = run_experiment("attention_connectome", overrides=overrides, out_root=tmp_path, seed=0, quiet=True)
    m = result.metrics
    for key in ("ntf_relative_error", "induction_component", "induction_component_fraction",
                "induction_component_formed_step", "head_communities_sbm", "head_communities_ari_sbm_vs_louvain",
                "seed0_final_accuracy", "seed1_induction_head_formed_step"):
        assert key in m, key
    assert 0 <= m["ntf_relative_error"] < 1 and 0 <= m["induction_component"] < 3
    for name in ("formation.png", "components.png", "final_maps.png", "head_communities.png", "components.csv",
                 "heads.csv", "ntf.npz", "attention.npz"):
        assert (result.path / name).exists(), name
    arrays = np.load(result.path / "attention.npz")
    assert arrays["maps"].shape == (3, 2, 2, 2, 12, 12)                 # checkpoints 0, 10, 20
    assert np.array_equal(arrays["steps"], [0, 10, 20])


def test_pattern_without_maps_is_refused(tmp_path):
    with pytest.raises(ValueError, match="pattern"):
        run_experiment("attention_connectome", overrides={"pattern": "SD"}, out_root=tmp_path, seed=0, quiet=True)


def _component(index, share, step, heads):
    return {"component": index, "induction_fraction": share, "half_max_step": step, "heads (seed, layer, head)": heads}


def test_formation_caption_reports_a_split_induction_pattern():
    # the seed-0 demo: two components with induction shares 0.4502 and 0.4556, half maxima at
    # steps 50 and 75, four heads each; the old caption named only the second ("formed at step 75")
    # while the direct scores of 8 heads formed at step 50 in both seeds
    from experiments._attention_connectome_analysis import formation_caption

    metrics = {"induction_component": 1.0, "direct_induction_num_heads": 8.0,
               "induction_heads_jaccard_ntf_vs_direct": 0.5,
               "seed0_induction_head_formed_step": 50.0, "seed1_induction_head_formed_step": 50.0}
    components = [_component(0, 0.4502, 50.0, "0.1.1 0.1.3 1.1.0 1.1.1 1.1.3"),
                  _component(1, 0.4556, 75.0, "0.1.0 0.1.2 1.1.0 1.1.2"),
                  _component(2, 0.0034, 75.0, "0.0.0"), _component(3, 0.019, 0.0, "0.0.1")]
    text = formation_caption(metrics, components, seeds=2, threshold=0.5)
    assert "The induction pattern is split: 1 other component(s)" in text
    assert "component 0: share 0.450, half maximum at step 50" in text and "component 2:" not in text
    assert "8 heads score >= 0.5" in text and "step 50, 50 (per seed)" in text
    # one dominant component: no split is reported
    components[0] = _component(0, 0.1, 50.0, "0.1.1")
    assert "split" not in formation_caption(metrics, components, seeds=2, threshold=0.5)


def test_mqar_too_short_for_its_pairs_is_a_config_error(tmp_path):
    # length=8 (the documented minimum) with the default 8 MQAR pairs made a run directory and
    # then failed in mqar_batch ("length must be >= 3 * num_pairs")
    from experiments.config import ConfigError

    with pytest.raises(ConfigError, match="3 \\* num_pairs = 24"):
        run_experiment("attention_connectome", overrides={"task": "mqar", "length": 8}, out_root=tmp_path, seed=0,
                       quiet=True)
    assert not list(tmp_path.rglob("config.yaml"))
