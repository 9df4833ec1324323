"""Scaled HMM message passing: the Triton scan (interpreter on CPU, real kernels on a GPU)
against the one-step-per-iteration reference and the chunked torch scan of neuro.hmmglm."""
import pytest
import torch

from kernels.hmm_scan import naive_scaled_vecmat_scan, scaled_vecmat_scan
from neuro.hmmglm.scan import scaled_vecmat_scan as chunked_torch_scan
from tests.kernels.conftest import DEVICE

# log(0) = -inf is intended (a state that cannot start or a step no state survives); the
# interpreter evaluates tl.log with numpy, which warns about it
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")


def _inputs(batch, steps, k, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    transition = torch.softmax(3.0 * torch.randn(batch, 1, k, k, generator=gen, dtype=torch.float64), -1)
    emission = torch.rand(batch, steps, 1, k, generator=gen, dtype=torch.float64) ** 4
    emission = emission / emission.amax(-1, keepdim=True)
    mats = transition * emission
    if steps > 3:
        mats[0, 2] = 0.0  # a step no state survives: the message is exactly zero from here
    log_initial = torch.log(torch.rand(batch, k, generator=gen, dtype=torch.float64))
    log_initial[-1, 0] = float("-inf")  # a state that cannot start
    return log_initial.to(dtype).to(DEVICE), mats.to(dtype).to(DEVICE)


def _log_messages(vectors, log_scale):
    return torch.log(vectors) + log_scale.unsqueeze(-1)


@pytest.mark.parametrize("batch, steps, k", [(3, 1, 2), (2, 70, 3), (2, 100, 5), (1, 33, 8)])
def test_triton_scan_matches_reference_float64(batch, steps, k, monkeypatch):
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "triton")
    log_initial, mats = _inputs(batch, steps, k, seed=steps + k)
    vectors, log_scale = scaled_vecmat_scan(log_initial, mats)
    ref_vectors, ref_scale = naive_scaled_vecmat_scan(log_initial.cpu(), mats.cpu())
    assert vectors.shape == (batch, steps, k) and log_scale.shape == (batch, steps)
    assert torch.isfinite(log_scale).all()
    # normalized messages (max 1) and log scales: float64 products of <= 100 matrices,
    # rescaled every step in both; rounding ~1e-15 per step
    torch.testing.assert_close(vectors.cpu(), ref_vectors, rtol=1e-11, atol=1e-13)
    alive = ref_vectors.amax(-1) > 0  # a zero message's log scale carries no meaning
    torch.testing.assert_close(log_scale.cpu()[alive], ref_scale[alive], rtol=1e-11, atol=1e-11)
    if steps > 3:  # the zero step: messages vanish exactly, as in the reference
        assert float(vectors[0, 2:].abs().max()) == 0.0 and not alive[0, 2:].any()
    chunked_vectors, chunked_scale = chunked_torch_scan(log_initial.cpu(), mats.cpu())
    torch.testing.assert_close(_log_messages(vectors.cpu(), log_scale.cpu())[alive],
                               _log_messages(chunked_vectors, chunked_scale)[alive],
                               rtol=1e-11, atol=1e-10)


@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_triton_scan_with_many_chunks_and_lane_blocks(chunk):
    # 40 sequences x up to 29 chunks x 3 rows: vector walks from several sequences and chunks
    # share a program, the last chunk is partial, and the prefix kernel takes 3 lane blocks
    from kernels.hmm_scan.triton import triton_scaled_vecmat_scan

    log_initial, mats = _inputs(40, 29, 3, seed=chunk)
    vectors, log_scale = triton_scaled_vecmat_scan(log_initial, mats, chunk=chunk)
    ref_vectors, ref_scale = naive_scaled_vecmat_scan(log_initial.cpu(), mats.cpu())
    alive = ref_vectors.amax(-1) > 0
    # float64 over 29 rescaled steps, ~1e-15 each
    torch.testing.assert_close(vectors.cpu(), ref_vectors, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(log_scale.cpu()[alive], ref_scale[alive], rtol=1e-11, atol=1e-11)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        triton_scaled_vecmat_scan(log_initial, mats, chunk=0)


def test_triton_scan_float32_and_empty(monkeypatch):
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "triton")
    log_initial, mats = _inputs(2, 45, 3, seed=9, dtype=torch.float32)
    vectors, log_scale = scaled_vecmat_scan(log_initial, mats)
    ref_vectors, ref_scale = naive_scaled_vecmat_scan(log_initial.cpu(), mats.cpu())
    # float32: ~6e-8 per rescaled step over 45 steps
    alive = ref_vectors.amax(-1) > 0
    torch.testing.assert_close(vectors.cpu(), ref_vectors, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log_scale.cpu()[alive], ref_scale[alive], rtol=1e-5, atol=1e-4)
    empty_vectors, empty_scale = scaled_vecmat_scan(log_initial, mats[:, :0])
    assert empty_vectors.shape == (2, 0, 3) and empty_scale.shape == (2, 0)


