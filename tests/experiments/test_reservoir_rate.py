"""reservoir_rate: rates are counted over the steps actually simulated after warm-up."""
import numpy as np

from experiments.runner import run_experiment


def test_rates_divide_by_the_measured_steps_not_the_nominal_duration(tmp_path):
    # dt 0.3 ms: 1.5 ms of simulation is round(1.5 / 0.3) = 5 steps, the warm-up round(0.5 / 0.3)
    # = 2 of them, so spikes are counted over 3 steps = 0.9 ms (the rates used 1 ms: 10% low)
    result = run_experiment("reservoir_rate", overrides=["num_neurons=50", "in_degree=5", "drive=40",
                                                         "duration_ms=1.0", "warmup_ms=0.5", "dt_ms=0.3"],
                            out_root=tmp_path)
    arrays = np.load(result.path / "rates.npz")
    counts = arrays["spike_counts"]
    assert counts.sum() > 0
    np.testing.assert_allclose(arrays["rate_hz"], counts / 0.9e-3, rtol=1e-12)
    assert np.isclose(result.metrics["rate_hz"], np.mean(counts / 0.9e-3), rtol=1e-12, atol=0)
