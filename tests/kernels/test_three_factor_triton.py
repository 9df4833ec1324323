"""Triton three-factor step vs the torch reference (interpreter on CPU)."""
import pytest
import torch

from kernels.three_factor import naive_three_factor_step, three_factor_step
from tests.kernels.conftest import DEVICE, relative_rms_error

# fp32: same elementwise expressions; z differs only in summation order over D (<= 300
# terms, ~1e-7 relative). Absolute short-circuit for entries that are exactly 0 by design.
TOL, ABS = 1e-5, 1e-7


def _inputs(batch, readouts, dim, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=gen).to(dtype).to(DEVICE)
    weights, pending = make(batch, readouts, dim), make(batch, readouts, dim)
    eligibility, features = make(batch, dim).abs(), make(batch, dim).abs()
    target = make(batch, readouts)
    gate = torch.rand(batch, readouts, generator=gen).to(dtype).to(DEVICE)
    return weights, pending, eligibility, features, target, gate


@pytest.mark.parametrize("online", [True, False, "mixed"])
@pytest.mark.parametrize("batch, readouts, dim", [(3, 2, 300), (1, 5, 17)])
def test_matches_naive_fp32(batch, readouts, dim, online):
    args = _inputs(batch, readouts, dim, torch.float32, seed=dim + readouts)
    if online == "mixed":
        online = torch.arange(readouts, device=DEVICE) % 2 == 0
    learning_rate = torch.linspace(0.01, 0.1, readouts, device=DEVICE)
    before = [a.clone() for a in args]
    got = three_factor_step(*args, learning_rate, 0.9, online)
    expected = naive_three_factor_step(*before, learning_rate, 0.9, online)
    for a, b in zip(args, before):
        assert torch.equal(a, b)  # inputs are never modified
    for name, x, y in zip(("z", "error", "eligibility", "weights", "pending"), got, expected):
        assert x.shape == y.shape and x.dtype == y.dtype, name
        assert torch.isfinite(x).all(), name
        assert relative_rms_error(x, y, ABS) <= TOL, name


def test_scalar_learning_rate_and_fp16():
    # fp16 storage, fp32 arithmetic inside: one fp16 rounding per output (~5e-4 relative).
    args = _inputs(2, 3, 64, torch.float16, seed=1)
    got = three_factor_step(*args, 0.05, 0.5, True)
    expected = naive_three_factor_step(*(a.float() for a in args), 0.05, 0.5, True)
    for x, y in zip(got, expected):
        assert x.dtype == torch.float16
        assert relative_rms_error(x, y, 1e-4) <= 5e-3


def test_float64_takes_the_reference_exactly():
    # the Triton kernels compute in float32; float64 (even with NEUROBRIDGE_KERNELS=triton,
    # which the kernel tests set) must run the float64 reference, bit for bit
    args = _inputs(2, 3, 64, torch.float64, seed=3)
    got = three_factor_step(*args, 0.05, 0.9, True)
    expected = naive_three_factor_step(*(a.clone() for a in args), 0.05, 0.9, True)
    for x, y in zip(got, expected):
        assert x.dtype == torch.float64 and torch.equal(x, y)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs CUDA: bf16 arithmetic is wrong under the Triton interpreter")
def test_bf16_on_gpu():
    args = _inputs(4, 3, 4096, torch.bfloat16, seed=2)
    got = three_factor_step(*args, 0.05, 0.9, False)
    expected = naive_three_factor_step(*(a.float() for a in args), 0.05, 0.9, False)
    for x, y in zip(got, expected):
        # one bf16 rounding per output (2^-9 relative) plus fp32 reduction-order noise.
        assert relative_rms_error(x, y, 1e-3) <= 1e-2


@pytest.mark.parametrize("online", [True, False])
def test_the_untouched_tensor_is_returned_as_given_even_non_contiguous(online):
    # module docstrings: with online a python bool, pending (online) or weights (offline)
    # is returned as is, also when it is a non-contiguous view (not its contiguous copy)
    weights, pending, eligibility, features, target, gate = _inputs(3, 5, 17, torch.float32, 0)[:6]
    weights = weights.transpose(1, 2).contiguous().transpose(1, 2)
    pending = pending.transpose(1, 2).contiguous().transpose(1, 2)
    args = (weights, pending, eligibility, features, target, gate, 0.1, 0.9, online)
    out = three_factor_step(*args)
    ref = naive_three_factor_step(*args)
    untouched = 4 if online else 3
    assert out[untouched] is args[untouched - 3] and ref[untouched] is args[untouched - 3]
    for got, expected in zip(out, ref):  # fp32 Triton vs fp32 torch: a few ulps
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_mixed_online_keeps_frozen_rows_when_the_change_is_not_finite():
    # contract: offline rows leave W as is, online rows leave A as is. The reference wrote
    # W + change * 0 and A + change * 0, so an inf in the change made them NaN (inf * 0);
    # the Triton path selects and kept them (and must match the reference, NaNs included).
    weights, pending = torch.ones(1, 2, 3, device=DEVICE), torch.zeros(1, 2, 3, device=DEVICE)
    eligibility = torch.zeros(1, 3, device=DEVICE)
    features = torch.tensor([[1.0, float("inf"), 0.0]], device=DEVICE)
    target, gate = torch.zeros(1, 2, device=DEVICE), torch.ones(1, 2, device=DEVICE)
    online = torch.tensor([True, False], device=DEVICE)
    args = (weights, pending, eligibility, features, target, gate, 0.1, 0.5, online)
    expected = naive_three_factor_step(*args)
    assert torch.equal(expected[3][:, 1], weights[:, 1])  # offline row of W frozen
    assert torch.equal(expected[4][:, 0], pending[:, 0])  # online row of A untouched
    got = three_factor_step(*args)
    for x, y in zip(got, expected):
        assert torch.equal(x.isnan(), y.isnan())
        assert torch.equal(x.nan_to_num(), y.nan_to_num())