def test_forward_backward_on_the_triton_scan_equals_the_torch_scan(monkeypatch):
    from neuro.hmmglm.inference import forward_backward

    gen = torch.Generator().manual_seed(4)
    log_lik = torch.randn(2, 50, 3, generator=gen, dtype=torch.float64) * 3.0
    log_a = torch.log_softmax(torch.randn(3, 3, generator=gen, dtype=torch.float64), -1)
    log_pi = torch.log_softmax(torch.randn(3, generator=gen, dtype=torch.float64), -1)
    lengths = torch.tensor([50, 37])
    log_lik, log_a, log_pi, lengths = (x.to(DEVICE) for x in (log_lik, log_a, log_pi, lengths))
    posteriors = {}
    for mode in ("naive", "triton"):
        monkeypatch.setenv("NEUROBRIDGE_KERNELS", mode)
        posteriors[mode] = forward_backward(log_pi, log_a, log_lik, lengths)
    # float64, the same sums in another grouping: ~1e-15 per step over 50 steps
    for got, want in zip(posteriors["triton"][:3], posteriors["naive"][:3]):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("bad, message", [
    ((torch.zeros(2, 3), torch.zeros(2, 5, 3, 2)), "mats must have shape"),
    ((torch.zeros(2, 4), torch.zeros(2, 5, 3, 3)), "log_initial must have shape"),
    ((torch.zeros(2, 3), torch.zeros(2, 5, 3, 3, dtype=torch.float64)), "one float dtype"),
])
def test_bad_inputs_name_the_argument(bad, message):
    with pytest.raises(ValueError, match=message):
        naive_scaled_vecmat_scan(*bad)



@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")  # interpreter
def test_a_nan_matrix_makes_later_messages_nan_as_in_the_reference():
    # The reference's amax keeps a NaN (every later vector and log scale NaN); tl.max and
    # tl.maximum drop it, which left a finite log-likelihood. NaN at step 5 of sequence 1
    # (chunk 4 steps: the NaN must cross chunk boundaries); sequence 0 is untouched.
    from kernels.hmm_scan.triton import triton_scaled_vecmat_scan

    log_initial, mats = _inputs(2, 30, 3, seed=4)
    mats[1, 5, 1, 2] = float("nan")
    vectors, log_scale = triton_scaled_vecmat_scan(log_initial, mats, chunk=4)
    ref_vectors, ref_scale = naive_scaled_vecmat_scan(log_initial.cpu(), mats.cpu())
    assert torch.isnan(ref_scale[1, 5:]).all() and torch.isnan(ref_vectors[1, 5:]).all()
    assert torch.equal(torch.isnan(log_scale).cpu(), torch.isnan(ref_scale))
    assert torch.equal(torch.isnan(vectors).cpu(), torch.isnan(ref_vectors))
    # elsewhere as in test_triton_scan_with_many_chunks_and_lane_blocks (float64, ~1e-15 a step)
    alive = (ref_vectors.amax(-1) > 0) & ~torch.isnan(ref_scale)
    torch.testing.assert_close(vectors.cpu()[alive], ref_vectors[alive], rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(log_scale.cpu()[alive], ref_scale[alive], rtol=1e-11, atol=1e-11)
