"""gpu_check, part 1: every Triton kernel against its reference, in float32 and bfloat16
(the HMM-GLM kernels in float64 and float32, the dtypes of fits).

Chunked GLA outputs and gradients (dq dk dv dg dh0) and the fused recurrent form vs the
float64 recurrent reference (incl. a varlen batch with an empty sequence); the three-factor
step vs its torch reference; the Izhikevich step vs its torch reference (raster of
``raster_neurons`` x ``raster_steps``, float32; one step in bfloat16); the HMM-GLM
emission terms and the scaled HMM message scan vs their float64 references. Also the network
builder the spiking timings use. Rows: kernel, dtype, quantity, relative RMS error, bound,
pass.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from experiments.store import RunDir

if TYPE_CHECKING:
    from experiments.gpu_check import Config


def _relative_rms(actual: torch.Tensor, expected: torch.Tensor, absolute: float = 0.0) -> float:
    diff = (actual.double() - expected.double()).pow(2).mean().sqrt().item()
    if diff <= absolute:
        return 0.0
    scale = expected.double().pow(2).mean().sqrt().item()
    return diff / scale if scale > 0 else float("inf")


def _gla_inputs(batch, length, heads, dim, dtype, device, seed, grad=False):
    gen = torch.Generator(device=device).manual_seed(seed)
    q = torch.randn(batch, length, heads, dim, generator=gen, device=device)
    k = torch.randn(batch, length, heads, dim, generator=gen, device=device) / math.sqrt(dim)
    v = torch.randn(batch, length, heads, dim, generator=gen, device=device)
    g = torch.nn.functional.logsigmoid(torch.randn(batch, length, heads, dim, generator=gen,
                                                   device=device) + 2.0)
    return [x.to(dtype).requires_grad_(grad) for x in (q, k, v, g)]


# ----------------------------------------------------------------------------- verification
def verify_gla(config: Config, device: str, out: RunDir) -> list[dict]:
    from kernels.gla import chunk_gla, fused_recurrent_gla
    from kernels.gla.naive import naive_recurrent_gla
    rows = []
    length, dim = config.verify_length, config.verify_dim
    # bf16 arithmetic is wrong under the CPU interpreter: a CPU smoke run checks fp16 instead.
    half = torch.bfloat16 if device == "cuda" else torch.float16
    cases = [("chunk", torch.float32, None), ("chunk", half, None),
             ("chunk-varlen", torch.float32, "varlen"), ("recurrent", torch.float32, None),
             ("recurrent", half, None)]
    for form, dtype, variant in cases:
        batch, heads = (1, 2) if variant else (2, 4)
        total = 3 * length if variant else length
        q, k, v, g = _gla_inputs(batch, total, heads, dim, dtype, device, seed=len(rows))
        cu = None
        if variant:
            cu = torch.tensor([0, length // 3, length // 3, total - 1, total], device=device)
        num_states = batch if cu is None else cu.numel() - 1
        h0 = torch.randn(num_states, heads, dim, dim, device=device)
        leaves = [x.detach().clone().requires_grad_(form != "recurrent") for x in (q, k, v, g, h0)]
        op = chunk_gla if form.startswith("chunk") else fused_recurrent_gla
        o, ht = op(*leaves[:4], initial_state=leaves[4], output_final_state=True, cu_seqlens=cu)
        ref = [x.detach().double().requires_grad_(form != "recurrent") for x in (q, k, v, g, h0)]
        ro, rht = naive_recurrent_gla(*ref[:4], initial_state=ref[4], output_final_state=True,
                                      cu_seqlens=cu)
        errors = {"o": _relative_rms(o, ro), "final_state": _relative_rms(ht, rht)}
        if form != "recurrent":
            w = torch.randn_like(ro)
            ((o.double() * w).sum() + ht.double().sum()).backward()
            ((ro * w).sum() + rht.sum()).backward()
            for name, a, b in zip(("dq", "dk", "dv", "dg", "dh0"), leaves, ref):
                errors[name] = _relative_rms(a.grad, b.grad, 1e-7)
        # fp32: IEEE dots, fp32 accumulation -> 1e-5; bf16: operands rounded to 8 bits ->
        # 5e-3 on outputs (fla's bound), 1e-2 on gradients (q dq - k dk cancels in dg).
        bound = 1e-5 if dtype == torch.float32 else 5e-3
        for name, err in errors.items():
            limit = bound if (name in ("o", "final_state") or dtype == torch.float32) else 1e-2
            rows.append({"kernel": f"gla-{form}", "dtype": str(dtype).replace("torch.", ""),
                         "quantity": name, "rel_rms_error": err, "bound": limit,
                         "pass": bool(err <= limit and math.isfinite(err))})
    return rows


def verify_three_factor(config: Config, device: str) -> list[dict]:
    from kernels.three_factor import naive_three_factor_step, three_factor_step
    rows = []
    batch, readouts, dim = 8, 4, 4096
    gen = torch.Generator(device=device).manual_seed(0)
    base = [torch.randn(*s, generator=gen, device=device) for s in
            ((batch, readouts, dim), (batch, readouts, dim), (batch, dim), (batch, dim),
             (batch, readouts), (batch, readouts))]
    base[2], base[3], base[5] = base[2].abs(), base[3].abs(), base[5].sigmoid()
    online = torch.arange(readouts, device=device) % 2 == 0
    for dtype in (torch.float32, torch.bfloat16 if device == "cuda" else torch.float16):
        args = [x.to(dtype) for x in base]
        got = three_factor_step(*args, 0.05, 0.9, online)
        expected = naive_three_factor_step(*(a.float() for a in args), 0.05, 0.9, online)
        bound = 1e-5 if dtype == torch.float32 else 1e-2  # bf16: one rounding per output
        for name, a, b in zip(("z", "error", "eligibility", "weights", "pending"), got, expected):
            err = _relative_rms(a, b, 1e-6)
            rows.append({"kernel": "three_factor", "dtype": str(dtype).replace("torch.", ""),
                         "quantity": name, "rel_rms_error": err, "bound": bound,
                         "pass": bool(err <= bound)})
    return rows


def _row(kernel, dtype, quantity, err, bound):
    return {"kernel": kernel, "dtype": str(dtype).replace("torch.", ""), "quantity": quantity,
            "rel_rms_error": err, "bound": bound, "pass": bool(err <= bound)}


def verify_glm_terms(config: Config, device: str) -> list[dict]:
    """The HMM-GLM emission terms (all reductions, with a line-search trial step) vs the
    float64 reference on the same inputs. Its dtypes are those of HMM-GLM fits, float64
    and float32 (fits reject half precision)."""
    from kernels.glm_terms import glm_terms, naive_glm_terms
    rows = []
    steps, problems, neurons = config.verify_length, 12, 20
    gen = torch.Generator(device=device).manual_seed(3)
    eta = torch.randn(steps, problems, neurons, generator=gen, device=device,
                      dtype=torch.float64) - 1.0
    eta[0] = -30.0 + 40.0 * torch.rand(problems, neurons, generator=gen, device=device,
                                       dtype=torch.float64)  # the softplus/sigmoid tails
    delta = 0.5 * torch.randn(eta.shape, generator=gen, device=device, dtype=torch.float64)
    counts = torch.poisson(torch.full((steps, neurons), 0.4, device=device, dtype=torch.float64),
                           generator=gen)
    resp = torch.rand(steps, problems, generator=gen, device=device, dtype=torch.float64)
    # float64: the same formulas up to exp/log1p rounding and summation order (1e-12);
    # float32 vs the float64 oracle on the rounded inputs: sums of <= T terms of a few
    # float32 ulps each, and the softplus series seam (7e-6 relative on the curvature)
    cases = [(link, torch.float64, 1e-12) for link in ("softplus", "exp", "logistic")]
    cases += [("softplus", torch.float32, 1e-5)]
    for link, dtype, bound in cases:
        y = counts.clamp(max=1.0) if link == "logistic" else counts
        inputs = [x.to(dtype) for x in (eta, y, resp, delta)]
        got = glm_terms(inputs[0], inputs[1], inputs[2], link, inputs[3], step=0.5,
                        per_bin=True, derivatives=True)
        want = naive_glm_terms(*(x.double() for x in inputs[:3]), link, inputs[3].double(),
                               step=0.5, per_bin=True, derivatives=True)
        for name in ("value", "per_bin", "weighted_gradient", "weighted_curvature"):
            rows.append(_row(f"glm_terms ({link})", dtype, name,
                             _relative_rms(getattr(got, name), getattr(want, name)), bound))
    return rows


def verify_hmm_scan(config: Config, device: str) -> list[dict]:
    """The scaled HMM message scan vs the step-by-step float64 reference: 40 sequences
    (several lane blocks), ``verify_length`` steps (several chunks), K = 3 and 8."""
    from kernels.hmm_scan import naive_scaled_vecmat_scan, scaled_vecmat_scan
    rows = []
    for k in (3, 8):
        gen = torch.Generator(device=device).manual_seed(k)
        transition = torch.softmax(3.0 * torch.randn(40, 1, k, k, generator=gen, device=device,
                                                     dtype=torch.float64), -1)
        emission = torch.rand(40, config.verify_length, 1, k, generator=gen, device=device,
                              dtype=torch.float64) ** 4
        mats = transition * emission / emission.amax(-1, keepdim=True)
        log_initial = torch.log(torch.rand(40, k, generator=gen, device=device,
                                           dtype=torch.float64))
        log_initial[-1, 0] = float("-inf")  # a state that cannot start
        # float64: ~1e-15 per rescaled step; float32: ~6e-8 per step, forgotten as the
        # chain mixes (vs the float64 oracle on the rounded inputs)
        for dtype, bound in ((torch.float64, 1e-11), (torch.float32, 1e-5)):
            vectors, log_scale = scaled_vecmat_scan(log_initial.to(dtype), mats.to(dtype))
            ref_vectors, ref_scale = naive_scaled_vecmat_scan(log_initial.to(dtype).double(),
                                                              mats.to(dtype).double())
            rows.append(_row(f"hmm_scan (K={k})", dtype, "vectors",
                             _relative_rms(vectors, ref_vectors), bound))
            rows.append(_row(f"hmm_scan (K={k})", dtype, "log_scale",
                             _relative_rms(log_scale, ref_scale), bound))
    return rows


def build_network(batch, num_neurons, in_degree, excitatory_weight, inhibitory_weight, seed,
                  device, dtype=torch.float32):
    """Izhikevich 2003 population (80/20 E/I) with fixed in-degree (multapses allowed; no
    autapses) as the event table of ``kernels/izhikevich/naive.py``, built on ``device``."""
    n = num_neurons
    gen = torch.Generator(device=device).manual_seed(seed)
    excitatory = torch.arange(n, device=device) < int(0.8 * n)
    r = torch.rand(batch, n, generator=gen, device=device)
    a = torch.where(excitatory, 0.02, 0.02 + 0.08 * r)
    b = torch.where(excitatory, 0.2, 0.25 - 0.05 * r)
    c = torch.where(excitatory, -65 + 15 * r ** 2, -65.0)
    d = torch.where(excitatory, 8 - 6 * r ** 2, 2.0)
    slots = 3 * n + 1
    num_synapses = batch * n * in_degree
    post = torch.arange(n, device=device).repeat_interleave(in_degree).repeat(batch)
    network = torch.arange(batch, device=device).repeat_interleave(n * in_degree)
    pre = torch.randint(0, n - 1, (num_synapses,), generator=gen, device=device)
    pre += (pre >= post).long()
    weight = torch.rand(num_synapses, generator=gen, device=device)
    weight = torch.where(excitatory[pre], excitatory_weight * weight, -inhibitory_weight * weight)
    row, order = torch.sort(network * n + pre, stable=True)
    slot = (network * slots + post)[order]
    weight = weight[order]
    del pre, post, network, order
    counts = torch.bincount(row, minlength=batch * n)
    width = int(counts.max()) + 1
    column = torch.arange(num_synapses, device=device) - (torch.cumsum(counts, 0) - counts)[row]
    row_network = torch.arange(batch * n, device=device) // n
    targets = (row_network * slots + 3 * n).unsqueeze(1).expand(batch * n, width).contiguous()
    weights = torch.zeros(batch * n, width, dtype=dtype, device=device)
    targets[row, column] = slot
    weights[row, column] = weight.to(dtype)
    own = torch.arange(batch * n, device=device)
    targets[:, -1] = row_network * slots + n + own % n
    weights[:, -1] = d.reshape(-1).to(dtype)
    state = torch.zeros(batch, slots, dtype=dtype, device=device)
    state[:, :n] = -65.0
    state[:, n:2 * n] = (b * -65.0).to(dtype)
    return {"state": state, "targets": targets, "weights": weights, "excitatory": excitatory,
            "a": a, "b": b, "c": c.to(dtype)}


def _step_args(net, dt_ms, dtype=torch.float32, tensors=True):
    """Step constants of the split-Euler scheme; scalars as 0-dim tensors of the state dtype
    (the reference's fast path) or Python floats."""
    a, b = net["a"], net["b"]
    scalar = ((lambda x: torch.tensor(x, dtype=dtype, device=a.device)) if tensors
              else float)
    return {"half_step_ms": scalar(dt_ms / 2), "k1": scalar(0.04 * dt_ms / 2),
            "k2": scalar(1 + 5 * dt_ms / 2), "u_decay": (1 - a * dt_ms).to(dtype),
            "u_v_gain": (a * b * dt_ms).to(dtype), "v_reset": net["c"].to(dtype),
            "v_peak_mv": scalar(30.0)}


def verify_izhikevich(config: Config, device: str) -> list[dict]:
    from kernels.izhikevich import izhikevich_network_step_, naive_izhikevich_network_step_
    rows = []
    n, steps = config.raster_neurons, config.raster_steps
    net = build_network(1, n, min(100, n - 1), config.excitatory_weight,
                        config.inhibitory_weight, 0, device)
    gen = torch.Generator(device=device).manual_seed(1)
    std = torch.where(net["excitatory"], config.noise_mv, 0.4 * config.noise_mv)
    drives = 140.0 + std / math.sqrt(config.dt_ms) * torch.randn(steps, 1, n, generator=gen,
                                                                   device=device)
    rasters = []
    for step in (izhikevich_network_step_, naive_izhikevich_network_step_):
        state = net["state"].clone()
        spikes = torch.empty(1, n, dtype=torch.bool, device=device)
        scratch = [torch.empty(1, n, device=device) for _ in range(2)]
        raster = []
        for drive in drives:
            step(state, state[:, :n], state[:, n:2 * n], None, drive, spikes, *scratch,
                 net["targets"], net["weights"], **_step_args(net, config.dt_ms))
            raster.append(spikes.clone())
        rasters.append(torch.stack(raster))
    differs = (rasters[0] != rasters[1]).flatten(1).any(1)
    first = int(differs.nonzero()[0]) if bool(differs.any()) else steps
    rows.append({"kernel": "izhikevich", "dtype": "float32",
                 "quantity": "first_raster_divergence_step",
                 "rel_rms_error": float(first), "bound": float(steps),
                 "pass": bool(first == steps)})
    rows.append({"kernel": "izhikevich", "dtype": "float32", "quantity": "reference_spikes",
                 "rel_rms_error": float(rasters[1].sum()), "bound": float("nan"),
                 "pass": bool(rasters[1].sum() > 0)})
    return rows


def verify_izhikevich_bf16(config: Config, device: str) -> list[dict]:
    from kernels.izhikevich import izhikevich_network_step_, naive_izhikevich_network_step_
    rows = []
    n = config.raster_neurons
    net = build_network(1, n, min(100, n - 1), config.excitatory_weight,
                        config.inhibitory_weight, 0, device)
    gen = torch.Generator(device=device).manual_seed(2)
    drive = 140.0 + 5.0 * torch.randn(1, n, generator=gen, device=device)
    # bf16 state: one step from the same random state, Triton (fp32 arithmetic, one final
    # rounding) vs the reference's bf16 op-by-op arithmetic: within a few bf16 ulps.
    state0 = net["state"].clone()
    state0[:, :n] = -70 + 20 * torch.rand(1, n, generator=gen, device=device)
    results = []
    for step in (izhikevich_network_step_, naive_izhikevich_network_step_):
        state = state0.to(torch.bfloat16)
        spikes = torch.empty(1, n, dtype=torch.bool, device=device)
        scratch = [torch.empty(1, n, device=device, dtype=torch.bfloat16) for _ in range(2)]
        step(state, state[:, :n], state[:, n:2 * n], None, drive.to(torch.bfloat16), spikes,
             *scratch, net["targets"], net["weights"].to(torch.bfloat16),
             **_step_args(net, config.dt_ms, torch.bfloat16))
        results.append(state[:, :2 * n].float())
    err = _relative_rms(results[0], results[1])
    rows.append({"kernel": "izhikevich", "dtype": "bfloat16", "quantity": "v_u_one_step",
                 "rel_rms_error": err, "bound": 2e-2, "pass": bool(err <= 2e-2)})
    return rows


# ----------------------------------------------------------------------------- timings
