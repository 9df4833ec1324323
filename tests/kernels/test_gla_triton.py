"""Triton GLA vs the float64 recurrent reference (interpreter on CPU, real kernels on a GPU).

Buffers are NaN-poisoned (conftest); every comparison would fail on a leftover NaN.
"""
import pytest
import torch

from kernels.gla import (
    chunk_gla,
    fused_recurrent_gla,
    linear_attention,
    naive_chunk_gla,
    naive_recurrent_gla,
)
from kernels.gla.triton import DIAGONAL_SAFE_SPAN
from tests.kernels.conftest import DEVICE, relative_rms_error

# fp32: kernels use IEEE fp32 dots with fp32 accumulation vs a float64 oracle; ~1e-6 is
# typical, 1e-5 leaves room for summation order over T=100. Absolute short-circuit 1e-7:
# entries that are ~0 (e.g. gradients of padded keys) have no meaningful relative error.
FP32_TOL, FP32_ABS = 1e-5, 1e-7
# fp16: matmul operands rounded to fp16 (11-bit mantissa, ~5e-4 per op) over O(T) terms.
FP16_TOL, FP16_ABS = 5e-3, 1e-4


def _make(batch, length, heads, key_dim, value_dim, dtype, seed, gate_scale=1.0, with_h0=True,
          num_states=None):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, length, heads, key_dim, generator=gen)
    k = torch.randn(batch, length, heads, key_dim, generator=gen) / key_dim ** 0.5
    v = torch.randn(batch, length, heads, value_dim, generator=gen)
    g = gate_scale * torch.nn.functional.logsigmoid(
        torch.randn(batch, length, heads, key_dim, generator=gen) + 2.0)
    h0 = (torch.randn(num_states or batch, heads, key_dim, value_dim, generator=gen)
          if with_h0 else None)

    def cast(x):
        return None if x is None else x.to(dtype).to(DEVICE)
    return cast(q), cast(k), cast(v), cast(g), None if h0 is None else h0.to(DEVICE)


def _check_against_reference(op, q, k, v, g, h0, tol, absolute, cu_seqlens=None,
                             backward=True, dg_tol=None):
    leaves = [x.clone().requires_grad_(backward) if x is not None else None
              for x in (q, k, v, g, h0)]
    out, final = op(*leaves[:4], initial_state=leaves[4], output_final_state=True,
                    cu_seqlens=cu_seqlens)
    ref_leaves = [x.detach().double().cpu().requires_grad_(backward) if x is not None else None
                  for x in (q, k, v, g, h0)]
    ref_out, ref_final = naive_recurrent_gla(
        *ref_leaves[:4], initial_state=ref_leaves[4], output_final_state=True,
        cu_seqlens=None if cu_seqlens is None else cu_seqlens.cpu())
    assert out.dtype == v.dtype and final.dtype == torch.float32
    assert torch.isfinite(out).all() and torch.isfinite(final).all()
    assert relative_rms_error(out, ref_out, absolute) <= tol
    assert relative_rms_error(final, ref_final, absolute) <= tol
    if not backward:
        return
    gen = torch.Generator().manual_seed(1)
    w_out = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    w_final = torch.randn(final.shape, generator=gen, dtype=torch.float64)
    ((out.double() * w_out.to(out.device)).sum()
     + (final.double() * w_final.to(out.device)).sum()).backward()
    ((ref_out * w_out).sum() + (ref_final * w_final).sum()).backward()
    for name, leaf, ref in zip(("dq", "dk", "dv", "dg", "dh0"), leaves, ref_leaves):
        if leaf is None:
            continue
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all(), name
        error = relative_rms_error(leaf.grad, ref.grad, absolute)
        bound = dg_tol if name == "dg" and dg_tol is not None else tol
        assert error <= bound, f"{name}: relative rms error {error:.2e} > {bound:.0e}"


