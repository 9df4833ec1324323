"""Bad input to the public kernel entry points: a TypeError/ValueError naming the argument,
the offending value or shape and what is allowed (checked before dispatch, so the Triton
path never reads out of bounds)."""
import math
import re

import numpy as np
import pytest
import torch

from kernels.gla import chunk_gla, fused_recurrent_gla
from kernels.glm_terms import glm_terms, naive_glm_terms
from kernels.hmm_scan import scaled_vecmat_scan
from kernels.izhikevich import check_target_range, izhikevich_network_step_
from kernels.three_factor import three_factor_step

E = re.escape


def _three_factor(**change):
    b, m, d = 2, 3, 4
    args = {"weights": torch.zeros(b, m, d), "pending": torch.zeros(b, m, d), "eligibility": torch.zeros(b, d),
                "features": torch.zeros(b, d), "target": torch.zeros(b, m), "gate": torch.ones(b, m),
                "learning_rate": 0.1, "eligibility_decay": 0.5, "online": True}
    args.update(change)
    return three_factor_step(**args)


@pytest.mark.parametrize("change, error, match", [
    pytest.param({"eligibility": torch.zeros(4)}, ValueError,
                 E("eligibility must have shape (2, 4) (weights are (2, 3, 4)), got (4,)"), id="eligibility-shape"),
    pytest.param({"pending": torch.zeros(1, 3, 4)}, ValueError,
                 E("pending must have shape (2, 3, 4) (weights are (2, 3, 4)), got (1, 3, 4)"), id="pending-shape"),
    pytest.param({"features": torch.zeros(2, 5)}, ValueError,
                 E("features must have shape (2, 4) (weights are (2, 3, 4)), got (2, 5)"), id="features-shape"),
    pytest.param({"features": torch.zeros(2, 4, dtype=torch.float64)}, TypeError,
                 E("features has dtype torch.float64; expected weights' dtype torch.float32"), id="features-float64"),
    pytest.param({"target": torch.zeros(2, 3, dtype=torch.float64)}, TypeError,
                 E("target has dtype torch.float64; expected weights' dtype torch.float32"), id="target-float64"),
    pytest.param({"target": torch.zeros(3)}, ValueError,
                 E("target must have shape (2, 3) (weights are (2, 3, 4)), got (3,)"), id="target-shape"),
    pytest.param({"gate": np.ones((2, 3))}, TypeError, E("gate must be a torch.Tensor, got ndarray"),
                 id="gate-ndarray"),
    pytest.param({"weights": torch.zeros(2, 3, 4, dtype=torch.long)}, ValueError,
                 E("weights must be a float [B, M, D] tensor, got torch.int64 (2, 3, 4)"), id="weights-int64"),
    pytest.param({"learning_rate": math.nan}, ValueError,
                 E("learning_rate=nan must be a finite float"), id="learning_rate-nan"),
    pytest.param({"learning_rate": "fast"}, TypeError,
                 E("learning_rate='fast' must be a finite float, or a tensor [3] or [1]"), id="learning_rate-str"),
    pytest.param({"learning_rate": torch.ones(5)}, ValueError,
                 E("learning_rate must be a float, or a tensor [3] or [1], got shape (5,)"),
                 id="learning_rate-shape"),
    pytest.param({"eligibility_decay": math.nan}, ValueError,
                 E("eligibility_decay=nan is outside the allowed range [0, 1]"), id="eligibility_decay-nan"),
    pytest.param({"eligibility_decay": 1.5}, ValueError,
                 E("eligibility_decay=1.5 is outside the allowed range [0, 1]"), id="eligibility_decay-above-one"),
    pytest.param({"online": torch.ones(3)}, ValueError,
                 E("online must be a bool or a bool tensor [3], got torch.float32 (3,)"), id="online-float-tensor"),
    pytest.param({"online": 1}, TypeError, E("online=1 must be a bool or a bool tensor [3]"), id="online-int"),
    # the meta device stands in for a second device (a CUDA kernel handed a host pointer)
    pytest.param({"learning_rate": torch.ones(3, device="meta")}, ValueError,
                 E("learning_rate is on meta but weights is on cpu; every tensor argument must be on one device"),
                 id="learning_rate-other-device"),
    pytest.param({"gate": torch.ones(2, 3, device="meta")}, ValueError,
                 E("gate is on meta but weights is on cpu"), id="gate-other-device"),
    # another dtype made the reference return float64 (or, beside float16 weights, float32)
    # weights and pending; the Triton path casts the rate to float32 and keeps weights' dtype
    pytest.param({"learning_rate": torch.ones(3, dtype=torch.float64)}, TypeError,
                 E("learning_rate has dtype torch.float64; expected weights' dtype torch.float32"),
                 id="learning_rate-float64-tensor"),
    pytest.param({"learning_rate": torch.ones(3, dtype=torch.bool)}, TypeError,
                 E("learning_rate has dtype torch.bool; expected weights' dtype torch.float32"),
                 id="learning_rate-bool-tensor"),
])
def test_three_factor_step(change, error, match):
    with pytest.raises(error, match=match):
        _three_factor(**change)


