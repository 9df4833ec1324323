"""Small helpers the benchmark experiments share: device sync before reading a clock, and
the machine's load (wall-clock ratios are only as good as the load they ran under)."""
from __future__ import annotations

import os


def synchronize(device) -> None:
    """Wait for queued CUDA work, so that a wall-clock reading includes it (no-op on CPU)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def load_average() -> float:
    """The 1-minute load average (nan where the OS has none): a load above ~1 on a 2-core
    machine inflates wall-clock timings of both sides, process starts most."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")