@pytest.mark.parametrize("length, key_dim, value_dim, with_h0", [
    (1, 16, 16, True), (15, 60, 60, False), (63, 64, 64, True), (64, 16, 60, False),
    (100, 60, 16, True), (100, 16, 16, False),
])
def test_chunk_gla_fp32_outputs_and_gradients(length, key_dim, value_dim, with_h0):
    # (B, H) = (2, 1) or (1, 2) alternately: batch packing and heads both covered, at half
    # the interpreter time.
    batch, heads = (2, 1) if length % 2 == 0 else (1, 2)
    inputs = _make(batch, length, heads, key_dim, value_dim, torch.float32,
                   seed=length + key_dim, with_h0=with_h0)
    _check_against_reference(chunk_gla, *inputs, FP32_TOL, FP32_ABS)


def test_chunk_gla_fp32_strong_gates_do_not_overflow():
    # log decay down to ~-40 per step: cumulative exponents reach ~-2500 inside a chunk.
    inputs = _make(1, 100, 1, 16, 16, torch.float32, seed=3, gate_scale=20.0)
    _check_against_reference(chunk_gla, *inputs, FP32_TOL, FP32_ABS)


@pytest.mark.parametrize("dtype, tol, absolute", [(torch.float32, FP32_TOL, FP32_ABS),
                                                   (torch.float16, FP16_TOL, FP16_ABS)])
def test_chunk_gla_mixes_matmul_and_exact_diagonal_blocks(dtype, tol, absolute):
    # Weak gates in the first chunk, strong ones in the second: the 16-row diagonal blocks
    # take the matmul path where their decay spread is within DIAGONAL_SAFE_SPAN, the exact column
    # loop elsewhere, in one call (asserted below from the inputs), and both must match.
    q, k, v, g, h0 = _make(1, 128, 1, 16, 16, dtype, seed=29)
    profile = torch.where(torch.arange(128, device=g.device) < 64, 1.0, 25.0)
    g = (g.float() * profile.view(1, 128, 1, 1)).to(dtype)
    spread = -g.float().reshape(1, 8, 16, 1, 16)[:, :, 1:].sum(2).amax(-1)  # (1, blocks, H)
    assert (spread <= DIAGONAL_SAFE_SPAN).any() and (spread > DIAGONAL_SAFE_SPAN).any()
    _check_against_reference(chunk_gla, q, k, v, g, h0, tol, absolute)


def test_huge_inputs_are_refused():
    from kernels.gla.triton import triton_chunk_gla

    big = torch.empty(1, 2**24, 2, 64, device="meta")  # 2^31 elements in one buffer
    with pytest.raises(ValueError, match="int32 offsets"):
        triton_chunk_gla(big, big, big, big)


def test_chunk_gla_varlen_with_empty_sequence():
    cu_seqlens = torch.tensor([0, 15, 15, 79, 80], dtype=torch.int32, device=DEVICE)
    inputs = _make(1, 80, 2, 16, 16, torch.float32, seed=5, num_states=4)
    _check_against_reference(chunk_gla, *inputs, FP32_TOL, FP32_ABS, cu_seqlens=cu_seqlens)


@pytest.mark.parametrize("length, dim", [(63, 16), (100, 64)])
def test_chunk_gla_fp16(length, dim):
    inputs = _make(1, length, 1, dim, dim, torch.float16, seed=7)
    _check_against_reference(chunk_gla, *inputs, FP16_TOL, FP16_ABS)


def test_linear_attention_is_the_zero_gate_case_with_gradients():
    q, k, v, _, h0 = _make(2, 70, 1, 16, 16, torch.float32, seed=11)
    leaves = [x.clone().requires_grad_() for x in (q, k, v, h0)]
    out, final = linear_attention(*leaves[:3], initial_state=leaves[3], output_final_state=True)
    ref = [x.double().cpu().requires_grad_() for x in (q, k, v, h0)]
    ref_out, ref_final = naive_recurrent_gla(*ref[:3], None, initial_state=ref[3],
                                             output_final_state=True)
    assert relative_rms_error(out, ref_out) <= FP32_TOL
    assert relative_rms_error(final, ref_final) <= FP32_TOL
    (out.sum() + final.sum()).backward()
    (ref_out.sum() + ref_final.sum()).backward()
    for leaf, r in zip(leaves, ref):
        assert relative_rms_error(leaf.grad, r.grad, FP32_ABS) <= FP32_TOL


