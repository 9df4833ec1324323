"""Bad input to the public API of ``bridges`` raises an error naming the argument.

Each case below was accepted silently (NaN or wrong output) or failed deep inside
torch/numpy before the boundary checks of ``bridges/_validation.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bridges import attention_maps, fast_weights, pavlovian, poisson_loss, recall_tasks, training
from bridges.counterpart_model import ContinuousSequenceModel
from bridges.delta_rule import delta_rule
from bridges.gated_delta_rule import gated_delta_rule
from bridges.gated_linear_attention import gated_linear_attention
from bridges.hebbian import hebbian_memory, hebbian_step, outer_product_memory, recall
from bridges.linear_attention import linear_attention
from bridges.mixers import TokenMixer, rotary
from bridges.sequence_model import SequenceModel, SequenceModelConfig
from bridges.softmax_attention import KVCache, softmax_attention

B, T, H, K, V = 2, 5, 3, 4, 6


def _qkv(key_dim=K):
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(B, T, H, key_dim, generator=generator),
            torch.randn(B, T, H, key_dim, generator=generator),
            torch.randn(B, T, H, V, generator=generator))


def _beta():
    return torch.full((B, T, H), 0.5)


ATTENTION = {
    "softmax": lambda q, k, v, **kw: softmax_attention(q, k, v, **kw),
    "linear": lambda q, k, v, **kw: linear_attention(q, k, v, **kw),
    "gla": lambda q, k, v, **kw: gated_linear_attention(q, k, v, torch.zeros_like(q), **kw),
    "delta": lambda q, k, v, **kw: delta_rule(q, k, v, _beta(), **kw),
    "gated_delta": lambda q, k, v, **kw: gated_delta_rule(q, k, v, torch.zeros(B, T, H), _beta(),
                                                          **kw),
}


# ---------------------------------------------------------------- attention family

@pytest.mark.parametrize("op", ATTENTION)
@pytest.mark.parametrize("scale", [float("nan"), float("inf")])
def test_non_finite_scale_is_refused(op, scale):
    with pytest.raises(ValueError, match=r"scale must be a finite number, got (nan|inf)"):
        ATTENTION[op](*_qkv(), scale=scale)


@pytest.mark.parametrize("op", ATTENTION)
def test_zero_key_dim_with_default_scale_is_refused(op):
    with pytest.raises(ValueError, match=r"K = 0 features; the default scale"):
        ATTENTION[op](*_qkv(key_dim=0))


@pytest.mark.parametrize("op", [*ATTENTION, "hebbian"])
def test_output_final_state_must_be_a_bool(op):
    call = ATTENTION.get(op, lambda q, k, v, **kw: hebbian_memory(q, k, v, **kw))
    with pytest.raises(TypeError, match=r"output_final_state must be True or False, got 'no'"):
        call(*_qkv(), output_final_state="no")


@pytest.mark.parametrize("call", [
    lambda q, k, v: linear_attention(q, k, v, form="parallel", chunk_size=0),
    lambda q, k, v: linear_attention(q, k, v, form="recurrent", chunk_size=-1),
    lambda q, k, v: gated_linear_attention(q, k, v, None, form="recurrent", chunk_size=2.5),
    lambda q, k, v: delta_rule(q, k, v, _beta(), form="recurrent", chunk_size=True),
])
def test_chunk_size_is_checked_whatever_the_form(call):
    with pytest.raises(ValueError, match=r"chunk_size must be a positive int"):
        call(*_qkv())


def test_normalize_and_error_driven_must_be_bools():
    q, k, v = _qkv()
    with pytest.raises(TypeError, match=r"normalize must be True or False, got 'no'"):
        linear_attention(q.abs(), k.abs(), v, normalize="no")
    with pytest.raises(TypeError, match=r"error_driven must be True or False, got 'no'"):
        hebbian_memory(q, k, v, error_driven="no")


@pytest.mark.parametrize("call", [
    lambda q, k, v, g, beta: gated_linear_attention(
        q, k, v, g.unsqueeze(-1).expand_as(q).clone(), form="recurrent"),
    lambda q, k, v, g, beta: gated_linear_attention(  # the chunked GLA clamps g (log_decay_floor)
        q, k, v, g.unsqueeze(-1).expand_as(q).clone(), form="chunked"),
    lambda q, k, v, g, beta: gated_delta_rule(q, k, v, g, beta, form="recurrent"),
    # the chunked delta rule clamps g too (it refused -inf, which fast_weights.write passes on)
    lambda q, k, v, g, beta: gated_delta_rule(q, k, v, g, beta, form="chunked", chunk_size=4),
    lambda q, k, v, g, beta: hebbian_memory(q, k, v, log_decay=g),
])
def test_minus_infinite_log_decay_resets_the_recurrent_forms(call):
    """-inf is a full reset (decay factor 0) in the step-by-step forms and the clamped chunked
    ones: the output after the reset equals a run started fresh at that step."""
    q, k, v = _qkv()
    beta = _beta()
    g = torch.zeros(B, T, H)
    g[:, 2] = -float("inf")
    out, _ = call(q, k, v, g, beta)
    fresh, _ = call(q[:, 2:], k[:, 2:], v[:, 2:], g[:, 2:].clamp_min(0.0), beta[:, 2:])
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out[:, 2:], fresh)


@pytest.mark.parametrize("strength", [float("nan"), float("inf")])
def test_hebbian_write_strength_must_be_finite(strength):
    with pytest.raises(ValueError, match=r"write_strength must be a finite number"):
        hebbian_memory(*_qkv(), write_strength=strength)


def test_hebbian_gates_of_another_dtype_are_converted_not_crashed():
    q, k, v = (x.double() for x in _qkv())
    decay = torch.full((B, T, H), -0.1)                        # float32 gate, float64 inputs
    out, _ = hebbian_memory(q, k, v, log_decay=decay, write_strength=torch.ones(B, T, H))
    expected, _ = hebbian_memory(q, k, v, log_decay=decay.double(),
                                 write_strength=torch.ones(B, T, H, dtype=torch.float64))
    assert out.dtype == torch.float64 and torch.equal(out, expected)


# ---------------------------------------------------------------- Hebbian step, recall

def _step_args():
    _, k, v = _qkv()
    return torch.zeros(B, H, V, K), k[:, 0], v[:, 0]


@pytest.mark.parametrize("change, error, message", [
    (lambda w, c, r: (w, c[..., :2], r), ValueError, r"cue must have shape \[B, H, K\]"),
    (lambda w, c, r: (w, c, r[..., :2]), ValueError, r"response must have shape \[B, H, V\]"),
    (lambda w, c, r: (w[0], c, r), ValueError, r"weights must have rank 4"),
    (lambda w, c, r: (w.tolist(), c, r), TypeError, r"weights must be a torch.Tensor"),
    (lambda w, c, r: (w, c.long(), r), ValueError, r"cue must have a floating dtype"),
    (lambda w, c, r: (w, c.double(), r.double()), ValueError,
     r"weights, cue, response must share one dtype"),
])
def test_hebbian_step_checks_its_tensors(change, error, message):
    with pytest.raises(error, match=message):
        hebbian_step(*change(*_step_args()))


def test_hebbian_step_checks_gates_and_probe():
    weights, cue, response = _step_args()
    with pytest.raises(ValueError, match=r"log_decay must have shape \[B, H, K\]"):
        hebbian_step(weights, cue, response, log_decay=torch.zeros(B, H, 7))
    with pytest.raises(ValueError, match=r"write_strength must have shape \[B, H\]"):
        hebbian_step(weights, cue, response, write_strength=torch.ones(B, 7))
    with pytest.raises(TypeError, match=r"write_strength must be a float or a \[B, H\] tensor"):
        hebbian_step(weights, cue, response, write_strength="strong")
    with pytest.raises(ValueError, match=r"prediction_probe must have shape \[B, H, K\]"):
        hebbian_step(weights, cue, response, error_driven=True, prediction_probe=cue[..., :2])


def test_recall_and_outer_product_memory_check_their_arguments():
    weights, cue, _ = _step_args()
    with pytest.raises(ValueError, match=r"probe \[\.\.\., K\] must match weights"):
        recall(weights, cue[..., :2])
    with pytest.raises(ValueError, match=r"probe must have a floating dtype"):
        recall(weights, cue.long())
    cues, responses = torch.randn(3, 8, K), torch.randn(3, 8, V)
    with pytest.raises(ValueError, match=r"responses \[\.\.\., n, V\] must match cues"):
        outer_product_memory(cues, responses[:, :5])
    with pytest.raises(ValueError, match=r"cues, responses must share one dtype"):
        outer_product_memory(cues, responses.double())
    with pytest.raises(TypeError, match=r"decay must be a real number in \(0, 1\], got str"):
        outer_product_memory(cues, responses, "slow")


# ---------------------------------------------------------------- fast weights

def test_fast_weights_check_state_dtypes_and_names():
    state = fast_weights.initial_memory(2, 4, 3)
    keys, values, beta = torch.randn(2, 5, 4), torch.randn(2, 5, 3), torch.full((2, 5), 0.5)
    with pytest.raises(ValueError, match=r"queries must have a floating dtype.*int64"):
        fast_weights.read(state, keys.long())                   # was: int result, memory truncated
    with pytest.raises(TypeError, match=r"state must be a FastWeightState"):
        fast_weights.read(state.memory, keys)
    with pytest.raises(ValueError, match=r"keys must have a floating dtype"):
        fast_weights.write(state, keys.long(), values, beta)
    with pytest.raises(ValueError, match=r"keys, values must share one dtype"):
        fast_weights.write(state, keys, values.double(), beta)
    with pytest.raises(ValueError, match=r"keys must have shape \[B=2, T, 4\]"):
        fast_weights.write_reference(state, keys[..., :2], values, beta)
    with pytest.raises(ValueError, match=r"log_decay is a log decay and must be <= 0"):
        fast_weights.write_reference(state, keys, values, beta, torch.ones(2, 5))
    # another device was a raw torch error from inside the matmul / einsum
    on_meta = keys.to("meta")
    with pytest.raises(ValueError, match=r"queries must be on the memory's device cpu, got meta"):
        fast_weights.read(state, on_meta)
    with pytest.raises(ValueError, match=r"values must be on the memory's device cpu, got meta"):
        fast_weights.write_reference(state, keys, values.to("meta"), beta)
    with pytest.raises(ValueError, match=r"write_strength must be on the memory's device cpu, got meta"):
        fast_weights.write(state, keys, values, beta.to("meta"))
    with pytest.raises(ValueError, match=r"dtype must be a floating dtype.*int64"):
        fast_weights.initial_memory(2, 4, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"device must be a torch.device or a string"):
        fast_weights.initial_memory(2, 4, 3, device="gpu0")
    with pytest.raises(TypeError, match=r"dtype must be a floating dtype.*got 'float32'"):
        fast_weights.initial_memory(2, 4, 3, dtype="float32")
    with pytest.raises(TypeError, match=r"device must be a torch.device or a string.*got \[0\]"):
        fast_weights.initial_memory(2, 4, 3, device=[0])


# ---------------------------------------------------------------- capacity theory

# Merged with the former tests/bridges/test_bridge_errors.py::test_capacity_theory_rejects_bad_arguments.
@pytest.mark.parametrize("call, error, message", [
    pytest.param(lambda: pavlovian.predicted_bit_error(float("nan"), 64), ValueError,
                 r"num_pairs must be finite and >= 1, got nan", id="predicted_bit_error-num_pairs-nan"),
    pytest.param(lambda: pavlovian.predicted_bit_error("many", 64), TypeError,
                 r"num_pairs must be a number or an array of numbers, got 'many'",
                 id="predicted_bit_error-num_pairs-str"),
    pytest.param(lambda: pavlovian.worst_case_capacity(0), ValueError,
                 r"key_dim must be a positive int, got 0", id="worst_case_capacity-key_dim-zero"),
    pytest.param(lambda: pavlovian.redundant_heads_bit_error(10, "wide", 2), TypeError,
                 r"key_dim must be a number or an array of numbers, got 'wide'",
                 id="redundant_heads_bit_error-key_dim-str"),
    pytest.param(lambda: pavlovian.redundant_heads_bit_error(10, 64, 0), ValueError,
                 r"num_heads must be a positive int, got 0", id="redundant_heads_bit_error-num_heads-zero"),
    pytest.param(lambda: pavlovian.depth_bit_error("low", 2), TypeError,
                 r"bit_error must be a number or an array of numbers, got 'low'", id="depth_bit_error-bit_error-str"),
    pytest.param(lambda: pavlovian.depth_bit_error(0.1, -2), ValueError,
                 r"num_layers must be an int >= 0, got -2", id="depth_bit_error-num_layers-negative"),
    pytest.param(lambda: pavlovian.depth_bit_error(0.7, 2), ValueError,
                 r"bit_error must be in \[0, 0\.5\], got 0\.7", id="depth_bit_error-bit_error-above-half"),
    pytest.param(lambda: pavlovian.predicted_forgetting(2.5, 64, 0.9), ValueError,
                 r"num_pairs must be a positive int, got 2\.5", id="predicted_forgetting-num_pairs-float"),
    pytest.param(lambda: pavlovian.predicted_forgetting(10, 64, "slow"), TypeError,
                 r"decay must be a real number in \(0, 1\], got str", id="predicted_forgetting-decay-str"),
    pytest.param(lambda: pavlovian.predicted_forgetting(10, np.array([64, 32]), 0.9), TypeError,
                 r"key_dim must be a real number in \[1, inf\), got ndarray", id="predicted_forgetting-key_dim-array"),
    pytest.param(lambda: pavlovian.simulate_recall(2.5, 16, num_trials=2), ValueError,
                 r"num_pairs must be a positive int, got 2\.5", id="simulate_recall-num_pairs-float"),
    pytest.param(lambda: pavlovian.simulate_recall(4, 16.0, num_trials=2), ValueError,
                 r"key_dim must be a positive int, got 16\.0", id="simulate_recall-key_dim-float"),
    pytest.param(lambda: pavlovian.simulate_recall(4, 16, num_trials=True), ValueError,
                 r"num_trials must be a positive int, got True", id="simulate_recall-num_trials-bool"),
    pytest.param(lambda: pavlovian.simulate_recall(4, 16, num_trials=2, rule="delta", decay=0.0), ValueError,
                 r"decay must be a finite number in \(0, 1\], got 0\.0", id="simulate_recall-decay-zero"),
    pytest.param(lambda: pavlovian.simulate_recall(4, 16, num_trials=2, rule="delta", decay=1.5), ValueError,
                 r"decay must be a finite number in \(0, 1\], got 1\.5", id="simulate_recall-decay-above-one"),
    pytest.param(lambda: pavlovian.simulate_recall(4, 16, num_trials=2, write_strength=float("nan")),
                 ValueError, r"write_strength must be a finite number, got nan", id="simulate_recall-write_strength-nan"),
    pytest.param(lambda: pavlovian.simulate_recall(4, 16, num_trials=2, dtype=torch.long), ValueError,
                 r"dtype must be a floating dtype \(float16, bfloat16, float32, float64\), got torch\.int64",
                 id="simulate_recall-dtype-int64"),
    pytest.param(lambda: pavlovian.simulate_recall(4, 16, num_trials=2, seed=-1), ValueError,
                 r"seed=-1 is out of range; allowed: an int in \[0, 2\*\*63\)", id="simulate_recall-seed-negative"),
])
def test_capacity_theory_names_the_bad_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------- recall tasks

@pytest.mark.parametrize("call, error, message", [
    (lambda: recall_tasks.mqar_batch(-1, 12, 2), ValueError, r"batch_size must be a positive int"),
    (lambda: recall_tasks.mqar_batch(2, 12.0, 2), ValueError, r"length must be a positive int"),
    (lambda: recall_tasks.mqar_batch(2, 12, 2.0), ValueError, r"num_pairs must be a positive int"),
    (lambda: recall_tasks.mqar_batch(2, 12, 2, num_values=0), ValueError,
     r"num_values must be a positive int, got 0"),
    (lambda: recall_tasks.mqar_batch(2, 12, 2, seed=-1), ValueError, r"seed must be an int >= 0"),
    (lambda: recall_tasks.mqar_batch(2, 12, 2, device="gpu0"), ValueError,
     r"device must be a torch.device"),
    (lambda: recall_tasks.copy_batch(2, 8.0), ValueError, r"length must be an int >= 4, got 8.0"),
    (lambda: recall_tasks.copy_batch(2, 8, vocab_size=1, with_replacement=True), ValueError,
     r"vocab_size must be an int >= 2, got 1"),
    (lambda: recall_tasks.copy_batch(2, 8, vocab_size=3, with_replacement="no"), TypeError,
     r"with_replacement must be True or False"),
    (lambda: recall_tasks.mqar_vocab_size(-1, 2), ValueError, r"num_keys must be a positive int"),
])
def test_recall_tasks_name_the_bad_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------- mixers and models

def test_rotary_and_token_mixer_arguments():
    q, _, _ = _qkv()
    with pytest.raises(ValueError, match=r"x must have rank 4 \(\[B, T, H, D\]\)"):
        rotary(q[0])
    with pytest.raises(ValueError, match=r"base must be a finite number in \(0, inf\), got 0.0"):
        rotary(q, base=0.0)
    with pytest.raises(ValueError, match=r"num_heads must be a positive int, got 0"):
        TokenMixer("S", 8, 0, 16)
    with pytest.raises(ValueError, match=r"chunk_size must be a positive int, got 0"):
        TokenMixer("L", 8, 2, 16, chunk_size=0)
    with pytest.raises(ValueError, match=r"letter must be one of .*got \['S'\]"):
        TokenMixer(["S"], 8, 2, 16)


@pytest.mark.parametrize("letter", "SLGDEFN")
@pytest.mark.parametrize("x, message", [
    (torch.randn(5, 8), r"x must have rank 3 \(\[B, T, 8\]\)"),
    (torch.randn(2, 5, 6), r"x must have shape \[B, T, 8\], got \(2, 5, 6\)"),
    (torch.zeros(2, 5, 8, dtype=torch.long), r"x must have a floating dtype"),
    (torch.randn(2, 5, 8, dtype=torch.float64), r"x has dtype torch.float64, the model's"),
])
def test_token_mixer_checks_its_input(letter, x, message):
    with pytest.raises(ValueError, match=message):
        TokenMixer(letter, 8, 2, 16)(x)


def test_sequence_model_arguments_and_tokens():
    config = SequenceModelConfig(vocab_size=5, model_dim=8, max_length=6)
    model = SequenceModel(config)
    with pytest.raises(ValueError, match=r"lie in \[0, vocab_size=5\), got values in \[0, 5\]"):
        model(torch.tensor([[0, 5, 1]]))
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, vocab_size=5\)"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match=r"tokens must be an integer tensor .*torch.bool"):
        model(torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"absolute_positions must be True or False"):
        SequenceModelConfig(vocab_size=5, absolute_positions="no")
    with pytest.raises(TypeError, match=r"config must be a SequenceModelConfig, got dict"):
        SequenceModel({"vocab_size": 5})
    with pytest.raises(ValueError, match=r"dtype must be None or a floating dtype"):
        SequenceModel(config, dtype=torch.long)
    with pytest.raises(ValueError, match=r"device must be a torch.device"):
        SequenceModel(config, device="gpu0")


def test_continuous_model_checks_dtype_and_flag():
    model = ContinuousSequenceModel(3, 2, model_dim=8, max_length=6)
    with pytest.raises(ValueError, match=r"x has dtype torch.float64, the model's parameters"):
        model(torch.randn(1, 4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"return_hidden must be True or False"):
        model(torch.randn(1, 4, 3), return_hidden="no")


# ---------------------------------------------------------------- training

def _model_and_data():
    model = SequenceModel(SequenceModelConfig(vocab_size=5, model_dim=8, max_length=6))
    tokens, targets = recall_tasks.mqar_batch(4, 6, 2, num_keys=2, num_values=2)
    make = lambda n, rng: recall_tasks.mqar_batch(n, 6, 2, num_keys=2, num_values=2, seed=rng)
    return model, tokens, targets, make


@pytest.mark.parametrize("kwargs, error, message", [
    ({"num_steps": 2.5}, ValueError, r"num_steps must be a positive int, got 2.5"),
    ({"num_steps": 1, "batch_size": 0}, ValueError, r"batch_size must be a positive int, got 0"),
    ({"num_steps": 2, "eval_every": 0}, ValueError, r"eval_every must be a positive int, got 0"),
    ({"num_steps": 1, "seed": "x"}, TypeError, r"seed must be an int >= 0"),
    ({"num_steps": 1, "progress": 3}, TypeError, r"progress must be None or callable"),
    ({"num_steps": 1, "learning_rate": float("nan")}, ValueError,
     r"learning_rate must be a finite number in \[0, inf\), got nan"),
])
def test_train_names_the_bad_argument(kwargs, error, message):
    model, _, _, make = _model_and_data()
    with pytest.raises(error, match=message):
        training.train(model, make, **kwargs)


def test_train_eval_set_accuracy_and_optimization():
    model, tokens, targets, make = _model_and_data()
    with pytest.raises(TypeError, match=r"make_batch must be callable"):
        training.train(model, None, num_steps=1)
    with pytest.raises(TypeError, match=r"eval_set must be None or a \(tokens, targets\) pair"):
        training.train(model, make, num_steps=1, eval_set=(tokens,))
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, got 0"):
        training.accuracy(model, tokens, targets, batch_size=0)
    with pytest.raises(ValueError, match=r"targets must have tokens' shape"):
        training.accuracy(model, tokens, targets[:2])
    with pytest.raises(ValueError, match=r"max_grad_norm must be a finite number in \(0, inf\)"):
        training.Optimization(model, 1e-3, 10, max_grad_norm=-1.0)   # was: gradients flipped
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module"):
        training.Optimization(None, 1e-3, 10)
    with pytest.raises(TypeError, match=r"loss must be a one-element torch.Tensor"):
        training.Optimization(model, 1e-3, 10).step(1.0)


# ---------------------------------------------------------------- Poisson loss, maps

def test_poisson_loss_refuses_non_finite_counts_and_bad_masks():
    log_rate, counts = torch.randn(2, 6, 3), torch.ones(2, 6, 3)
    bad = counts.clone()
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"counts must be finite and non-negative"):
        poisson_loss.poisson_nll(log_rate, bad)
    with pytest.raises(ValueError, match=r"log_rate must have a floating dtype"):
        poisson_loss.poisson_nll(log_rate.long(), counts)
    with pytest.raises(TypeError, match=r"mask must be None or a bool tensor"):
        poisson_loss.next_bin_loss(log_rate, counts, torch.full((2, 5), 0.5))
    with pytest.raises(ValueError, match=r"mask is on meta but log_rate is on cpu"):
        poisson_loss.next_bin_loss(log_rate, counts, torch.ones(2, 5, dtype=torch.bool, device="meta"))
    with pytest.raises(ValueError, match=r"\[B >= 1, T >= 2, N >= 1\], got \(2, 6, 0\)"):
        poisson_loss.next_bin_loss(log_rate[..., :0], counts[..., :0])
    with pytest.raises(ValueError, match=r"counts must be \[T, N\], got shape \(2, 6, 3\)"):
        poisson_loss.homogeneous_log_likelihood(counts)
    with pytest.raises(ValueError, match=r"counts must be finite and non-negative"):
        poisson_loss.homogeneous_log_likelihood(-counts[0])
    with pytest.raises(ValueError, match=r"log_likelihood must be a finite number, got nan"):
        poisson_loss.bits_per_spike(float("nan"), counts[0])


def test_connectome_tensor_refuses_empty_and_non_numeric_maps():
    with pytest.raises(ValueError, match=r"maps must have shape .* every size >= 1"):
        attention_maps.connectome_tensor(np.zeros((0, 1, 1, 1, 3, 3)))
    with pytest.raises(TypeError, match=r"maps must be an array or tensor of numbers"):
        attention_maps.connectome_tensor([["a"]])


def test_normalized_linear_attention_needs_a_positive_scale():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"scale=-1.0 with normalize=True: .* must be > 0"):
        linear_attention(q.abs(), k.abs(), v, scale=-1.0, normalize=True)


def test_a_kv_cache_on_another_device_is_named():
    q, k, v = _qkv()
    cache = KVCache(torch.zeros(B, 2, H, q.shape[-1], device="meta"), torch.zeros(B, 2, H, v.shape[-1]))
    with pytest.raises(ValueError, match=r"initial_state.keys must be on q's device cpu, got meta"):
        softmax_attention(q, k, v, initial_state=cache)


def test_forgetting_theory_underflow_gives_its_limits_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bit_error, cosine = pavlovian.predicted_forgetting(400, 64, 0.1)
    assert bit_error[-1] == 0.5 and cosine[-1] == 0.0


def test_train_takes_int32_batches_and_names_a_bad_make_batch_result():
    # accuracy() and the model accept int32 ids; train() crashed in cross_entropy
    # ("expected target dtype to be Long") and reported torch's messages for other bad batches.
    model, tokens, targets, make = _model_and_data()
    as_int32 = lambda n, rng: tuple(x.int() for x in make(n, rng))
    result = training.train(model, as_int32, num_steps=2, batch_size=2,
                            eval_set=(tokens.int(), targets.int()))
    assert np.isfinite(result.losses).all() and len(result.eval_accuracy) == 1
    bad_results = [
        (lambda n, rng: None, TypeError, r"make_batch must return a \(tokens, targets\) pair"),
        (lambda n, rng: (make(n, rng)[0], make(n, rng)[1][:, :-1]), ValueError,
         r"targets \(from make_batch\) must have tokens' shape \(2, 6\)"),
        (lambda n, rng: (make(n, rng)[0].float(), make(n, rng)[1]), ValueError,
         r"tokens \(from make_batch\) must be an integer tensor \[B, T\]"),
    ]
    for bad, error, message in bad_results:
        with pytest.raises(error, match=message):
            training.train(model, bad, num_steps=1, batch_size=2)


@pytest.mark.parametrize("change, message", [
    (lambda t, y: (t.float(), y), r"tokens \(eval_set\) must be an integer tensor"),
    (lambda t, y: (t, y[:, :3]), r"targets \(eval_set\) must have tokens' shape \(4, 6\)"),
    (lambda t, y: (t, torch.full_like(y, -100)), r"targets \(eval_set\) score no position"),
])
def test_train_checks_the_eval_set_before_training(change, message):
    # was: found only at the first evaluation, after eval_every steps of training
    model, tokens, targets, make = _model_and_data()
    calls = []
    counted = lambda n, rng: calls.append(n) or make(n, rng)
    with pytest.raises(ValueError, match=message):
        training.train(model, counted, num_steps=3, eval_every=3, batch_size=2,
                       eval_set=change(tokens, targets))
    assert calls == []


def test_a_batch_that_scores_nothing_takes_no_optimiser_step():
    # every target is the ignore index: no signal, so the weights must not move (AdamW's weight
    # decay and momentum moved them before) and the recorded loss is NaN; scored batches train
    model, _, _, make = _model_and_data()
    before = [p.detach().clone() for p in model.parameters()]
    ignored = lambda n, rng: (make(n, rng)[0], torch.full((n, 6), recall_tasks.IGNORE_INDEX))
    result = training.train(model, ignored, num_steps=3, batch_size=4)
    assert np.isnan(result.losses).all()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    result = training.train(model, make, num_steps=2, batch_size=4)
    assert np.isfinite(result.losses).all()
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_skipped_last_batch_still_gets_the_final_evaluation():
    # was: the skip `continue`d past the evaluation, so a last batch that scored nothing
    # dropped the final accuracy (eval_steps [2] instead of [2, 4])
    model, tokens, targets, make = _model_and_data()
    calls = []

    def last_scores_nothing(n, rng):
        calls.append(n)
        batch_tokens, batch_targets = make(n, rng)
        if len(calls) == 4:
            batch_targets = torch.full_like(batch_targets, recall_tasks.IGNORE_INDEX)
        return batch_tokens, batch_targets

    result = training.train(model, last_scores_nothing, num_steps=4, batch_size=2, eval_every=2,
                            eval_set=(tokens, targets))
    assert np.isnan(result.losses[3]) and np.isfinite(result.losses[:3]).all()
    assert result.eval_steps.tolist() == [2, 4]
    assert result.eval_accuracy[1] == training.accuracy(model, tokens, targets)
