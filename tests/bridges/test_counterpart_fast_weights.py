"""The online fast-weight memory (bridges.fast_weights): one hand-computed delta-rule step,
the chunked write against the explicit loop, exact recall, gradients, argument errors."""
import pytest
import torch

from bridges.fast_weights import FastWeightState, initial_memory, read, write, write_reference

# float64 throughout: the chunked write solves a triangular system; 1e-12 is ~1e4 ulp of
# float64 for O(1) entries over tens of steps, far below any algorithmic difference.
TOL = 1e-12


def _one_step(log_decay=None):
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)      # S0 [1, K=2, V=2]
    key = torch.tensor([[[0.6, 0.8]]], dtype=torch.float64)                     # unit key
    value = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
    beta = torch.tensor([[0.5]], dtype=torch.float64)
    return FastWeightState(memory, 0), key, value, beta


def test_one_write_matches_the_hand_computed_delta_step():
    # S^T k = [1*.6 + 3*.8, 2*.6 + 4*.8] = [3.0, 4.4]; e = v - S^T k = [-2.0, -5.4]
    # S1 = S0 + 0.5 k e^T = [[1 - .6, 2 - 1.62], [3 - .8, 4 - 2.16]]
    expected = torch.tensor([[[0.4, 0.38], [2.2, 1.84]]], dtype=torch.float64)
    state, key, value, beta = _one_step()
    new = write(state, key, value, beta)
    assert torch.allclose(new.memory, expected, atol=TOL, rtol=0)
    assert new.writes == 1
    assert torch.allclose(write_reference(state, key, value, beta).memory, expected, atol=TOL, rtol=0)


def test_one_gated_write_decays_before_the_error():
    # a = exp(g) = 0.5: S' = 0.5 S0; S'^T k = [1.5, 2.2]; e = [-0.5, -3.2]
    # S1 = S' + 0.5 k e^T = [[.5 - .15, 1 - .96], [1.5 - .2, 2 - 1.28]]
    expected = torch.tensor([[[0.35, 0.04], [1.3, 0.72]]], dtype=torch.float64)
    state, key, value, beta = _one_step()
    log_decay = torch.log(torch.tensor([[0.5]], dtype=torch.float64))
    assert torch.allclose(write(state, key, value, beta, log_decay).memory, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
@pytest.mark.parametrize("gated", [False, True])
def test_chunked_write_equals_the_loop_and_splitting_a_group_changes_nothing(chunk_size, gated):
    generator = torch.Generator().manual_seed(3)
    batch, length, key_dim, value_dim = 3, 29, 6, 4
    keys = torch.nn.functional.normalize(torch.randn(batch, length, key_dim, generator=generator, dtype=torch.float64), dim=-1)
    values = torch.randn(batch, length, value_dim, generator=generator, dtype=torch.float64)
    beta = torch.rand(batch, length, generator=generator, dtype=torch.float64)
    log_decay = -torch.rand(batch, length, generator=generator, dtype=torch.float64) * 0.3 if gated else None
    start = FastWeightState(torch.randn(batch, key_dim, value_dim, generator=generator, dtype=torch.float64), 5)
    fast = write(start, keys, values, beta, log_decay, chunk_size=chunk_size)
    slow = write_reference(start, keys, values, beta, log_decay)
    assert torch.allclose(fast.memory, slow.memory, atol=TOL, rtol=0)
    assert fast.writes == slow.writes == 5 + length
    split = 11
    first = write(start, keys[:, :split], values[:, :split], beta[:, :split],
                  None if log_decay is None else log_decay[:, :split], chunk_size=chunk_size)
    second = write(first, keys[:, split:], values[:, split:], beta[:, split:],
                   None if log_decay is None else log_decay[:, split:], chunk_size=chunk_size)
    assert torch.allclose(second.memory, fast.memory, atol=TOL, rtol=0)


@pytest.mark.parametrize("chunk_size", [2, 64])
def test_a_minus_infinite_log_decay_resets_the_memory_in_write_as_in_write_reference(chunk_size):
    """write's docstring allows any log_decay <= 0 and write_reference takes -inf (a full
    reset); write refused it with "the recurrent form takes -inf", a form write cannot pick."""
    generator = torch.Generator().manual_seed(4)
    keys = torch.nn.functional.normalize(torch.randn(2, 6, 3, generator=generator,
                                                     dtype=torch.float64), dim=-1)
    values = torch.randn(2, 6, 2, generator=generator, dtype=torch.float64)
    beta = torch.rand(2, 6, generator=generator, dtype=torch.float64)
    log_decay = torch.full((2, 6), -0.1, dtype=torch.float64)
    log_decay[:, 3] = -float("inf")
    start = FastWeightState(torch.randn(2, 3, 2, generator=generator, dtype=torch.float64), 0)
    fast = write(start, keys, values, beta, log_decay, chunk_size=chunk_size)
    slow = write_reference(start, keys, values, beta, log_decay)
    # after the reset only steps 3.. count: the same as writing them into an empty memory
    fresh = write_reference(FastWeightState(torch.zeros_like(start.memory), 0), keys[:, 3:],
                            values[:, 3:], beta[:, 3:], log_decay[:, 3:].nan_to_num(neginf=0.0))
    assert torch.allclose(fast.memory, slow.memory, atol=TOL, rtol=0)
    assert torch.allclose(fast.memory, fresh.memory, atol=TOL, rtol=0)


def test_unit_key_with_full_write_strength_recalls_the_newest_value_exactly():
    generator = torch.Generator().manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(2, 5, 8, generator=generator, dtype=torch.float64), dim=-1)
    values = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)
    state = write(initial_memory(2, 8, 3, dtype=torch.float64), keys, values, torch.ones(2, 5, dtype=torch.float64))
    recalled = read(state, keys[:, -1:])
    assert torch.allclose(recalled, values[:, -1:], atol=TOL, rtol=0)


