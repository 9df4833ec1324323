"""Static checks on the Triton sources, and the dispatch switch."""
import ast
import pathlib
import subprocess
import sys

import pytest
import torch

from kernels import dispatch

KERNEL_FILES = sorted(pathlib.Path(__file__).resolve().parents[2].glob("kernels/*/triton.py"))


def _range_loop_variables_with_to(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every ``name.to(...)`` where ``name`` is a ``for`` variable over
    ``range``/``tl.range``/``tl.static_range`` (fails in the Triton interpreter; use tl.cast)."""
    found = []
    for loop in ast.walk(tree):
        if not isinstance(loop, ast.For) or not isinstance(loop.iter, ast.Call):
            continue
        func = loop.iter.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name not in ("range", "static_range"):
            continue
        targets = {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)}
        for node in ast.walk(loop):
            if (isinstance(node, ast.Attribute) and node.attr == "to"
                    and isinstance(node.value, ast.Name) and node.value.id in targets):
                found.append((node.lineno, node.value.id))
    return found


def test_kernel_files_found():
    names = {p.parent.name for p in KERNEL_FILES}
    assert {"gla", "three_factor", "izhikevich"} <= names


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.parent.name)
def test_no_to_on_range_loop_variables(path):
    offenders = _range_loop_variables_with_to(ast.parse(path.read_text()))
    assert not offenders, f"{path}: .to( on a range loop variable at {offenders}; use tl.cast"


def test_lint_catches_the_pattern():
    bad = "def k(n):\n    for i in range(n):\n        x = i.to(tl.int64)\n"
    assert _range_loop_variables_with_to(ast.parse(bad)) == [(3, "i")]


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.parent.name)
def test_no_autotune_in_kernels(path):
    # @triton.autotune fails under the interpreter; kernels use one fixed configuration.
    assert "autotune" not in path.read_text()


def test_mode_from_environment(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "naive")
    assert dispatch.kernel_mode() == "naive" and not dispatch.use_triton(torch.zeros(1))
    monkeypatch.setenv(dispatch.ENV_VAR, "auto")
    assert not dispatch.use_triton(torch.zeros(1))  # CPU tensors -> reference
    monkeypatch.delenv(dispatch.ENV_VAR)
    assert dispatch.kernel_mode() == "auto"
    monkeypatch.setenv(dispatch.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="NEUROBRIDGE_KERNELS='fast'.*auto, naive, triton"):
        dispatch.kernel_mode()


def test_forced_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        dispatch.use_triton(torch.zeros(1))


@pytest.mark.parametrize("value, interprets", [(" 1", False), ("y", True), ("1", True), ("0", False)])
def test_the_interpreter_switch_is_read_as_triton_reads_it(monkeypatch, value, interprets):
    # Triton takes TRITON_INTERPRET=" 1" as off and "y" as on; a stripped/shorter reading
    # here sent CPU tensors to compiled kernels (" 1": "0 active drivers" from deep inside
    # triton) or refused a working interpreter ("y": "needs TRITON_INTERPRET=1").
    from triton import knobs

    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert bool(knobs.runtime.interpret) == interprets
    assert dispatch.interpreter_enabled() == interprets
    if interprets:
        assert dispatch.use_triton(torch.zeros(1))
    else:
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            dispatch.use_triton(torch.zeros(1))


def test_import_is_light_and_side_effect_free():
    code = ("import os, sys; before = dict(os.environ); import kernels.gla, "
            "kernels.three_factor, kernels.izhikevich, kernels.dispatch; "
            "assert 'triton' not in sys.modules, 'triton imported'; "
            "assert dict(os.environ) == before, 'environment changed'")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_an_invalid_mode_is_an_error_for_float64_too(monkeypatch):
    # float64 always takes the reference, but a misspelt NEUROBRIDGE_KERNELS must still be
    # reported (as for float32), not silently ignored
    from kernels.gla import chunk_gla
    from kernels.three_factor import three_factor_step

    monkeypatch.setenv(dispatch.ENV_VAR, "navie")
    x = torch.zeros(1, 3, 1, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="NEUROBRIDGE_KERNELS='navie'"):
        chunk_gla(x, x, x, None)
    w, e = torch.zeros(1, 2, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)
    y = torch.zeros(1, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="NEUROBRIDGE_KERNELS='navie'"):
        three_factor_step(w, w, e, e, y, y, 0.1, 0.5, True)
    # and the reservoir's Stepper, which applies the same rule once per simulation
    from neuro.reservoir import make_reservoir, simulate

    params, state = make_reservoir(10, 0, in_degree=2, dtype=torch.float64)
    with pytest.raises(ValueError, match="NEUROBRIDGE_KERNELS='navie'"):
        simulate(params, state, None, 0.5, num_steps=2, seed=0)
