"""Facts about where a run happened, stored as ``env.json`` beside its results."""
from __future__ import annotations

import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

_PACKAGES = ("neurobridge", "numpy", "scipy", "torch", "triton", "brian2", "matplotlib",
             "pandas", "pyarrow", "networkx", "tensorly", "dask", "distributed")


def _git_commit() -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        result = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def _static_facts() -> dict:
    """What does not change within a process (read once: package metadata is slow)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "packages": versions, "git_commit": _git_commit(), "cpu": _cpu_name()}


def environment_facts(seed: int, device: str) -> dict:
    """Python, package versions, git commit, device, CPU/GPU name, seed."""
    facts = {**_static_facts(), "device": device, "seed": int(seed)}
    if device.startswith("cuda"):
        import torch

        facts["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return facts
