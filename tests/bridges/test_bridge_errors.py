"""Bad input raises a clear error naming the argument, the value and what is allowed."""
from __future__ import annotations

import pytest
import torch

from bridges.delta_rule import delta_rule
from bridges.gated_delta_rule import gated_delta_rule
from bridges.gated_linear_attention import gated_linear_attention
from bridges.hebbian import hebbian_memory
from bridges.linear_attention import linear_attention
from bridges.softmax_attention import softmax_attention


def _ops(q):
    """Every op with its extra per-step arguments filled with valid values."""
    beta = torch.full(q.shape[:3], 0.5, dtype=q.dtype) if q.dim() == 4 else None
    decay = torch.zeros(q.shape[:3], dtype=q.dtype) if q.dim() == 4 else None
    return {
        "softmax": lambda q, k, v, **kw: softmax_attention(q, k, v, **kw),
        "linear": lambda q, k, v, **kw: linear_attention(q, k, v, **kw),
        "gla": lambda q, k, v, **kw: gated_linear_attention(q, k, v, torch.zeros_like(q)
                                                            if q.dim() == 4 else None, **kw),
        "delta": lambda q, k, v, **kw: delta_rule(q, k, v, beta, **kw),
        "gated_delta": lambda q, k, v, **kw: gated_delta_rule(q, k, v, decay, beta, **kw),
        "hebbian": lambda q, k, v, **kw: hebbian_memory(q, k, v, **kw),
    }


OP_NAMES = ("softmax", "linear", "gla", "delta", "gated_delta", "hebbian")


def _qkv(dtype=torch.float32):
    return (torch.randn(2, 5, 3, 4, dtype=dtype), torch.randn(2, 5, 3, 4, dtype=dtype),
            torch.randn(2, 5, 3, 6, dtype=dtype))


@pytest.mark.parametrize("op", OP_NAMES)
def test_mismatched_key_shape(op):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"k must have q's shape"):
        _ops(q)[op](q, k[..., :3], v)


@pytest.mark.parametrize("op", OP_NAMES)
def test_mismatched_value_shape(op):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"v must have shape \[B, T, H, V\]"):
        _ops(q)[op](q, k, v[:, :4])


@pytest.mark.parametrize("op", OP_NAMES)
def test_wrong_rank(op):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"q must have rank 4"):
        _ops(q)[op](q[0], k, v)


@pytest.mark.parametrize("op", OP_NAMES)
def test_non_floating_dtype(op):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"v must have a floating dtype.*torch.int64"):
        _ops(q)[op](q, k, v.long())


@pytest.mark.parametrize("op", OP_NAMES)
def test_mixed_dtypes(op):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"share one dtype"):
        _ops(q)[op](q, k, v.double())


@pytest.mark.parametrize("op", OP_NAMES)
def test_not_a_tensor(op):
    q, k, v = _qkv()
    with pytest.raises(TypeError, match=r"k must be a torch.Tensor.*list"):
        _ops(q)[op](q, k.tolist(), v)


@pytest.mark.parametrize("op", ["linear", "gla", "delta", "gated_delta"])
def test_wrong_initial_state_shape(op):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"initial_state must have shape .*\(2, 3, 4, 6\)"):
        _ops(q)[op](q, k, v, initial_state=torch.zeros(2, 3, 6, 4))


def test_positive_gla_gate_is_rejected():
    q, k, v = _qkv()
    g = torch.zeros_like(q)
    g[0, 1, 2, 3] = 0.25
    with pytest.raises(ValueError, match=r"g is a log decay and must be <= 0.*0.25"):
        gated_linear_attention(q, k, v, g)


def test_positive_gated_delta_decay_is_rejected():
    q, k, v = _qkv()
    beta = torch.ones(q.shape[:3])
    with pytest.raises(ValueError, match=r"g is a log decay and must be <= 0"):
        gated_delta_rule(q, k, v, torch.full(q.shape[:3], 0.1), beta)
    with pytest.raises(ValueError, match=r"g must have rank 3 \(\[B, T, H\]\)"):
        gated_delta_rule(q, k, v, torch.zeros_like(q), beta)
    with pytest.raises(ValueError, match=r"g must be a \[B, T, H\] log-decay tensor"):
        gated_delta_rule(q, k, v, None, beta)


def test_positive_hebbian_decay_and_bad_write_strength():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"log_decay is a log decay and must be <= 0"):
        hebbian_memory(q, k, v, log_decay=torch.full(q.shape[:3], 0.5))
    with pytest.raises(ValueError, match=r"log_decay \(log decay\) contains NaN"):
        hebbian_memory(q, k, v, log_decay=torch.full(q.shape[:3], float("nan")))
    with pytest.raises(TypeError, match=r"write_strength must be a float"):
        hebbian_memory(q, k, v, write_strength="strong")
    with pytest.raises(ValueError, match=r"beta must have rank 3 \(\[B, T, H\]\)"):
        delta_rule(q, k, v, torch.ones(2, 5))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_chunk_size(bad):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"chunk_size must be a positive int"):
        linear_attention(q, k, v, chunk_size=bad)
    with pytest.raises(ValueError, match=r"chunk_size must be a positive int"):
        delta_rule(q, k, v, torch.ones(q.shape[:3]), chunk_size=bad)


def test_unknown_form():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"form must be one of .*'sideways'"):
        linear_attention(q, k, v, form="sideways")
    with pytest.raises(ValueError, match=r"form must be one of .*'parallel'"):
        gated_linear_attention(q, k, v, None, form="parallel")


def test_prediction_probe_needs_an_error_driven_write():
    from bridges.hebbian import hebbian_step

    weights, cue = torch.zeros(1, 1, 2, 3), torch.ones(1, 1, 3)
    with pytest.raises(ValueError, match="prediction_probe is only used by an error-driven"):
        hebbian_step(weights, cue, torch.ones(1, 1, 2), prediction_probe=cue)


def test_normalized_linear_attention_refuses_a_zero_normaliser():
    from bridges.linear_attention import linear_attention

    q = torch.zeros(1, 3, 1, 4)
    k = torch.rand(1, 3, 1, 4) + 0.1
    v = torch.randn(1, 3, 1, 2)
    with pytest.raises(ValueError, match="normalize=True needs"):
        linear_attention(q, k, v, normalize=True)
