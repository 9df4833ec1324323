"""Shared inputs for the bridges tests (seeded; float64 unless a test says otherwise)."""
from __future__ import annotations

import pytest
import torch


def _make(batch=2, length=17, heads=3, key_dim=5, value_dim=7, dtype=torch.float64, seed=0,
          unit_keys=False):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, length, heads, key_dim, generator=generator, dtype=dtype)
    k = torch.randn(batch, length, heads, key_dim, generator=generator, dtype=dtype)
    v = torch.randn(batch, length, heads, value_dim, generator=generator, dtype=dtype)
    if unit_keys:
        k = k / k.norm(dim=-1, keepdim=True)
    return q, k, v


@pytest.fixture
def make_qkv():
    """``make_qkv(batch, length, heads, key_dim, value_dim, dtype, seed, unit_keys)``."""
    return _make


def relative_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||a - e||_2 / ||e||_2 over all entries, in float64."""
    actual, expected = actual.double(), expected.double()
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-300))


@pytest.fixture
def rel_rms():
    return relative_rms