def _network(**change):
    b, n, k = 2, 3, 2
    state = torch.zeros(b, 3 * n + 1)
    args = {"state": state, "v": state[:, :n], "u": state[:, n:2 * n], "synaptic_current": None,
                "drive": torch.zeros(b, n), "spikes": torch.zeros(b, n, dtype=torch.bool),
                "scratch_hc": torch.zeros(b, n), "scratch_t": torch.zeros(b, n),
                "targets": torch.full((b * n, k + 1), 3 * n, dtype=torch.long), "weights": torch.zeros(b * n, k + 1),
                "half_step_ms": 0.25, "k1": 0.01, "k2": 2.25, "u_decay": torch.ones(1, n), "u_v_gain": torch.zeros(1, n),
                "v_reset": torch.zeros(1, n), "v_peak_mv": 30.0}
    args.update(change)
    if isinstance(args["synaptic_current"], str):  # this state's own I_syn view
        args["synaptic_current"] = state[:, 2 * n:3 * n]
    return izhikevich_network_step_(**args)


@pytest.mark.parametrize("change, error, match", [
    pytest.param({"state": torch.zeros(2, 9)}, ValueError,
                 E("state must be a float [B, 3N+1] = [2, 10] buffer, got torch.float32 [2, 9]"), id="state-shape"),
    pytest.param({"drive": torch.zeros(2, 3, dtype=torch.float64)}, TypeError,
                 E("drive (torch.float64) and weights (torch.float32) must have state's dtype torch.float32"),
                 id="drive-float64"),
    pytest.param({"spikes": torch.zeros(2, 3)}, ValueError,
                 E("spikes must be a bool [2, 3] tensor, got torch.float32 [2, 3]"), id="spikes-float"),
    pytest.param({"targets": torch.zeros(5, 3, dtype=torch.long)}, ValueError,
                 E("targets must be an int64 [B*N, K+1] = [6, *] table, got torch.int64 [5, 3]"), id="targets-shape"),
    pytest.param({"targets": torch.zeros(6, 3, dtype=torch.int32)}, ValueError,
                 E("targets must be an int64 [B*N, K+1] = [6, *] table, got torch.int32 [6, 3]"), id="targets-int32"),
    pytest.param({"weights": torch.zeros(6, 2)}, ValueError,
                 E("weights must have targets' shape [6, 3], got [6, 2]"), id="weights-shape"),
    pytest.param({"drive": np.zeros((2, 3))}, TypeError, E("drive must be a torch.Tensor, got ndarray"),
                 id="drive-ndarray"),
    pytest.param({"u_v_gain": torch.zeros(1, 3, device="meta")}, ValueError,
                 E("u_v_gain is on meta but state is on cpu; every tensor argument must be on one device"),
                 id="u_v_gain-other-device"),
    pytest.param({"scratch_t": torch.zeros(2, 3, device="meta")}, ValueError,
                 E("scratch_t is on meta but state is on cpu"), id="scratch_t-other-device"),
    # the Triton kernels address state alone; the reference updated the v, u passed in
    pytest.param({"v": torch.zeros(2, 3)}, ValueError,
                 E("v must be the view state[:, 0N:1N] = state[:, 0:3] of state"), id="v-not-a-view"),
    pytest.param({"u": torch.zeros(2, 10)[:, 3:6]}, ValueError,
                 E("u must be the view state[:, 1N:2N] = state[:, 3:6] of state"), id="u-view-of-another-tensor"),
    pytest.param({"synaptic_current": torch.zeros(2, 10)[:, 6:9], "synapse_decay": 0.9}, ValueError,
                 E("synaptic_current must be the view state[:, 2N:3N] = state[:, 6:9] of state"),
                 id="synaptic_current-not-a-view"),
    # the reference added I_syn to the drive, the Triton path did not (it needs synapse_decay)
    pytest.param({"synaptic_current": "state[:, 6:9]"}, ValueError,
                 E("synaptic_current was given but synapse_decay is None: exponential synapses need both"),
                 id="synaptic_current-without-synapse_decay"),
    # a per-network [B, 1] u_decay: the reference broadcast it, the Triton kernels indexed it
    # as [B, N] rows and read outside it (NaN rasters under the interpreter)
    pytest.param({"u_decay": torch.ones(2, 1)}, ValueError,
                 E("u_decay must have shape [B, N] = [2, 3] or [1, N] = [1, 3], got [2, 1]"),
                 id="u_decay-per-network-column"),
    pytest.param({"u_v_gain": torch.zeros(3, 3)}, ValueError,
                 E("u_v_gain must have shape [B, N] = [2, 3] or [1, N] = [1, 3], got [3, 3]"),
                 id="u_v_gain-too-many-networks"),
    # a 1-D [N] v_reset broke the reference's sparse reset (B * N >= 4096: IndexError)
    pytest.param({"v_reset": torch.zeros(3)}, ValueError,
                 E("v_reset must have shape [B, N] = [2, 3] or [1, N] = [1, 3], got [3]"), id="v_reset-1d"),
    # the reference raised from inside torch.where(out=), the Triton path accepted it
    pytest.param({"v_reset": torch.zeros(1, 3, dtype=torch.float64)}, TypeError,
                 E("v_reset (torch.float64) must have state's dtype torch.float32"), id="v_reset-float64"),
])
def test_izhikevich_network_step(change, error, match):
    with pytest.raises(error, match=match):
        _network(**change)


