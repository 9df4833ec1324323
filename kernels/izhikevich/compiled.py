"""Compiled CPU engine of the Izhikevich reservoir: the whole loop of steps in C.

The eager step (``naive.py``) is ~20 torch ops per step; on one CPU thread its floor at
32 x 1k neurons is ~330 us per step (Gaussian noise ~120 us, element-wise ops ~90 us, the
rest threshold, delivery and per-op overhead). This engine runs many steps per call in C:
per network and step one pass draws the noise, one pass updates v and u (same operations
and order as ``naive.py``, each rounded once: built with ``-ffp-contract=off``, no
fast-math), one scans the threshold, then delivery walks the spiking neurons' table rows
(ascending neuron, then column: the reference's summation order), then the reset and a
finiteness check of v and u.

Consequences (tested): given the same drive (explicit noise), a run is bit-identical to
the eager engine in float32 and float64. With its own noise it draws
``z ~ N(0, 1)`` i.i.d. per (step, network, neuron) from a ziggurat (Marsaglia & Tsang 2000,
J. Stat. Softw. 5(8), 256 layers) on xoshiro256** bits (Blackman & Vigna 2018) seeded by
splitmix64 from a 64-bit seed: exact N(0, 1) (up to double rounding), deterministic for a
seed, but a different stream from torch's ``normal_``, so rasters differ from the eager
engine's (same statistics). Noise order: step, then network, then neuron, drawn in groups
of 4 (for N not a multiple of 4 the rest of a network's last group is discarded). Optional:
the per-step spike traces r = r d + s, recorded in the loop (bit-identical to the eager
engine's). Measured (2-core dev machine, 1 thread, float32, 32 x 1k, K = 100): ~145 us per
step, ~45% of it the ziggurat (~2.2 ns per value), ~25% delivery.

Build: the C source (``_compiled_source.py``) is compiled once per machine with the system
C compiler (``$CC``, else ``gcc``, else ``cc``; ``-O3 -march=native`` when accepted) into a
cache directory (``$NEUROBRIDGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/neurobridge``, else
``~/.cache/neurobridge``; if it cannot be written, a fresh private directory in the system
temporary directory), one library per dtype, keyed by a hash of source,
flags, compiler and CPU; a later process loads the cached library (~1 ms). The loop runs on
one thread whatever ``torch.get_num_threads()`` is.
Without a compiler, ``load_library`` raises ``CompilerNotFoundError``.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from kernels.izhikevich._compiled_source import C_SOURCE

__all__ = ["CompiledRun", "CompilerNotFoundError", "cache_directory", "find_compiler", "load_library",
           "rng_state", "standard_normal"]

BASE_FLAGS = ("-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-strict-aliasing", "-std=c99",
              "-Wno-psabi")
VARIANTS = {torch.float32: "f32", torch.float64: "f64"}  # one library per real type
ARCH_FLAGS = ("-march=native",)
LANES = 4  # the C source's LANES: noise is drawn in groups of this many
# the spike buffer holds at least this many indices (a call returns early when fewer than
# B * N slots are left, and the loop calls again: any capacity >= B * N is correct)
MIN_SPIKE_CAPACITY = 1 << 20
SPIKE_CAPACITY_PER_NEURON = 4  # ... and at least this many per neuron of the batch


class CompilerNotFoundError(RuntimeError):
    """No C compiler to build the compiled engine with."""


def find_compiler() -> str | None:
    """Path of ``$CC`` (if set), else of ``gcc``, else of ``cc``; None when none is found."""
    names = [os.environ["CC"]] if os.environ.get("CC") else ["gcc", "cc"]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_directory() -> Path:
    """``$NEUROBRIDGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/neurobridge``, else ``~/.cache/neurobridge``."""
    if os.environ.get("NEUROBRIDGE_CACHE_DIR"):
        return Path(os.environ["NEUROBRIDGE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "neurobridge"


def _cpu_name() -> str:
    """The CPU's model and feature flags (``-march=native`` builds differ between CPUs)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    model = next((line for line in lines if line.startswith("model name")), "")
    flags = next((line for line in lines if line.startswith(("flags", "Features"))), "")
    return f"{model}\n{flags}"


def _library_path(compiler: str, directory: Path, variant: str) -> Path:
    key = hashlib.sha256("\0".join((C_SOURCE, compiler, *BASE_FLAGS, *ARCH_FLAGS, platform.machine(),
                                    _cpu_name())).encode()).hexdigest()[:20]
    return directory / f"izhikevich_{variant}_{key}.so"