@pytest.mark.parametrize("length, dim, dtype, tol", [
    (1, 16, torch.float32, FP32_TOL), (100, 60, torch.float32, FP32_TOL),
    (63, 64, torch.float16, FP16_TOL),
])
def test_fused_recurrent_forward(length, dim, dtype, tol):
    inputs = _make(2, length, 1, dim, dim, dtype, seed=13)
    _check_against_reference(fused_recurrent_gla, *inputs, tol, FP32_ABS, backward=False)


def test_fused_recurrent_decoding_continues_the_chunked_state():
    # Prefill with the chunked kernel, then decode 3 steps with the recurrent one: the
    # concatenated outputs equal one pass over the whole sequence (fla issue #553).
    q, k, v, g, h0 = _make(1, 67, 2, 16, 16, torch.float32, seed=17)
    full, full_final = naive_recurrent_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    prefix, state = chunk_gla(q[:, :64], k[:, :64], v[:, :64], g[:, :64], initial_state=h0,
                              output_final_state=True)
    tail, final = fused_recurrent_gla(q[:, 64:], k[:, 64:], v[:, 64:], g[:, 64:],
                                      initial_state=state, output_final_state=True)
    assert relative_rms_error(torch.cat([prefix, tail], 1), full) <= FP32_TOL
    assert relative_rms_error(final, full_final) <= FP32_TOL


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs CUDA: bf16 arithmetic is wrong under the Triton interpreter")
def test_chunk_gla_bf16_on_gpu():
    # bf16 (8-bit mantissa) operands: fla's own bound is rel-RMS < ~5e-3 on outputs; grads
    # of g suffer cancellation in q dq - k dk, hence 1e-2 there.
    q, k, v, g, h0 = _make(2, 300, 4, 64, 64, torch.bfloat16, seed=19)
    leaves = [x.clone().requires_grad_() for x in (q, k, v, g, h0)]
    out, final = chunk_gla(*leaves[:4], initial_state=leaves[4], output_final_state=True)
    ref = [x.double().cpu().requires_grad_() for x in (q, k, v, g, h0)]
    ref_out, ref_final = naive_recurrent_gla(*ref[:4], initial_state=ref[4],
                                             output_final_state=True)
    assert relative_rms_error(out, ref_out) <= 5e-3
    (out.float().sum() + final.sum()).backward()
    (ref_out.sum() + ref_final.sum()).backward()
    for name, leaf, r in zip(("dq", "dk", "dv", "dg", "dh0"), leaves, ref):
        assert relative_rms_error(leaf.grad, r.grad, 1e-4) <= 1e-2, name


def test_fused_recurrent_with_grad_falls_back_to_a_differentiable_kernel():
    q, k, v, g, h0 = _make(1, 20, 1, 16, 16, torch.float32, seed=23)
    q.requires_grad_()
    out, _ = fused_recurrent_gla(q, k, v, g, initial_state=h0)
    assert out.grad_fn is not None
    out.sum().backward()
    ref_q = q.detach().double().cpu().requires_grad_()
    ref, _ = naive_recurrent_gla(ref_q, k.double().cpu(), v.double().cpu(), g.double().cpu(),
                                 initial_state=h0.double().cpu())
    ref.sum().backward()
    assert relative_rms_error(q.grad, ref_q.grad, FP32_ABS) <= FP32_TOL


