"""The GPU check runs end to end (on CPU: Triton interpreter, tiny sizes) and passes its
own verification; on a GPU machine the same experiment runs at full size."""
import torch

from experiments.runner import run_experiment

TINY = ["gla_shapes=1x70x1x16", "verify_length=20", "verify_dim=16", "repeats=1",
        "naive_repeats=1", "spiking_sizes=64", "batch_networks=2", "batch_network_size=32",
        "in_degree=8", "simulated_ms=5", "warmup_ms=1", "steps_per_graph=5", "raster_neurons=40",
        "raster_steps=20", "readout_shape=2,2,64"]


def test_gpu_check_smoke_run(tmp_path):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = run_experiment("gpu_check", overrides=TINY, out_root=tmp_path, seed=0,
                            device=device, quiet=True)
    metrics = result.metrics
    assert metrics["verify_all_pass"] is True and metrics["verify_failures"] == 0
    assert metrics["gla_1_70_1_16_ours_fwd_bwd_ms"] > 0
    assert metrics["spiking_1x64_10Hz_eager_rate_hz"] >= 0
    assert metrics["wiring_brian2_imported"] is False
    for name in ("verification.csv", "gla_timings.csv", "spiking_timings.csv", "report.html"):
        assert (result.path / name).exists(), name