def _build(compiler: str, library: Path, variant: str) -> None:
    """Compile the ``variant`` ("f32" or "f64") library to ``library`` (atomic rename)."""
    with tempfile.TemporaryDirectory(dir=library.parent, prefix="build_") as build:
        source = Path(build) / "izhikevich.c"
        source.write_text(C_SOURCE)
        output = Path(build) / library.name
        errors = []
        for arch in (ARCH_FLAGS, ()):  # -march=native is not accepted by every compiler
            command = [compiler, *BASE_FLAGS, *arch, f"-DNB_{variant.upper()}", str(source),
                       "-o", str(output), "-lm"]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode == 0:
                os.replace(output, library)  # atomic: concurrent builders agree
                return
            errors.append(f"$ {' '.join(command)}\n{done.stderr.strip()}")
    raise RuntimeError("building the compiled Izhikevich engine failed:\n" + "\n".join(errors))


def _writable_directory(directory: Path) -> Path:
    """``directory`` if it can be created and written, else a fresh private temporary
    directory (never a predictable shared path another user could plant a library in)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if os.access(directory, os.W_OK | os.X_OK):
            return directory
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="neurobridge-"))


def _load(path: str, variant: str) -> ctypes.CDLL:  # once per library: _library_for caches
    library = ctypes.CDLL(path)
    pointer, i64, u64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64
    library.nb_ziggurat_init.restype = ctypes.c_double
    library.nb_rng_words.restype = i64
    library.nb_rng_seed.argtypes = [u64, pointer]
    library.nb_fill_normal.argtypes = [pointer, pointer, i64]
    real = ctypes.c_float if variant == "f32" else ctypes.c_double
    function = library.nb_run
    function.restype = i64
    function.argtypes = [i64, i64, i64, i64, pointer, pointer, i64, pointer, pointer, pointer, pointer,
                         real, real, real, pointer, pointer, pointer, real, i64, real,
                         pointer, i64, pointer, pointer, i64, pointer, i64, pointer,
                         pointer, real, pointer, i64]
    closure = library.nb_ziggurat_init()
    if abs(closure - 1.0) > 1e-9:
        raise RuntimeError(f"ziggurat tables do not close (f(X[255]) + V/X[255] = {closure!r}, expected 1)")
    return library


@functools.cache
def _library_for(compiler: str, directory: Path, variant: str) -> ctypes.CDLL:
    """Build (unless cached) and load; a cached file that does not load (truncated, or
    built elsewhere) is rebuilt once. Cached per process: the key hashes /proc/cpuinfo."""
    library = _library_path(compiler, _writable_directory(directory), variant)
    if not library.exists():
        _build(compiler, library, variant)
    try:
        return _load(str(library), variant)
    except OSError:
        library.unlink(missing_ok=True)
        _build(compiler, library, variant)
        try:
            return _load(str(library), variant)
        except OSError as error:
            raise RuntimeError(f"the compiled Izhikevich engine {library} was built but does not "
                               f"load: {error}") from error


def load_library(dtype: torch.dtype = torch.float32) -> ctypes.CDLL:
    """The compiled engine's library for ``dtype`` (float32 or float64; the generator is the
    same in both): built on first use per machine, then loaded from the cache."""
    if dtype not in VARIANTS:
        raise ValueError(f"dtype={dtype}; the compiled engine supports torch.float32 and torch.float64")
    compiler = find_compiler()
    if compiler is None:
        raise CompilerNotFoundError(
            "engine='compiled' needs a C compiler to build its loop (looked for "
            + (f"$CC={os.environ['CC']!r}" if os.environ.get("CC") else "'gcc' and 'cc'")
            + " on PATH, found none); install gcc or use engine='eager'")
    return _library_for(compiler, cache_directory(), VARIANTS[dtype])


def rng_state(seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The engine's generator state for ``seed`` (int, taken modulo 2**64): xoshiro256**
    streams as uint64 words stored in an int64 tensor (``nb_rng_words`` of them). Both
    libraries seed alike; ``dtype`` picks the one to load (the run's, so a float64 run
    does not also build the float32 library)."""
    library = load_library(dtype)
    state = torch.zeros(library.nb_rng_words(), dtype=torch.int64)
    library.nb_rng_seed(ctypes.c_uint64(int(seed) % 2**64), state.data_ptr())
    return state