def test_a_numpy_float32_scale_is_a_scale():
    # np.float64 (a float subclass) was accepted and np.float32 refused
    q = torch.randn(1, 5, 1, 4, generator=torch.Generator().manual_seed(0))
    expected, _ = chunk_gla(q, q, q, None, scale=0.5)
    for scale in (np.float32(0.5), np.float64(0.5), np.int64(1) / 2):
        assert torch.equal(chunk_gla(q, q, q, None, scale=scale)[0], expected)


def test_check_target_range_names_the_slots_outside_state():
    state = torch.zeros(2, 10)
    check_target_range(torch.tensor([[0, 19], [3, 5]]), state)
    check_target_range(torch.zeros(0, 3, dtype=torch.long), state)
    with pytest.raises(ValueError, match=E("targets must be flat slots of state in [0, 20) (state is [2, 10]), "
                                           "got entries from 0 to 20")):
        check_target_range(torch.tensor([[0, 20]]), state)
    with pytest.raises(ValueError, match=E("got entries from -1 to 4")):
        check_target_range(torch.tensor([[-1, 4]]), state)
    with pytest.raises(TypeError, match="targets must be a torch.Tensor, got list"):
        check_target_range([[0]], state)


def test_zero_dim_learning_rate_of_another_float_dtype_is_a_scalar():
    # type promotion treats a 0-dim tensor as a scalar: the reference keeps weights' dtype
    # (as the Triton path does), so only a rate with an axis must have weights' dtype
    for rate in (torch.tensor(0.1, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float16)):
        out = _three_factor(learning_rate=rate, features=torch.ones(2, 4), target=torch.ones(2, 3))
        expected = _three_factor(learning_rate=float(rate), features=torch.ones(2, 4), target=torch.ones(2, 3))
        assert all(x.dtype == torch.float32 and torch.equal(x, y) for x, y in zip(out, expected))
    with pytest.raises(TypeError, match=E("learning_rate has dtype torch.int64")):
        _three_factor(learning_rate=torch.tensor(1))


