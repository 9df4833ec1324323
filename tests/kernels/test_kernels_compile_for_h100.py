"""Every Triton kernel launch the CPU tests make also compiles for an H100 (sm_90).

The interpreter (``TRITON_INTERPRET=1``) runs kernel bodies as Python: it accepts code that
the real compiler rejects (e.g. a name bound inside one ``if`` and used in another, which
cost a GPU session once). Here each launch of a small public call is recorded (kernel,
argument types, constexpr values) and the same specialization goes through Triton's real
compiler for ``GPUTarget("cuda", 90, 32)``: front end, MLIR passes and ptxas, all of
which run on a CPU-only machine. Launch-time failures on a GPU (e.g. out of shared memory)
are not covered: those need the device check (``experiments/gpu_check.py``).
"""
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1",
    reason="records launches through the interpreter; on a GPU the kernels compile anyway")

ROOT = Path(__file__).resolve().parents[2]
POINTER_TYPES = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16",
                 torch.float64: "*fp64", torch.int32: "*i32", torch.int64: "*i64",
                 torch.bool: "*i1", torch.uint8: "*u8", torch.int8: "*i8"}


def _is_constexpr(parameter: inspect.Parameter) -> bool:
    return parameter.annotation in ("tl.constexpr", "constexpr") or (
        getattr(parameter.annotation, "__name__", "") == "constexpr")


def _scalar_type(value) -> str:
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -2 ** 31 <= value < 2 ** 31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"unexpected kernel argument {value!r}")


def _specialization(fn, args, kwargs):
    """(signature, constexprs) of one launch, in the form ``triton.compiler.ASTSource`` takes."""
    parameters = list(inspect.signature(fn).parameters.values())
    bound = dict(zip([p.name for p in parameters], args)) | kwargs
    signature, constexprs = {}, {}
    for index, parameter in enumerate(parameters):
        value = bound[parameter.name]
        if _is_constexpr(parameter) or value is None:
            signature[parameter.name] = "constexpr"
            constexprs[(index,)] = value
        elif isinstance(value, torch.Tensor):
            signature[parameter.name] = POINTER_TYPES[value.dtype]
        else:
            signature[parameter.name] = _scalar_type(value)
    return signature, constexprs


@pytest.fixture
def launches(monkeypatch):
    """Records {key: (module, function name, signature, constexprs)} of interpreted launches."""
    from triton.runtime.interpreter import InterpretedFunction

    recorded = {}
    original = InterpretedFunction.run

    def recording_run(self, *args, **kwargs):
        launch_kwargs = {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")}
        signature, constexprs = _specialization(self.fn, args, launch_kwargs)
        spec = (self.fn.__module__, self.fn.__name__, signature,
                [[index[0], value] for index, value in constexprs.items()])
        recorded.setdefault(json.dumps(spec), spec)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(InterpretedFunction, "run", recording_run)
    return recorded


def _compile_all(recorded) -> list[str]:
    """Compile each specialization for sm_90 in a fresh process without the interpreter
    (it patches ``triton.language`` in this one); returns the failures' messages."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "tests.kernels._compile_sm90"],
                            input=json.dumps(list(recorded.values())), capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _gla_calls():
    from kernels.gla import chunk_gla, fused_recurrent_gla

    gen = torch.Generator().manual_seed(0)
    for dtype, key_dim, value_dim in ((torch.float32, 64, 32), (torch.bfloat16, 128, 64),
                                      (torch.float16, 32, 32)):
        q, k, g = (torch.randn(1, 70, 2, key_dim, generator=gen) for _ in range(3))
        v = torch.randn(1, 70, 2, value_dim, generator=gen)
        g = torch.nn.functional.logsigmoid(g)
        h0 = torch.randn(1, 2, key_dim, value_dim, generator=gen)
        leaves = [x.to(dtype).requires_grad_() for x in (q, k, v, g)]
        out, final = chunk_gla(*leaves, initial_state=h0.requires_grad_(), output_final_state=True)
        (out.float().sum() + final.sum()).backward()
        chunk_gla(*(x.detach() for x in leaves))[0].float().sum()
        fused_recurrent_gla(*(x.detach() for x in leaves), initial_state=h0.detach(),
                            output_final_state=True)
        fused_recurrent_gla(*(x.detach() for x in leaves[:3]), None)


def _izhikevich_calls():
    from kernels.izhikevich import izhikevich_network_step_
    from tests.kernels.test_izhikevich_triton import _network, _run

    for synapse, dtype in (("delta", torch.float32), ("exponential", torch.bfloat16)):
        state, targets, weights, params = _network(2, 40, 5, synapse, dtype, seed=0)
        drives = 150.0 * torch.ones(3, 2, 40, dtype=dtype)
        decay = torch.tensor(0.9, dtype=dtype) if synapse == "exponential" else None
        _run(izhikevich_network_step_, state, targets, weights, params, drives, decay)


def _three_factor_calls():
    from kernels.three_factor import three_factor_step
    from tests.kernels.test_three_factor_triton import _inputs

    for dtype, online in ((torch.float32, True), (torch.float16, torch.tensor([True, False])),
                          (torch.bfloat16, False)):
        three_factor_step(*_inputs(2, 2, 40, dtype, seed=0), 0.05, 0.5, online)


def _glm_terms_calls():
    from kernels.glm_terms import glm_terms

    for dtype in (torch.float64, torch.float32):
        eta = torch.zeros(9, 6, 20, dtype=dtype)
        counts, resp = torch.ones(9, 20, dtype=dtype), torch.ones(9, 6, dtype=dtype)
        for link in ("exp", "softplus", "logistic"):
            glm_terms(eta, counts, None, link, per_bin=True)
            glm_terms(eta, counts, resp, link, derivatives=True, curvature_dtype=torch.float32)
            glm_terms(eta, counts, resp, link, delta=eta, step=0.5)


def _hmm_scan_calls():
    from kernels.hmm_scan import scaled_vecmat_scan

    for dtype in (torch.float64, torch.float32):
        scaled_vecmat_scan(torch.zeros(2, 3, dtype=dtype), torch.ones(2, 40, 3, 3, dtype=dtype))
    scaled_vecmat_scan(torch.zeros(2, 8, dtype=torch.float64),  # fewer lanes per program
                       torch.ones(2, 40, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize("calls", [_gla_calls, _izhikevich_calls, _three_factor_calls,
                                   _glm_terms_calls, _hmm_scan_calls],
                         ids=["gla", "izhikevich", "three_factor", "glm_terms", "hmm_scan"])
def test_every_launch_compiles_for_sm90(launches, calls):
    calls()
    assert launches, "no Triton launch was recorded: the calls did not reach the kernels"
    failures = _compile_all(launches)
    assert not failures, "\n\n".join(failures)
