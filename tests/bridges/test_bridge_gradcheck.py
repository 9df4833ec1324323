"""torch.autograd.gradcheck in float64 on tiny shapes, for every reference op and form."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from bridges.delta_rule import delta_rule
from bridges.gated_delta_rule import gated_delta_rule
from bridges.gated_linear_attention import gated_linear_attention
from bridges.hebbian import hebbian_memory
from bridges.linear_attention import linear_attention
from bridges.softmax_attention import KVCache, softmax_attention

B, T, H, K, V = 1, 5, 2, 3, 2
SHAPES = {"q": (B, T, H, K), "k": (B, T, H, K), "v": (B, T, H, V), "gate": (B, T, H, K),
          "beta": (B, T, H), "decay": (B, T, H), "state": (B, H, K, V)}

# Each case: (names of the inputs it differentiates, function of those inputs). Gates and
# write strengths enter through logsigmoid/sigmoid of free logits so every input is valid.
CASES = {
    "softmax": (("q", "k", "v"), lambda q, k, v: softmax_attention(
        q, k, v, initial_state=KVCache(k[:, :2] + 1.0, v[:, :2] - 1.0))[0]),
    "linear_parallel": (("q", "k", "v", "state"), lambda q, k, v, s: linear_attention(
        q, k, v, None, s, True, form="parallel")),
    "linear_recurrent": (("q", "k", "v", "state"), lambda q, k, v, s: linear_attention(
        q, k, v, None, s, True, form="recurrent")),
    "linear_chunked": (("q", "k", "v", "state"), lambda q, k, v, s: linear_attention(
        q, k, v, None, s, True, form="chunked", chunk_size=3)),
    "linear_normalized": (("q", "k", "v"), lambda q, k, v: linear_attention(
        F.softplus(q), F.softplus(k), v, normalize=True, form="chunked", chunk_size=3)[0]),
    "gla_chunked": (("q", "k", "v", "gate", "state"), lambda q, k, v, gl, s:
                    gated_linear_attention(q, k, v, F.logsigmoid(gl), None, s, True,
                                           chunk_size=3)),
    "gla_recurrent": (("q", "k", "v", "gate", "state"), lambda q, k, v, gl, s:
                      gated_linear_attention(q, k, v, F.logsigmoid(gl), None, s, True,
                                             form="recurrent")),
    "delta_chunked": (("q", "k", "v", "beta", "state"), lambda q, k, v, bl, s: delta_rule(
        q, k, v, torch.sigmoid(bl), None, s, True, chunk_size=3)),
    "delta_recurrent": (("q", "k", "v", "beta", "state"), lambda q, k, v, bl, s: delta_rule(
        q, k, v, torch.sigmoid(bl), None, s, True, form="recurrent")),
    "gated_delta_chunked": (("q", "k", "v", "decay", "beta", "state"),
                            lambda q, k, v, dl, bl, s: gated_delta_rule(
                                q, k, v, F.logsigmoid(dl), torch.sigmoid(bl), None, s, True,
                                chunk_size=3)),
    "gated_delta_recurrent": (("q", "k", "v", "decay", "beta", "state"),
                              lambda q, k, v, dl, bl, s: gated_delta_rule(
                                  q, k, v, F.logsigmoid(dl), torch.sigmoid(bl), None, s, True,
                                  form="recurrent")),
    "hebbian_error_driven": (("q", "k", "v", "gate", "beta", "state"),
                             lambda q, k, v, gl, bl, s: hebbian_memory(
                                 q, k, v, F.logsigmoid(gl), torch.sigmoid(bl),
                                 s.transpose(-1, -2), True, error_driven=True)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_float64(name):
    names, function = CASES[name]
    generator = torch.Generator().manual_seed(0)
    inputs = []
    for input_name in names:
        x = torch.randn(*SHAPES[input_name], generator=generator, dtype=torch.float64)
        if input_name == "k":   # unit keys keep delta-rule writes contractive
            x = x / x.norm(dim=-1, keepdim=True)
        inputs.append(x.requires_grad_())
    # float64 central differences with eps 1e-6: truncation ~1e-12, rounding ~1e-10.
    assert gradcheck(function, tuple(inputs), eps=1e-6, atol=1e-7, rtol=1e-5)
