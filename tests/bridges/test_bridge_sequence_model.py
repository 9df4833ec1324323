"""The pattern-string sequence model, its mixers, the recall tasks and the training loop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bridges.mixers import MIXER_NAMES, TokenMixer, rotary
from bridges.recall_tasks import IGNORE_INDEX, copy_batch, mqar_batch, mqar_vocab_size
from bridges.sequence_model import SequenceModel, SequenceModelConfig
from bridges.training import accuracy, train


@pytest.mark.parametrize("letter", sorted(MIXER_NAMES))
def test_every_mixer_is_causal(letter):
    # Changing the token at position t must leave every output before t unchanged.
    torch.manual_seed(0)
    mixer = TokenMixer(letter, model_dim=12, num_heads=3, max_length=20, chunk_size=4).double()
    x = torch.randn(2, 20, 12, dtype=torch.float64)
    changed = x.clone()
    changed[:, 11] += 5.0
    before, after = mixer(x), mixer(changed)
    assert before.shape == x.shape
    assert (before[:, :11] - after[:, :11]).abs().max() <= 1e-12
    if letter != "N":   # every mixing layer carries the change forward
        assert (before[:, 12:] - after[:, 12:]).abs().max() > 1e-6
    else:               # no mixing: only position 11 itself changes
        assert (before[:, 12:] - after[:, 12:]).abs().max() <= 1e-12


def test_model_shapes_seed_and_global_rng_untouched(monkeypatch):
    config = SequenceModelConfig(vocab_size=11, pattern="SLGDEFN", model_dim=16, num_heads=2,
                                 max_length=24)
    state = torch.random.get_rng_state()
    cuda_seeded = []  # torch.manual_seed would reseed every CUDA device too (not restored)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda value: cuda_seeded.append(value))
    first, second = SequenceModel(config, seed=3), SequenceModel(config, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state) and cuda_seeded == []
    tokens = torch.randint(0, 11, (3, 24))
    logits = first(tokens)
    assert logits.shape == (3, 24, 11)
    assert torch.equal(logits, second(tokens))
    assert not torch.equal(logits, SequenceModel(config, seed=4)(tokens))
    assert len(first.blocks) == 7 and config.state_size == 2 * 8 * 8


def test_weights_are_drawn_on_the_cpu_whatever_the_default_device():
    # under torch.set_default_device (here "meta", standing in for "cuda") the weights are still
    # the seeded CPU draw, moved to the device asked for (was: drawn on the default device,
    # whose generator the seed does not reach; on meta the move even fails)
    from bridges.counterpart_model import ContinuousSequenceModel
    config = SequenceModelConfig(vocab_size=11, pattern="SLG", model_dim=16, num_heads=2, max_length=24)
    builders = (lambda **kw: SequenceModel(config, seed=3, **kw),
                lambda **kw: ContinuousSequenceModel(3, 2, pattern="SLG", model_dim=16, num_heads=2,
                                                     max_length=24, seed=3, **kw))
    for build in builders:
        plain = build()
        with torch.device("meta"):
            moved = build(device="cpu")
            on_default = build()
        for (name, a), b, c in zip(plain.named_parameters(), moved.parameters(), on_default.parameters()):
            assert b.device.type == "cpu" and torch.equal(a, b), name
            assert c.device.type == "meta", name  # device=None follows the default device


def test_pattern_and_input_errors():
    with pytest.raises(ValueError, match=r"unknown mixer letter\(s\) \['X'\]"):
        SequenceModelConfig(vocab_size=5, pattern="SX")
    with pytest.raises(ValueError, match="pattern must be a non-empty string"):
        SequenceModelConfig(vocab_size=5, pattern="")
    with pytest.raises(ValueError, match=r"model_dim \(10\) must be divisible by num_heads \(3\)"):
        SequenceModelConfig(vocab_size=5, model_dim=10, num_heads=3)
    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        SequenceModelConfig(vocab_size=0)
    model = SequenceModel(SequenceModelConfig(vocab_size=5, model_dim=8, max_length=6))
    with pytest.raises(ValueError, match="sequence length 7 exceeds max_length 6"):
        model(torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens must be an integer tensor"):
        model(torch.zeros(1, 4))


def test_mqar_batch_structure():
    tokens, targets = mqar_batch(64, 40, 6, num_keys=10, num_values=7, seed=1)
    assert tokens.shape == targets.shape == (64, 40)
    keys, values = tokens[:, 0:12:2], tokens[:, 1:12:2]
    assert keys.min() >= 1 and keys.max() <= 10 and values.min() >= 11 and values.max() <= 17
    assert tokens.max() < mqar_vocab_size(10, 7)
    for row in range(64):
        pairs = dict(zip(keys[row].tolist(), values[row].tolist()))
        assert len(pairs) == 6                                  # distinct keys
        scored = (targets[row] != IGNORE_INDEX).nonzero().flatten()
        assert len(scored) == 6 and scored.min() >= 12
        for position in scored.tolist():                         # query -> its value
            assert pairs[int(tokens[row, position])] == int(targets[row, position])
    with pytest.raises(ValueError, match="length must be >= 3 \\* num_pairs"):
        mqar_batch(2, 10, 4)


def test_copy_batch_structure():
    tokens, targets = copy_batch(8, 20, vocab_size=12, seed=2)
    assert torch.equal(tokens[:, :10], tokens[:, 10:])
    assert torch.equal(targets[:, 10:19], tokens[:, 1:10])
    assert (targets[:, :10] == IGNORE_INDEX).all() and (targets[:, 19] == IGNORE_INDEX).all()
    assert all(len(set(row.tolist())) == 10 for row in tokens[:, :10])
    with pytest.raises(ValueError, match="vocab_size must exceed length / 2"):
        copy_batch(2, 30, vocab_size=12)


def test_copy_batch_with_replacement_repeats_tokens_inside_a_copy():
    tokens, targets = copy_batch(64, 40, vocab_size=6, seed=3, with_replacement=True)
    assert torch.equal(tokens[:, :20], tokens[:, 20:])
    assert torch.equal(targets[:, 20:39], tokens[:, 1:20])
    assert int(tokens.min()) >= 1 and int(tokens.max()) <= 5
    # 20 draws from 5 tokens must repeat (pigeonhole): the distinct-token rule is off.
    assert all(len(set(row.tolist())) < 20 for row in tokens[:, :20])


def test_softmax_model_learns_copying_on_cpu():
    torch.set_num_threads(1)
    model = SequenceModel(SequenceModelConfig(vocab_size=16, pattern="SS", model_dim=32,
                                              num_heads=2, max_length=16, mlp_ratio=2), seed=0)
    make = lambda b, rng: copy_batch(b, 16, vocab_size=16, seed=rng)
    eval_set = make(256, np.random.default_rng(99))
    before = accuracy(model, *eval_set)
    result = train(model, make, num_steps=150, batch_size=32, learning_rate=3e-3, seed=0,
                   eval_set=eval_set, eval_every=50)
    # Chance is 1/15; an induction circuit in two softmax layers copies almost perfectly.
    assert before < 0.2
    assert result.eval_accuracy[-1] > 0.8
    assert result.losses[-10:].mean() < result.losses[:10].mean()


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_a_seed_out_of_range_is_named(seed):
    config = SequenceModelConfig(vocab_size=5, pattern="S", model_dim=8, num_heads=2, max_length=4)
    with pytest.raises(ValueError, match=r"seed=-?\d+ is out of range; allowed: an int in \[0, 2\*\*63\)"):
        SequenceModel(config, seed=seed)


def test_rotary_of_float64_input_rotates_by_float64_angles():
    """A float64 model (oracle, gradcheck) got float32 angles: cos error 3.5e-8 and norm error
    4e-8 at T = 4096, 1e8 float64 ulps. Now both stay at float64 rounding (tens of ulps)."""
    length, dim = 4096, 8
    x = torch.zeros(1, length, 1, dim, dtype=torch.float64)
    x[..., 0] = 1.0                                    # unit vector in pair 0 (frequency 1)
    rotated = rotary(x)
    positions = torch.arange(length, dtype=torch.float64)
    assert rotated.dtype == torch.float64
    assert (rotated[0, :, 0, 0] - torch.cos(positions)).abs().max() <= 1e-12
    assert (rotated[0, :, 0, dim // 2] - torch.sin(positions)).abs().max() <= 1e-12
    assert (rotated.norm(dim=-1) - 1.0).abs().max() <= 1e-12


def test_a_seed_sequence_seeds_the_models_as_sweeps_spawn_them():
    # DESIGN: sweeps derive per-task seeds with SeedSequence(root).spawn(n); the same child
    # gives the same weights, different children different ones (was a TypeError)
    config = SequenceModelConfig(vocab_size=5, pattern="SL", model_dim=8, num_heads=2, max_length=4)
    first, again = np.random.SeedSequence(7).spawn(2), np.random.SeedSequence(7).spawn(2)
    weights = [SequenceModel(config, seed=child).readout.weight for child in (*first, *again)]
    assert torch.equal(weights[0], weights[2]) and torch.equal(weights[1], weights[3])
    assert not torch.equal(weights[0], weights[1])