@pytest.mark.parametrize("op", [chunk_gla, naive_chunk_gla, fused_recurrent_gla])
def test_resets_and_huge_gates_match_the_recurrence(op):
    # A -inf gate (full reset) and a huge finite one among weak gates. The chunked forms clamp
    # g at log_decay_floor (exp of it is already 0): no exp(-inf - -inf) = NaN, and the weak
    # gates after the huge one are not swamped in the float32 cumulative sum (before the
    # clamp: relative error 0.2 at g = -1e7). The recurrent form with gradients runs the
    # chunked kernels (its fallback), so it is covered too.
    # dg's bound: after a reset the cumulative log decay b sits near the floor (-110), where
    # float32's spacing is 7.6e-6, not the <= 1.2e-7 of |b| <= 1 that FP32_TOL allows for,
    # so each decay factor after it already carries ~8e-6 relative error (the chunked
    # representation's limit, fla's too; the torch chunked reference shares it), and dg,
    # a difference q dq - k dk, is held to 4 x FP32_TOL: the same room above that floor.
    q, k, v, g, h0 = _make(1, 80, 2, 16, 16, torch.float32, seed=31, gate_scale=0.1)
    g[:, 7, 0] = -float("inf")
    g[:, 30] = -1e7
    _check_against_reference(op, q, k, v, g, h0, FP32_TOL, FP32_ABS, dg_tol=4 * FP32_TOL)


def test_float64_takes_the_naive_path_and_the_triton_path_refuses_it():
    from kernels.gla.triton import triton_chunk_gla

    q, k, v, g, h0 = (x.double() for x in _make(1, 20, 1, 16, 16, torch.float32, seed=37))
    out, final = chunk_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    ref_out, ref_final = naive_chunk_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    assert final.dtype == torch.float64  # the Triton path would return a float32 state
    assert torch.equal(out, ref_out) and torch.equal(final, ref_final)
    with pytest.raises(TypeError, match=r"Triton GLA takes q of dtype .* got torch.float64"):
        triton_chunk_gla(q, k, v, g)


def test_double_backward_is_an_error_not_a_silent_zero():
    q, k, v, g, h0 = _make(1, 20, 1, 16, 16, torch.float32, seed=41)
    q.requires_grad_()
    out, _ = chunk_gla(q, k, v, g, initial_state=h0)
    (dq,) = torch.autograd.grad(out.pow(2).sum(), q, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        dq.pow(2).sum().backward()


@pytest.mark.parametrize("op", [chunk_gla, fused_recurrent_gla])
@pytest.mark.parametrize("heads, value_dim", [(0, 16), (2, 0)])
def test_empty_head_or_value_axes_match_the_reference(op, heads, value_dim):
    q, k, v, g, h0 = _make(2, 20, heads, 16, value_dim, torch.float32, seed=43)
    out, final = op(q, k, v, g, initial_state=h0, output_final_state=True)
    ref_out, ref_final = naive_recurrent_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    assert out.shape == ref_out.shape and final.shape == ref_final.shape


@pytest.mark.parametrize("op", [chunk_gla, naive_chunk_gla, fused_recurrent_gla])
def test_zero_key_dim_needs_an_explicit_scale(op):
    q, k, v, g, _ = _make(1, 5, 1, 0, 16, torch.float32, seed=47, with_h0=False)
    with pytest.raises(ValueError, match=r"scale=None means K \*\* -0.5, undefined for key dim K=0"):
        op(q, k, v, g)


def test_a_nan_gate_propagates_as_in_the_reference():
    # The floor must not clean a NaN gate into a full reset: tl.maximum(NaN, floor) is the
    # floor (max.f32 on a GPU, np.fmax in the interpreter), so the Triton chunked output was
    # finite where the references are NaN. A NaN in g means a broken upstream; hide nothing.
    q, k, v, g, h0 = _make(1, 20, 1, 16, 16, torch.float32, seed=53)
    g[0, 5, 0, 3] = float("nan")
    out, final = chunk_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    ref_out, ref_final = naive_chunk_gla(q.cpu(), k.cpu(), v.cpu(), g.cpu(), initial_state=h0.cpu(),
                                         output_final_state=True)
    assert torch.equal(out.isnan().cpu(), ref_out.isnan()) and out.isnan().any()
    assert torch.equal(final.isnan().cpu(), ref_final.isnan()) and final.isnan().any()

