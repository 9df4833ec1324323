"""The GLA torch references agree with each other and with closed forms (float64)."""
import pytest
import torch

from kernels.gla import (
    chunk_gla,
    fused_recurrent_gla,
    linear_attention,
    naive_chunk_gla,
    naive_recurrent_gla,
)


@pytest.fixture(autouse=True)
def _naive_path(monkeypatch):
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "naive")  # these test the references


# float64 throughout: the references differ only in summation order, so ~1e-12 is the bound.
TOL = 1e-11


def _inputs(batch=2, length=23, heads=3, key_dim=6, value_dim=5, gate_scale=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(batch, length, heads, key_dim, generator=gen, dtype=torch.float64)
            for _ in range(2))
    v = torch.randn(batch, length, heads, value_dim, generator=gen, dtype=torch.float64)
    g = gate_scale * torch.nn.functional.logsigmoid(
        torch.randn(batch, length, heads, key_dim, generator=gen, dtype=torch.float64))
    return q, k, v, g


def test_scalar_decay_matches_closed_form():
    # With the same decay for every key, o_t = scale sum_{s<=t} exp(G_t - G_s) (q_t.k_s) v_s.
    q, k, v, g = _inputs()
    g = g[..., :1].expand_as(g).contiguous()
    scale = 0.7
    cum = torch.cumsum(g[..., 0], dim=1)                                   # [B, T, H]
    decay = torch.exp(cum[:, :, None] - cum[:, None, :])                    # [B, t, s, H]
    causal = torch.ones(q.shape[1], q.shape[1], dtype=torch.bool).tril()
    decay = decay * causal[None, :, :, None]
    scores = torch.einsum("bthk,bshk->btsh", q, k) * decay
    expected = scale * torch.einsum("btsh,bshv->bthv", scores, v)
    for op in (naive_recurrent_gla, naive_chunk_gla):
        out, _ = op(q, k, v, g, scale=scale)
        assert (out - expected).abs().max() < TOL


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 64])
def test_chunked_equals_recurrent_with_initial_state(chunk_size):
    q, k, v, g = _inputs()
    h0 = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    o_ref, s_ref = naive_recurrent_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    o, s = naive_chunk_gla(q, k, v, g, initial_state=h0, output_final_state=True,
                           chunk_size=chunk_size)
    assert (o - o_ref).abs().max() < TOL and (s - s_ref).abs().max() < TOL


def test_linear_attention_is_zero_gate_gla_and_masked_product():
    q, k, v, g = _inputs()
    out, _ = linear_attention(q, k, v, scale=1.0)
    out_zero_gate, _ = naive_recurrent_gla(q, k, v, torch.zeros_like(g), scale=1.0)
    causal = torch.ones(q.shape[1], q.shape[1], dtype=torch.float64).tril()
    expected = torch.einsum("bthk,bshk,ts,bshv->bthv", q, k, causal, v)
    assert (out - expected).abs().max() < TOL and (out_zero_gate - expected).abs().max() < TOL


def test_strong_gates_stay_finite_and_agree():
    # Cumulative log decay reaches ~-1e4 inside a chunk: exp(+b) tricks would overflow.
    q, k, v, g = _inputs(gate_scale=500.0)
    o_ref, s_ref = naive_recurrent_gla(q, k, v, g, output_final_state=True)
    o, s = naive_chunk_gla(q, k, v, g, output_final_state=True)
    assert torch.isfinite(o).all() and torch.isfinite(s).all()
    assert (o - o_ref).abs().max() < TOL and (s - s_ref).abs().max() < TOL


def test_varlen_equals_separate_sequences_including_empty():
    q, k, v, g = _inputs(batch=1, length=30)
    cu_seqlens = torch.tensor([0, 11, 11, 30])
    h0 = torch.randn(3, 3, 6, 5, dtype=torch.float64)
    for op in (chunk_gla, fused_recurrent_gla):
        out, final = op(q, k, v, g, initial_state=h0, output_final_state=True,
                        cu_seqlens=cu_seqlens)
        for n, (a, b) in enumerate([(0, 11), (11, 11), (11, 30)]):
            o_n, s_n = naive_recurrent_gla(q[:, a:b], k[:, a:b], v[:, a:b], g[:, a:b],
                                           initial_state=h0[n:n + 1], output_final_state=True)
            assert torch.allclose(out[:, a:b], o_n, rtol=0, atol=TOL)
            assert (final[n:n + 1] - s_n).abs().max() < TOL
        assert torch.equal(final[1], h0[1])  # the empty sequence passes its state through


def test_gradients_of_chunked_match_recurrent():
    q, k, v, g = (x.requires_grad_() for x in _inputs(length=9))
    h0 = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 9, 3, 5, dtype=torch.float64)
    grads = []
    for op in (naive_recurrent_gla, naive_chunk_gla):
        out, final = op(q, k, v, g, initial_state=h0, output_final_state=True)
        loss = (out * weights).sum() + final.square().sum()
        grads.append(torch.autograd.grad(loss, (q, k, v, g, h0)))
    for a, b in zip(*grads):
        assert (a - b).abs().max() < 1e-10


def test_output_dtype_and_state_dtype():
    q, k, v, g = (x.to(torch.float16) for x in _inputs())
    out, final = chunk_gla(q, k, v, g, output_final_state=True)
    assert out.dtype == torch.float16 and final.dtype == torch.float32


@pytest.mark.parametrize("bad, message", [
    ({"k": torch.zeros(2, 23, 3, 7)}, "k must have q's shape"),
    ({"g": torch.zeros(2, 23, 3)}, "g \\(log decay per key\\)"),
    ({"initial_state": torch.zeros(2, 3, 6, 4)}, "initial_state must have shape"),
    ({"cu_seqlens": torch.tensor([0, 5])}, "batch size must be 1"),
])
def test_bad_inputs_name_the_argument(bad, message):
    q, k, v, g = (x.float() for x in _inputs())
    args = {"q": q, "k": k, "v": v, "g": g}
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        chunk_gla(**args)
