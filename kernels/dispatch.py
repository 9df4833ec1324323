"""Choose between the naive torch path and the Triton path of a kernel.

Rule (issue 7): the Triton path runs when every tensor argument is on a CUDA device and
``triton`` imports; otherwise the naive torch path (``kernels/<op>/naive.py``) runs.

The environment variable ``NEUROBRIDGE_KERNELS`` overrides the rule, read at each call
(never at import):

* ``auto`` (default, also when unset or empty) -- the rule above;
* ``naive`` -- always the torch reference (useful to bisect a suspected kernel bug);
* ``triton`` -- always Triton; on CPU tensors this needs ``TRITON_INTERPRET=1`` set before
  the Triton module is first imported (the interpreter; slow, for tests only).

The ops whose Triton kernels compute in float32 (gla, izhikevich, three_factor) send
float64 inputs to the torch reference in every mode (``use_triton(..., float32_kernel=True)``);
glm_terms and hmm_scan run float64 in
Triton.

Importing this module imports neither triton nor CUDA and changes no global state.
"""
from __future__ import annotations

import functools
import importlib
import os

import torch

ENV_VAR = "NEUROBRIDGE_KERNELS"
MODES = ("auto", "naive", "triton")


def kernel_mode() -> str:
    """The mode named by ``NEUROBRIDGE_KERNELS`` (``auto`` when unset)."""
    mode = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{ENV_VAR}={os.environ.get(ENV_VAR)!r} is not a kernel mode; "
                         f"allowed: {', '.join(MODES)}")
    return mode


@functools.cache
def triton_available() -> bool:
    """Whether ``import triton`` succeeds (checked once, lazily)."""
    try:
        importlib.import_module("triton")
    except Exception:  # noqa: BLE001 - ImportError, or a broken install raising anything else
        return False
    return True


def interpreter_enabled() -> bool:
    """Whether Triton kernels run through the CPU interpreter (``TRITON_INTERPRET=1``).

    Triton's own reading of the variable when triton imports (``triton.knobs``), so that the
    two never disagree (Triton takes ``y`` as on and ``" 1"`` as off: a looser reading here
    sent CPU tensors to compiled kernels, "0 active drivers"); else the same rule by hand."""
    if triton_available():
        try:
            from triton import knobs
            return bool(knobs.runtime.interpret)
        except (ImportError, AttributeError):  # a triton without knobs (< 3.4)
            pass
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on", "y")


def check_same_device(**tensors) -> None:
    """ValueError naming the first tensor argument on another device than the first tensor
    argument (None and non-tensors skipped): a Triton kernel handed a host pointer beside
    device pointers would crash or read garbage instead of naming the argument. A 0-dim CPU
    tensor is skipped too: torch ops take it beside tensors on any device (a CPU scalar), and
    the Triton paths read it on the host (``izhikevich.triton._scalar_arg``) or move it."""
    named = [(name, t) for name, t in tensors.items() if isinstance(t, torch.Tensor)
             and not (t.dim() == 0 and t.device.type == "cpu")]
    for name, tensor in named[1:]:
        if tensor.device != named[0][1].device:
            raise ValueError(f"{name} is on {tensor.device} but {named[0][0]} is on "
                             f"{named[0][1].device}; every tensor argument must be on one device")


def use_triton(*tensors: torch.Tensor | None, float32_kernel: bool = False) -> bool:
    """True when the Triton path should run for these tensor arguments (``None`` ignored).

    ``float32_kernel``: the op's Triton kernels compute in float32 (gla, izhikevich,
    three_factor), so a float64 first tensor takes the torch reference in every mode (the
    mode is still checked)."""
    mode = kernel_mode()
    present = [t for t in tensors if t is not None]
    if mode == "naive" or (float32_kernel and present and present[0].dtype == torch.float64):
        return False
    # a non-tensor argument is never "on CUDA": the path taken then reports it by name
    on_cuda = bool(present) and all(isinstance(t, torch.Tensor) and t.is_cuda for t in present)
    if mode == "auto":
        return on_cuda and triton_available()
    if not triton_available():
        raise RuntimeError(f"{ENV_VAR}=triton but triton does not import; install triton or "
                           f"set {ENV_VAR}=auto")
    if not on_cuda and not interpreter_enabled():
        raise RuntimeError(f"{ENV_VAR}=triton with CPU tensors needs TRITON_INTERPRET=1 "
                           "(the Triton interpreter); or move the tensors to CUDA")
    return True


POISON_VAR = "NEUROBRIDGE_KERNELS_POISON"


def new_buffer(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """An uninitialised output/scratch buffer for a kernel.

    With ``NEUROBRIDGE_KERNELS_POISON=1`` (set by the kernel tests) it is filled with NaN
    (with -1 for integer dtypes) so that any entry a kernel forgets to write shows up.
    """
    buffer = torch.empty(shape, dtype=dtype, device=device)
    if os.environ.get(POISON_VAR, "0") == "1":
        buffer.fill_(float("nan") if buffer.is_floating_point() else -1)
    return buffer
