"""counterpart_spikes: held-out scoring by sliding windows equals a full-context loop, the
probe decodes a planted state, and a tiny end-to-end run writes its report."""
import numpy as np
import pytest
import torch
from scipy.stats import poisson

from experiments._spike_models import held_out_log_likelihood, make_model, probe_accuracy
from experiments.runner import run_experiment


def test_sliding_windows_score_every_bin_once_with_the_right_context():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.3, size=(150, 4)).astype(float)
    model = make_model("SS", 4, model_dim=8, num_heads=2, window=32, mean_rate=counts.mean(0), seed=0, device="cpu")
    total, scored, hidden = held_out_log_likelihood(model, counts, 32, collect_hidden=True)
    assert np.array_equal(scored, np.arange(1, 150))
    assert len(hidden) == 3 and hidden[0].shape == (149, 8)
    # explicit loop: bin t predicted from the window the plan assigns (stride 16)
    expected, cache = 0.0, {}
    with torch.no_grad():
        for t in range(1, 150):
            start = 0 if t < 32 else min(((t - 32) // 16 + 1) * 16, 150 - 32)
            while not (start + 1 <= t < start + 32):
                start -= 16
            if start not in cache:
                x = torch.as_tensor(counts[start:start + 32], dtype=torch.float32)
                cache[start] = model(torch.log1p(x)[None])[0].double().numpy()
            log_rate = cache[start][t - start - 1]
            expected += poisson.logpmf(counts[t], np.exp(log_rate)).sum()
    # float32 model outputs: 1e-4 relative on a sum of ~600 terms
    assert total == pytest.approx(expected, rel=1e-4)


def test_probe_decodes_a_state_written_into_the_features():
    rng = np.random.default_rng(1)
    states = np.repeat(rng.integers(0, 3, 40), 25)
    features = rng.normal(size=(1000, 6))
    features[:, 0] += 3.0 * states
    assert probe_accuracy(features, states) > 0.9
    assert probe_accuracy(rng.normal(size=(1000, 6)), states) < 0.6


def test_end_to_end_tiny_run(tmp_path):
    overrides = {"train_lengths": (128, 256), "test_length": 200, "num_states": 2, "num_neurons": 5, "em_iterations": 3,
                 "patterns": ("SS", "DD"), "train_steps": 4, "batch_size": 4, "model_dim": 8, "window": 32,
                 "reservoir_neurons": 40, "reservoir_in_degree": 10, "recorded_neurons": 5, "reservoir_states": 2}
    result = run_experiment("counterpart_spikes", overrides=overrides, out_root=tmp_path, seed=0, quiet=True)
    m = result.metrics
    for dataset in ("hmmglm", "reservoir"):
        for length in (128, 256):
            for prior in ("none", "gaussian", "onehot"):
                assert np.isfinite(m[f"{dataset}_hmmglm_{prior}_bits_per_spike_T{length}"])
                assert 0 <= m[f"{dataset}_hmmglm_{prior}_state_accuracy_T{length}"] <= 1
            for pattern in ("SS", "DD"):
                assert np.isfinite(m[f"{dataset}_seq_{pattern}_bits_per_spike_T{length}"])
                assert 0 <= m[f"{dataset}_seq_{pattern}_probe_accuracy_T{length}"] <= 1
        assert f"{dataset}_sequence_catches_up_at_bins" in m
    for name in ("bits_per_spike.png", "validation.png", "models.csv"):
        assert (result.path / name).exists(), name


def test_bad_training_lengths(tmp_path):
    with pytest.raises(ValueError, match="train_lengths"):
        run_experiment("counterpart_spikes", overrides={"train_lengths": (100,), "window": 128},
                       out_root=tmp_path, seed=0, quiet=True)


def _rows(gaps: dict) -> list[dict]:
    """One HMM-GLM row at 0 bits/spike and one sequence-model row at ``gap`` per length."""
    rows = []
    for length, gap in gaps.items():
        rows.append({"dataset": "hmmglm", "model": "hmmglm_none", "train_bins": length, "heldout_bits_per_spike": 0.0})
        rows.append({"dataset": "hmmglm", "model": "seq_SS", "train_bins": length, "heldout_bits_per_spike": gap})
    return rows


@pytest.mark.parametrize("gaps, expected", [
    ({1000: 0.04, 4000: -0.006}, float("inf")),      # ahead at 1000, behind at 4000 (the seed-0 demo)
    ({1000: -0.2, 4000: 0.01}, 4000.0),              # behind, then ahead: catches up at 4000
    ({1000: 0.02, 4000: -0.01, 16000: 0.03}, 16000.0),
    ({1000: 0.0, 4000: 0.1}, 1000.0),
])
def test_catch_up_length_is_where_the_sequence_model_stays_ahead(gaps, expected):
    from experiments.counterpart_spikes import Config, _verdict

    config = Config(datasets=("hmmglm",), train_lengths=tuple(gaps), window=16)
    metrics = {}
    lines = _verdict(config, _rows(gaps), metrics)
    assert metrics["hmmglm_sequence_catches_up_at_bins"] == expected
    for line, gap in zip(lines, gaps.values()):
        assert line.endswith(f"{'sequence model' if gap >= 0 else 'HMM-GLM'} wins by {abs(gap):.4f}")