def _padded(count: int) -> int:
    return -(-count // LANES) * LANES


def standard_normal(state: Tensor, count: int) -> Tensor:
    """``count`` float64 N(0, 1) draws of the engine's ziggurat, advancing ``state``
    (drawn in groups of 4: a count that is not a multiple of 4 discards the rest)."""
    library = load_library()
    _check_rng(state, library)
    out = torch.empty(_padded(count), dtype=torch.float64)
    library.nb_fill_normal(state.data_ptr(), out.data_ptr(), count)
    return out[:count]


def _check_rng(rng: Tensor | None, library) -> None:
    words = library.nb_rng_words()
    if rng is None or rng.dtype != torch.int64 or rng.numel() != words or not rng.is_contiguous():
        got = None if rng is None else f"{rng.dtype} [{rng.numel()}]"
        raise ValueError(f"rng={got}; expected the int64 [{words}] generator state from rng_state(seed)")


def _trace_buffers_fit(trace: Tensor, traces: Tensor | None, batch: int, steps: int, n: int, dtype) -> bool:
    return (tuple(trace.shape) == (batch, n) and trace.dtype == dtype and trace.is_contiguous()
            and traces is not None and traces.dim() == 3 and traces.shape[0] == batch
            and traces.shape[1] >= steps and traces.shape[2] == n and traces.dtype == dtype
            and traces.stride(2) == 1 and traces.stride(1) == n)


class CompiledRun:
    """The engine's loop bound to one state buffer [B, 3N+1] (layout of ``naive.py``).

    ``u_decay``, ``u_v_gain``, ``v_reset``: [B or 1, N]; ``targets``: [B*N, W] int64 flat
    slots of ``state.view(-1)``, or with ``shared=True`` network 0's [N, W] rows (network b
    adds b (3N + 1)); ``weights``: [B*N, W]. Scalars are Python floats (rounded to the state
    dtype, as the eager step's 0-dim tensors are). ``synapse_decay`` None: delta synapses.
    """

    def __init__(self, state: Tensor, half_step_ms: float, k1: float, k2: float, u_decay: Tensor,
                 u_v_gain: Tensor, v_reset: Tensor, v_peak_mv: float, synapse_decay: float | None,
                 targets: Tensor, weights: Tensor, shared: bool, spike_capacity: int | None = None):
        if state.device.type != "cpu" or state.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"the compiled engine runs float32/float64 CPU tensors; got {state.dtype} on "
                             f"{state.device}")
        batch, slots = state.shape
        n = (slots - 1) // 3
        if not state.is_contiguous() or slots != 3 * n + 1:
            raise ValueError(f"state has shape {list(state.shape)}; expected a contiguous [B, 3N+1] buffer")
        # the C loop dereferences every table entry: check devices, shapes and target range
        named = {"u_decay": u_decay, "u_v_gain": u_v_gain, "v_reset": v_reset, "targets": targets,
                 "weights": weights}
        for name, tensor in named.items():
            if tensor.device.type != "cpu":
                raise ValueError(f"{name} is on {tensor.device}; the compiled engine needs CPU tensors")
        for name in ("u_decay", "u_v_gain", "v_reset"):
            shape = tuple(named[name].shape)
            if len(shape) > 2 or shape[-1:] != (n,) or (len(shape) == 2 and shape[0] not in (1, batch)):
                raise ValueError(f"{name} has shape {list(shape)}; expected [{batch} or 1, {n}] or [{n}]")
        self.library = load_library(state.dtype)
        self.function = self.library.nb_run
        self.state, self.batch, self.n, self.dtype = state, batch, n, state.dtype
        per_neuron = lambda x: x.to(self.dtype).expand(batch, n).contiguous()
        self.u_decay, self.u_v_gain, self.v_reset = (per_neuron(x) for x in (u_decay, u_v_gain, v_reset))
        self.scalars = (half_step_ms, k1, k2, v_peak_mv, 0.0 if synapse_decay is None else synapse_decay)
        self.exponential = synapse_decay is not None
        rows, slots_reached = (n, slots) if shared else (batch * n, batch * slots)
        if targets.dtype != torch.int64 or targets.dim() != 2 or targets.shape[0] != rows:
            raise ValueError(f"targets has dtype {targets.dtype} and shape {list(targets.shape)}; expected "
                             f"int64 [{rows}, W]")
        if targets.numel() and not (0 <= int(targets.min()) and int(targets.max()) < slots_reached):
            raise ValueError(f"targets hold slots {int(targets.min())}..{int(targets.max())}; allowed "
                             f"0..{slots_reached - 1} (flat slots of the state buffer)")
        if tuple(weights.shape) != (batch * n, targets.shape[1]):
            raise ValueError(f"weights has shape {list(weights.shape)}; expected [{batch * n}, {targets.shape[1]}]")
        self.targets, self.weights = targets.contiguous(), weights.to(self.dtype).contiguous()
        self.shared, self.width = bool(shared), targets.shape[1]
        capacity = (max(SPIKE_CAPACITY_PER_NEURON * batch * n, MIN_SPIKE_CAPACITY) if spike_capacity is None
                    else max(spike_capacity, batch * n))
        self.spike_buffer = torch.empty(capacity, dtype=torch.int64)
        self.scratch = torch.empty(n, dtype=self.dtype)
        self.normal = torch.empty(_padded(n), dtype=torch.float64)
        self.status = torch.zeros(6, dtype=torch.int64)

    def run(self, num_steps: int, drive: Tensor | None, drive_complete: bool, noise_scale: Tensor | None,
            rng: Tensor | None, first_step: int = 0, trace: Tensor | None = None, trace_decay: float = 0.0,
            traces: Tensor | None = None) -> tuple[list[Tensor], Tensor, tuple | None]:
        """Advance ``num_steps`` steps in place.

        ``drive`` [T, B, N]: with ``drive_complete`` the whole external current + 140 of each
        step (explicit noise, as ``naive.py`` receives it); else the input projection, to
        which the engine adds its own noise ``z * noise_scale`` and then 140
        (``(noise + input) + 140``, the eager order). ``drive`` None: no input. ``noise_scale``
        [B or 1, N] (std of the noise current) with ``rng`` (``rng_state``), or None: no
        noise. ``trace`` [B, N] (contiguous, the state dtype): spike traces advanced in
        place, ``trace * trace_decay + spikes`` each step, and copied to ``traces`` [B, T', N]
        (steps 0 .. num_steps - 1 of this call at ``traces[:, :num_steps]``; T' >= num_steps).
        Returns (chunks of flat spike indices b * N + j, ascending within a step;
        spike counts per step [T]; None, or (step, network, neuron, is_v) of the first
        non-finite v or u, after which the run stopped).
        """
        batch, n = self.batch, self.n
        if drive is not None:
            if tuple(drive.shape) != (num_steps, batch, n):
                raise ValueError(f"drive has shape {list(drive.shape)}; expected [{num_steps}, {batch}, {n}]")
            drive = drive.to(self.dtype).contiguous()
        if noise_scale is not None:
            noise_scale = noise_scale.to(self.dtype).expand(batch, n).contiguous()
            _check_rng(rng, self.library)
        if trace is not None and not _trace_buffers_fit(trace, traces, batch, num_steps, n, self.dtype):
            raise ValueError(f"trace [{batch}, {n}] and traces [{batch}, >= {num_steps}, {n}] of "
                             f"{self.dtype}, contiguous rows, are needed together")
        counts = torch.zeros(num_steps, dtype=torch.int64)
        chunks: list[Tensor] = []
        half_step, k1, k2, v_peak, synapse_decay = self.scalars
        done = 0
        while done < num_steps:
            offset = done * batch * n * drive.element_size() if drive is not None else 0
            code = self.function(
                num_steps - done, batch, n, self.width, self.state.data_ptr(),
                None if drive is None else drive.data_ptr() + offset, int(drive_complete),
                None if noise_scale is None else noise_scale.data_ptr(), None if rng is None else rng.data_ptr(),
                self.normal.data_ptr(), self.scratch.data_ptr(), half_step, k1, k2, self.u_decay.data_ptr(), self.u_v_gain.data_ptr(),
                self.v_reset.data_ptr(), v_peak, int(self.exponential), synapse_decay, self.targets.data_ptr(),
                int(self.shared), self.weights.data_ptr(), self.spike_buffer.data_ptr(), self.spike_buffer.numel(),
                counts.data_ptr() + done * 8, first_step + done, self.status.data_ptr(),
                None if trace is None else trace.data_ptr(), trace_decay,
                None if trace is None else traces.data_ptr() + done * n * traces.element_size(),
                0 if trace is None else traces.stride(0))
            steps, written = int(self.status[0]), int(self.status[1])
            chunks.append(self.spike_buffer[:written].clone())
            done += steps
            if code:
                return chunks, counts[:done], tuple(int(x) for x in self.status[2:6])
        return chunks, counts, None