def test_batch_of_one_views_with_any_batch_stride_are_state_views():
    # B = 1: state[0, :N].unsqueeze(0) is state[:, :N] (a size-1 axis's stride addresses nothing)
    n = 3
    state = torch.zeros(1, 3 * n + 1)
    state[:, :n] = -65.0
    rows = [state[0, i * n:(i + 1) * n].unsqueeze(0) for i in range(2)]
    assert rows[0].stride() != state[:, :n].stride()
    expected = state.clone()
    _network(state=expected, v=expected[:, :n], u=expected[:, n:2 * n], drive=torch.full((1, n), 140.0),
             spikes=torch.zeros(1, n, dtype=torch.bool), scratch_hc=torch.zeros(1, n),
             scratch_t=torch.zeros(1, n), targets=torch.full((n, 3), 3 * n, dtype=torch.long),
             weights=torch.zeros(n, 3))
    _network(state=state, v=rows[0], u=rows[1], drive=torch.full((1, n), 140.0),
             spikes=torch.zeros(1, n, dtype=torch.bool), scratch_hc=torch.zeros(1, n),
             scratch_t=torch.zeros(1, n), targets=torch.full((n, 3), 3 * n, dtype=torch.long),
             weights=torch.zeros(n, 3))
    assert torch.equal(state, expected) and not torch.equal(state[:, :n], torch.full((1, n), -65.0))


# Each call gets q = zeros [1, 4, 1, 2] (B, T, H, K).
@pytest.mark.parametrize("call, error, match", [
    pytest.param(lambda q: chunk_gla(q, q, q, None, scale=math.nan), ValueError, E("scale=nan must be finite"),
                 id="chunk_gla-scale-nan"),
    pytest.param(lambda q: chunk_gla(q, q, q, None, scale="a"), TypeError, E("scale='a' must be a float or None"),
                 id="chunk_gla-scale-str"),
    pytest.param(lambda q: fused_recurrent_gla(q.long(), q.long(), q.long(), None), TypeError,
                 E("q has dtype torch.int64; allowed: a floating dtype"), id="fused_recurrent_gla-q-int64"),
    pytest.param(lambda q: chunk_gla(q.tolist(), q, q, None), TypeError, E("q must be a torch.Tensor, got list"),
                 id="chunk_gla-q-list"),
    pytest.param(lambda q: chunk_gla(q, q, q.double(), None), TypeError,
                 E("v has dtype torch.float64; expected q's dtype torch.float32"), id="chunk_gla-v-float64"),
    pytest.param(lambda q: fused_recurrent_gla(q, q.half(), q, None), TypeError,
                 E("k has dtype torch.float16; expected q's dtype torch.float32"), id="fused_recurrent_gla-k-float16"),
    pytest.param(lambda q: chunk_gla(q, q, q, q.to("meta")), ValueError,
                 E("g is on meta but q is on cpu; every tensor argument must be on one device"),
                 id="chunk_gla-g-other-device"),
    pytest.param(lambda q: chunk_gla(q, q, q, None, initial_state=torch.zeros(1, 1, 2, 2, dtype=torch.long)),
                 TypeError, E("initial_state has dtype torch.int64; allowed: a floating dtype"),
                 id="chunk_gla-h0-int64"),  # was taken silently
    pytest.param(lambda q: fused_recurrent_gla(q, q, q, None, initial_state=torch.zeros(1, 1, 2, 2, device="meta")),
                 ValueError, E("initial_state is on meta but q is on cpu"), id="fused_recurrent_gla-h0-other-device"),
    pytest.param(lambda q: scaled_vecmat_scan(np.zeros((1, 2)), torch.zeros(1, 3, 2, 2)), TypeError,
                 E("log_initial must be a torch.Tensor, got ndarray"), id="scaled_vecmat_scan-log_initial-ndarray"),
    pytest.param(lambda q: glm_terms(np.zeros((2, 1, 3)), torch.zeros(2, 3), None, "exp"), TypeError,
                 E("eta must be a torch.Tensor, got ndarray"), id="glm_terms-eta-ndarray"),
    pytest.param(lambda q: glm_terms(torch.zeros(2, 1, 3), torch.zeros(2, 3), None, "exp", torch.zeros(2, 1, 3),
                                     "x"), TypeError,
                 E("step='x' must be a float (0 or a power of two)"), id="glm_terms-step-str"),
    # these three were torch RuntimeErrors from inside the reference, an int dtype a silent truncation
    pytest.param(lambda q: glm_terms(torch.zeros(2, 1, 3), torch.zeros(2, 3), torch.zeros(2, 1, device="meta"),
                                     "exp"), ValueError,
                 E("resp is on meta but eta is on cpu; every tensor argument must be on one device"),
                 id="glm_terms-resp-other-device"),
    pytest.param(lambda q: glm_terms(torch.zeros(2, 1, 3), torch.zeros(2, 3), None, "exp", derivatives=True,
                                     curvature_dtype=torch.int32), TypeError,
                 E("curvature_dtype must be None or a floating torch.dtype, got torch.int32"),
                 id="glm_terms-curvature_dtype-int32"),
    pytest.param(lambda q: glm_terms(torch.zeros(2, 1, 3), torch.zeros(2, 3), None, "exp", derivatives=True,
                                     curvature_dtype="float32"), TypeError,
                 E("curvature_dtype must be None or a floating torch.dtype, got 'float32'"),
                 id="glm_terms-curvature_dtype-str"),
    pytest.param(lambda q: scaled_vecmat_scan(torch.zeros(1, 2), torch.zeros(1, 3, 2, 2, device="meta")), ValueError,
                 E("mats is on meta but log_initial is on cpu; every tensor argument must be on one device"),
                 id="scaled_vecmat_scan-mats-other-device"),
    pytest.param(lambda q: scaled_vecmat_scan(torch.zeros(1, 0), torch.zeros(1, 3, 0, 0)), ValueError,
                 E("mats must have shape (B, S, K, K) with K >= 1 states, got (1, 3, 0, 0)"),
                 id="scaled_vecmat_scan-no-states"),
])
def test_gla_hmm_glm(call, error, match):
    q = torch.zeros(1, 4, 1, 2)
    with pytest.raises(error, match=match):
        call(q)


