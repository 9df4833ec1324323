"""Causal softmax attention: against torch's fused kernel (the peer) and with a KV cache."""
from __future__ import annotations

import pytest
import torch

from bridges.softmax_attention import KVCache, softmax_attention


@pytest.mark.parametrize("length", [1, 31, 64])
def test_matches_torch_scaled_dot_product_attention(make_qkv, length):
    q, k, v = make_qkv(length=length, key_dim=5, value_dim=5)
    out, _ = softmax_attention(q, k, v)
    peer = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True).transpose(1, 2)
    assert (out - peer).abs().max() <= 1e-12      # float64, same maths, different order


def test_single_steps_with_kv_cache_equal_one_call(make_qkv):
    q, k, v = make_qkv(length=15)
    full, cache = softmax_attention(q, k, v, output_final_state=True)
    assert torch.equal(cache.keys, k) and torch.equal(cache.values, v)
    state, steps = None, []
    for t in range(q.shape[1]):
        out, state = softmax_attention(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1],
                                       initial_state=state, output_final_state=True)
        steps.append(out)
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-12
    assert state.keys.shape == k.shape


def test_prefix_cache_then_block(make_qkv):
    q, k, v = make_qkv(length=30)
    full, _ = softmax_attention(q, k, v)
    _, cache = softmax_attention(q[:, :11], k[:, :11], v[:, :11], output_final_state=True)
    tail, _ = softmax_attention(q[:, 11:], k[:, 11:], v[:, 11:], initial_state=cache)
    assert (tail - full[:, 11:]).abs().max() <= 1e-12


def test_bad_cache_is_rejected(make_qkv):
    q, k, v = make_qkv(length=4)
    with pytest.raises(TypeError, match="initial_state"):
        softmax_attention(q, k, v, initial_state=k)
    with pytest.raises(ValueError, match="initial_state.keys"):
        softmax_attention(q, k, v, initial_state=KVCache(k[..., :2], v))
