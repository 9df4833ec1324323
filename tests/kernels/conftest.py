"""Kernel tests: Triton kernels run through the CPU interpreter when no GPU is present.

``TRITON_INTERPRET`` must be set before any ``kernels.*.triton`` module is imported
(``triton.jit`` picks the interpreter at decoration time), hence at conftest import.
Every test also poisons kernel buffers with NaN (``NEUROBRIDGE_KERNELS_POISON=1``).
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def relative_rms_error(actual: torch.Tensor, expected: torch.Tensor,
                       absolute: float = 0.0) -> float:
    """rms(actual - expected) / rms(expected); 0 when the error rms is below ``absolute``
    (the short-circuit for tensors whose entries are all ~0)."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    diff = (actual - expected).pow(2).mean().sqrt().item()
    if diff <= absolute:
        return 0.0
    scale = expected.double().pow(2).mean().sqrt().item()
    return diff / scale if scale > 0 else float("inf")


@pytest.fixture(autouse=True)
def _poison_buffers(monkeypatch):
    monkeypatch.setenv("NEUROBRIDGE_KERNELS_POISON", "1")
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "triton")
