"""Attention maps per layer and head (bridges.attention_maps): the maps reproduce each mixer's
output exactly, and the connectome tensor's shapes and ordering match an explicit loop."""
import numpy as np
import pytest
import torch

from bridges.attention_maps import attention_maps, causal_pairs, connectome_tensor
from bridges.sequence_model import SequenceModel, SequenceModelConfig


@pytest.mark.parametrize("pattern", ["SLG"])
def test_maps_times_values_reproduce_every_mixer_output(pattern):
    model = SequenceModel(SequenceModelConfig(vocab_size=23, pattern=pattern, model_dim=16, num_heads=2,
                                              max_length=12), seed=4, dtype=torch.float64)
    with torch.no_grad():                     # sharpen the maps so that the check is not trivial
        for block in model.blocks:
            block.mixer.query.weight.mul_(4.0)
    tokens = torch.randint(0, 23, (1, 12), generator=torch.Generator().manual_seed(0))
    captured = []
    hooks = [b.mixer.register_forward_hook(lambda m, a, o: captured.append((a[0], o)) and None)
             for b in model.blocks]
    with torch.no_grad():
        model(tokens)
    for hook in hooks:
        hook.remove()
    maps = attention_maps(model, tokens)
    assert maps.shape == (3, 2, 12, 12)
    assert torch.allclose(maps[0].sum(-1), torch.ones(2, 12, dtype=torch.float64), atol=1e-12)   # softmax rows
    assert (maps.triu(1) == 0).all() and (maps >= 0).all()                                     # causal, non-negative
    for layer, (block, (x, output)) in enumerate(zip(model.blocks, captured)):
        mixer = block.mixer
        v = mixer._heads(mixer.value(x))
        mixed = torch.einsum("hts,bshd->bthd", maps[layer], v)
        if mixer.letter == "L":
            # |q.k| hides the sign: compare with the signed scores instead
            q, k = mixer.queries_and_keys(x)
            signed = torch.einsum("bthd,bshd->bhts", q, k).tril()
            assert torch.allclose(signed.abs()[0], maps[layer], atol=1e-12)
            mixed = torch.einsum("bhts,bshd->bthd", signed, v)
        if mixer.letter == "G":
            continue                                       # sign also hidden; checked below
        if mixer.letter != "S":
            mixed = torch.nn.functional.rms_norm(mixed, (mixer.head_dim,))
        # float64 end to end: only summation order differs
        assert torch.allclose(mixer.output(mixed.flatten(-2)), output, atol=1e-10), mixer.letter


def test_gla_map_equals_the_decayed_score_loop():
    model = SequenceModel(SequenceModelConfig(vocab_size=11, pattern="G", model_dim=8, num_heads=2, max_length=6),
                          seed=1, dtype=torch.float64)
    tokens = torch.randint(0, 11, (1, 6), generator=torch.Generator().manual_seed(2))
    captured = []
    hook = model.blocks[0].mixer.register_forward_pre_hook(lambda m, a: captured.append(a[0]) and None)
    maps = attention_maps(model, tokens)[0]
    hook.remove()
    mixer, x = model.blocks[0].mixer, captured[0]
    with torch.no_grad():
        q, k = mixer.queries_and_keys(x)
        g = torch.nn.functional.logsigmoid(mixer._heads(mixer.gate(x))) / 16.0
    for h in range(2):
        for t in range(6):
            for s in range(t + 1):
                decay = torch.exp(g[0, s + 1:t + 1, h].sum(0))            # prod of gates after s up to t
                expected = (q[0, t, h] * k[0, s, h] * decay).sum().abs()
                assert float(maps[h, t, s]) == pytest.approx(float(expected), abs=1e-12)


def test_connectome_tensor_shapes_and_order_match_an_explicit_loop():
    rng = np.random.default_rng(0)
    checkpoints, seeds, layers, heads, length = 3, 2, 2, 3, 5
    maps = rng.random((checkpoints, seeds, layers, heads, length, length))
    tensor, pairs, recordings = connectome_tensor(maps)
    num_pairs = length * (length + 1) // 2
    assert tensor.shape == (num_pairs, checkpoints, seeds * layers * heads)
    assert pairs.shape == (num_pairs, 2) and recordings.shape == (seeds * layers * heads, 3)
    expected_pairs = [(t, s) for t in range(length) for s in range(t + 1)]
    assert [tuple(p) for p in pairs] == expected_pairs
    r = 0
    for seed in range(seeds):
        for layer in range(layers):
            for head in range(heads):
                assert tuple(recordings[r]) == (seed, layer, head)
                for p, (t, s) in enumerate(expected_pairs):
                    for c in range(checkpoints):
                        assert tensor[p, c, r] == maps[c, seed, layer, head, t, s]
                r += 1
    assert np.array_equal(causal_pairs(length), pairs)


def test_a_bfloat16_models_maps_enter_the_connectome_tensor():
    # was: numpy has no bfloat16, so np.asarray raised and the maps of a bf16 model were
    # refused as "maps must be an array or tensor of numbers, got Tensor"
    model = SequenceModel(SequenceModelConfig(vocab_size=7, pattern="SG", model_dim=8, num_heads=2,
                                              max_length=5), dtype=torch.bfloat16)
    maps = attention_maps(model, torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(0)))
    assert maps.dtype == torch.bfloat16
    tensor, pairs, _ = connectome_tensor(maps[None, None])
    # every bf16 value is exact in float64: the tensor holds the maps' own values
    expected = maps.double().numpy()[..., pairs[:, 0], pairs[:, 1]].reshape(4, -1).T[:, None, :]
    assert tensor.dtype == np.float64 and np.array_equal(tensor, expected)


def test_errors():
    with pytest.raises(ValueError, match="maps must have shape"):
        connectome_tensor(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        connectome_tensor(-np.ones((1, 1, 1, 1, 2, 2)))
    model = SequenceModel(SequenceModelConfig(vocab_size=5, pattern="SD", model_dim=8, num_heads=2, max_length=4))
    with pytest.raises(ValueError, match="'D'"):
        attention_maps(model, torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="length"):
        causal_pairs(0)