def test_cpu_zero_dim_scalars_beside_another_device_are_accepted(monkeypatch):
    # torch ops take a 0-dim CPU tensor (a CPU scalar) beside tensors on any device, and the
    # Triton paths read such scalars on the host (izhikevich) or move them (three_factor):
    # the one-device check must not refuse e.g. a CPU learning_rate or half_step_ms beside
    # CUDA state. The meta device stands in for CUDA; the naive path runs on meta tensors.
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "naive")
    b, m, d = 2, 3, 4
    meta = lambda *shape: torch.zeros(*shape, device="meta")
    out = three_factor_step(meta(b, m, d), meta(b, m, d), meta(b, d), meta(b, d), meta(b, m),
                            meta(b, m), torch.tensor(0.1), 0.5, True)
    assert all(t.device.type == "meta" for t in out)

    from kernels import izhikevich

    calls = []
    monkeypatch.setattr(izhikevich, "naive_izhikevich_network_step_", lambda *a: calls.append(a))
    n = 3
    state = meta(b, 3 * n + 1)
    izhikevich_network_step_(
        state, state[:, :n], state[:, n:2 * n], None, meta(b, n),
        torch.zeros(b, n, dtype=torch.bool, device="meta"), meta(b, n), meta(b, n),
        torch.zeros(b * n, 2, dtype=torch.long, device="meta"), meta(b * n, 2),
        torch.tensor(0.25), torch.tensor(0.01), torch.tensor(2.25), meta(1, n), meta(1, n),
        meta(1, n), torch.tensor(30.0), torch.tensor(0.9))
    assert len(calls) == 1
    # a 0-dim tensor on the other device, or a CPU tensor of one element, is still refused
    with pytest.raises(ValueError, match=E("learning_rate is on cpu but weights is on meta")):
        three_factor_step(meta(b, m, d), meta(b, m, d), meta(b, d), meta(b, d), meta(b, m),
                          meta(b, m), torch.tensor([0.1]), 0.5, True)


@pytest.mark.parametrize("shape", [(4, 0, 3), (4, 2, 0), (0, 2, 3)], ids=["M=0", "N=0", "T=0"])
def test_glm_terms_empty_problem_or_neuron_axis(shape):
    # the Triton path (interpreter on CPU) divided by a zero tile size for M = 0 or N = 0
    t, m, n = shape
    args = (torch.zeros(t, m, n), torch.zeros(t, n), torch.ones(t, m), "softplus")
    got = glm_terms(*args, per_bin=True, derivatives=True)
    expected = naive_glm_terms(*args, per_bin=True, derivatives=True)
    for x, y in zip(got, expected):
        assert x.shape == y.shape and x.dtype == y.dtype
        assert torch.equal(x, y)