def test_gradients_flow_into_keys_values_and_write_strengths():
    generator = torch.Generator().manual_seed(1)
    keys = torch.randn(2, 9, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    values = torch.randn(2, 9, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    beta = torch.rand(2, 9, generator=generator, dtype=torch.float64).requires_grad_()
    unit = torch.nn.functional.normalize(keys, dim=-1)
    state = write(initial_memory(2, 4, 3, dtype=torch.float64), unit, values, beta, chunk_size=4)
    read(state, unit).square().sum().backward()
    for tensor in (keys, values, beta):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def test_bad_arguments_name_themselves():
    state = initial_memory(2, 4, 3)
    with pytest.raises(ValueError, match="keys"):
        write(state, torch.zeros(2, 5, 3), torch.zeros(2, 5, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="write_strength"):
        write(state, torch.zeros(2, 5, 4), torch.zeros(2, 5, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="queries"):
        read(state, torch.zeros(1, 5, 4))
    with pytest.raises(ValueError, match="key_dim"):
        initial_memory(2, 0, 3)


@pytest.mark.parametrize("function", [write, write_reference])
def test_a_float_write_strength_or_log_decay_is_a_type_error_naming_its_type(function):
    # was: ValueError "... got ()", the shape of a tensor that was never passed
    state, keys, values = initial_memory(2, 4, 3), torch.zeros(2, 5, 4), torch.zeros(2, 5, 3)
    with pytest.raises(TypeError, match=r"write_strength must be a tensor of shape \(2, 5\) "
                                        r"\[B, T\], got float"):
        function(state, keys, values, 0.5)
    with pytest.raises(TypeError, match=r"log_decay must be None or a tensor of shape \(2, 5\) "
                                        r"\[B, T\], got float"):
        function(state, keys, values, torch.ones(2, 5), -0.1)
    with pytest.raises(ValueError, match=r"write_strength must be a tensor of shape \(2, 5\) "
                                         r"\[B, T\], got \(2, 4\)"):
        function(state, keys, values, torch.ones(2, 4))


def test_read_refuses_queries_of_another_dtype_as_write_does():
    # was: the memory was cast to the queries' dtype (a float64 memory silently read in float16)
    state = initial_memory(2, 4, 3, dtype=torch.float64)
    for dtype in (torch.float32, torch.float16):
        with pytest.raises(ValueError, match=rf"queries must have the memory's dtype torch.float64, "
                                             rf"got {dtype}"):
            read(state, torch.zeros(2, 5, 4, dtype=dtype))
    with pytest.raises(ValueError, match="must share one dtype"):          # write: same class
        write(state, torch.zeros(2, 5, 4), torch.zeros(2, 5, 3), torch.zeros(2, 5))
    assert read(state, torch.zeros(2, 5, 4, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("with_decay", [False, True])
def test_a_half_precision_memory_keeps_its_dtype_across_writes(dtype, with_decay):
    # was: write returned the delta rule's float32 state, so the next read or write of the
    # memory's own dtype was refused ("queries must have the memory's dtype torch.float32")
    generator = torch.Generator().manual_seed(5)
    keys = torch.nn.functional.normalize(torch.randn(2, 6, 4, generator=generator), dim=-1)
    values = torch.randn(2, 6, 3, generator=generator)
    beta = torch.full((2, 6), 0.5)
    decay = torch.full((2, 6), -0.1) if with_decay else None
    state = initial_memory(2, 4, 3, dtype=dtype)
    for _ in range(2):
        state = write(state, keys.to(dtype), values.to(dtype), beta, decay)
        assert state.memory.dtype == dtype
        assert read(state, keys.to(dtype)).dtype == dtype
    exact = initial_memory(2, 4, 3, dtype=torch.float64)
    for _ in range(2):
        exact = write_reference(exact, keys.double(), values.double(), beta.double(),
                                None if decay is None else decay.double())
    # one rounding of the memory to the half dtype per write (8 bits of bf16 mantissa: 2^-8)
    assert torch.allclose(state.memory.double(), exact.memory, atol=3e-2, rtol=0)


@pytest.mark.parametrize("with_decay", [False, True])
def test_write_reference_converts_gates_to_the_memorys_dtype_as_write_does(with_decay):
    # was: write() converted a float64 write_strength / log_decay to the float32 memory's
    # dtype, write_reference() promoted the memory to float64 and crashed in einsum
    # ("expected scalar type Float but found Double")
    generator = torch.Generator().manual_seed(6)
    keys = torch.nn.functional.normalize(torch.randn(2, 5, 4, generator=generator), dim=-1)
    values = torch.randn(2, 5, 3, generator=generator)
    beta = torch.rand(2, 5, generator=generator, dtype=torch.float64)
    decay = -torch.rand(2, 5, generator=generator, dtype=torch.float64) if with_decay else None
    state = initial_memory(2, 4, 3)
    fast = write(state, keys, values, beta, decay)
    slow = write_reference(state, keys, values, beta, decay)
    assert slow.memory.dtype == fast.memory.dtype == torch.float32
    # float32, five O(1) steps: a few ulp (1e-7 relative) apart; 1e-5 leaves room, no algorithm
    assert torch.allclose(slow.memory, fast.memory, atol=1e-5, rtol=0)
