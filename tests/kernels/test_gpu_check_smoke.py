"""The GPU check runs end to end (on CPU: Triton interpreter, tiny sizes) and passes its
own verification; on a GPU machine the same experiment runs at full size."""
import json
import subprocess
import sys

import torch

TINY = ["gla_shapes=1x70x1x16", "verify_length=20", "verify_dim=16", "repeats=1",
        "naive_repeats=1", "spiking_sizes=64", "batch_networks=2", "batch_network_size=32",
        "in_degree=8", "simulated_ms=5", "warmup_ms=1", "steps_per_graph=5", "raster_neurons=40",
        "raster_steps=20", "readout_shape=2,2,64"]


def test_gpu_check_smoke_run(tmp_path):
    # A fresh process, so "brian2 was never imported" is about this run alone and not
    # about tests that ran earlier in the same pytest session.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    overrides = [arg for item in TINY for arg in ("--set", item)]
    completed = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", "gpu_check", *overrides, "--out",
         str(tmp_path), "--device", device, "--quiet"], capture_output=True, text=True, timeout=600,
        check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    (run_path,) = (tmp_path / "gpu_check").iterdir()
    metrics = json.loads((run_path / "metrics.json").read_text())
    assert metrics["verify_all_pass"] is True and metrics["verify_failures"] == 0
    assert metrics["gla_1_70_1_16_ours_fwd_bwd_ms"] > 0
    assert metrics["spiking_1x64_10Hz_eager_rate_hz"] >= 0
    assert metrics["wiring_brian2_imported"] is False
    # the reservoir's simulate takes the Triton step exactly where the dispatch rule says
    assert metrics["wiring_reservoir_auto_step_kernel"] == ("triton" if device == "cuda" else "torch")
    assert metrics["wiring_reservoir_naive_step_kernel"] == "torch"
    for name in ("verification.csv", "gla_timings.csv", "spiking_timings.csv", "report.html"):
        assert (run_path / name).exists(), name
    verified = (run_path / "verification.csv").read_text()
    for kernel in ("gla", "three_factor", "izhikevich", "glm_terms", "hmm_scan"):
        assert kernel in verified, kernel  # every kernel family has rows
