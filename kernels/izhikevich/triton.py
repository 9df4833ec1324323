"""Izhikevich population step in Triton (same maths, layout and signature as ``naive.py``).

One step of B networks x N neurons is three launches over the state buffer
``state [B, 3N + 1] = [v | u | I_syn | sink]``:

1. ``_neuron_kernel`` (B*N threads): the split-Euler update of v and u, synaptic decay,
   threshold; writes v, u, I_syn and the spike flags. Arithmetic in float32 (float16 and
   bfloat16 states are rounded once, at the store), the reference's expressions in its
   order. Under the interpreter (CPU tests) every operation is rounded once, as in the
   reference (which uses no ``addcmul``: a fused multiply-add rounds once where a multiply
   and an add round twice), so the raster is the reference's bit for bit. On CUDA the
   kernel uses fused multiply-adds for ``v (k2 + k1 v) + hc`` and ``u u_decay + v u_v_gain``
   (what CUDA code generation does with such expressions; faster, and closer to the exact
   value), so the GPU raster departs from the reference after some steps;
   ``experiments/gpu_check.py`` reports the first step at which it does.
2. ``_deliver_kernel`` (a fixed grid of a few programs per SM): event-driven delivery
   from a spike queue. Step 1 also appends the flat index of every neuron that fired to
   ``queue`` (one atomic reservation per block of neurons, then a prefix sum for the
   positions), so delivery reads the table rows of the spiking neurons only and its cost
   does not grow with N at a fixed number of spikes. The programs stride over the queue,
   ``ROWS_PER_ITERATION`` rows at a time, and add the non-zero weights into the state with
   atomics (this also applies the ``u += d`` reset, which is the table's last column;
   zero-weight padding, which the reference adds into the sink slot, is skipped: x + 0 == x).
   Atomic float addition makes the order in which several spikes arriving at one neuron
   are summed unspecified on a GPU (rounding-level differences from the reference). Under
   the interpreter one program walks the queue, which is then in ascending order, so the
   sums are the reference's.
3. ``_reset_kernel``: v <- c where a spike occurred (after delivery, as in the reference).

No host synchronisation happens inside a step, so a loop of steps can be captured in a
CUDA graph (:class:`CudaGraphStepper`): at small N the three launches, not the work, bound
the step rate, and graph replay removes that overhead. ``izhikevich_network_step_`` also
returns the flat spike indices (as the reference does), which needs one ``nonzero`` (a
host sync); the graph stepper skips it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.izhikevich import check_neuron_parameters

__all__ = ["CudaGraphStepper", "izhikevich_step_no_sync_", "triton_izhikevich_network_step_"]

BLOCK_NEURONS = 1024
ROWS_PER_ITERATION = 8
PROGRAMS_PER_SM = 4


@triton.jit
def _scalar(x, IS_PTR: tl.constexpr):
    if IS_PTR:
        return tl.load(x).to(tl.float32)
    else:
        return x


@triton.jit
def _neuron_kernel(state, drive, spikes, queue, queue_length, u_decay, u_v_gain, half_step, k1,
                   k2, v_peak, syn_decay, N, decay_batch_stride, gain_batch_stride,
                   HAS_SYN: tl.constexpr,
                   H_PTR: tl.constexpr, K1_PTR: tl.constexpr, K2_PTR: tl.constexpr,
                   VP_PTR: tl.constexpr, SD_PTR: tl.constexpr, FUSED: tl.constexpr,
                   BLOCK: tl.constexpr):
    i_b = tl.program_id(1)
    o_n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = o_n < N
    row = state + i_b * (3 * N + 1)
    v = tl.load(row + o_n, mask=m, other=0.0).to(tl.float32)
    u = tl.load(row + N + o_n, mask=m, other=0.0).to(tl.float32)
    g = tl.load(drive + i_b * N + o_n, mask=m, other=0.0).to(tl.float32)
    h = _scalar(half_step, H_PTR)
    c1 = _scalar(k1, K1_PTR)
    c2 = _scalar(k2, K2_PTR)
    if HAS_SYN:
        i_syn = tl.load(row + 2 * N + o_n, mask=m, other=0.0).to(tl.float32)
        hc = ((g + i_syn) - u) * h
    else:
        hc = (g - u) * h
    a = tl.load(u_decay + i_b * decay_batch_stride + o_n, mask=m, other=0.0).to(tl.float32)
    ab = tl.load(u_v_gain + i_b * gain_batch_stride + o_n, mask=m, other=0.0).to(tl.float32)
    if FUSED:  # one rounding per multiply-add
        for _ in tl.static_range(2):
            t = tl.fma(v, c1, c2)
            v = tl.fma(v, t, hc)
        u = tl.fma(v, ab, u * a)
    else:  # one rounding per operation
        for _ in tl.static_range(2):
            t = v * c1
            t = t + c2
            t = t * v
            v = t + hc
        t = v * ab
        u = u * a
        u = u + t
    if HAS_SYN:
        i_syn = i_syn * _scalar(syn_decay, SD_PTR)
        tl.store(row + 2 * N + o_n, i_syn.to(state.dtype.element_ty), mask=m)
    fired = v >= _scalar(v_peak, VP_PTR)
    tl.store(row + o_n, v.to(state.dtype.element_ty), mask=m)
    tl.store(row + N + o_n, u.to(state.dtype.element_ty), mask=m)
    tl.store(spikes + i_b * N + o_n, fired.to(tl.uint8), mask=m)
    fired_int = (fired & m).to(tl.int32)
    num_fired = tl.sum(fired_int, axis=0)
    if num_fired > 0:  # reserve num_fired queue slots, then write the indices in order
        base = tl.atomic_add(queue_length, num_fired)
        position = base + tl.cumsum(fired_int, axis=0) - 1
        tl.store(queue + position, i_b * N + o_n, mask=fired & m)


@triton.jit
def _deliver_kernel(state, queue, queue_length, targets, weights, COLS: tl.constexpr,
                    BC: tl.constexpr, ROWS: tl.constexpr):
    length = tl.load(queue_length)
    o_c = tl.arange(0, BC)
    for start in range(tl.program_id(0) * ROWS, length, tl.num_programs(0) * ROWS):
        o_q = start + tl.arange(0, ROWS)
        m_q = o_q < length
        row = tl.load(queue + o_q, mask=m_q, other=0)
        mask = m_q[:, None] & (o_c < COLS)[None, :]
        offs = row.to(tl.int64)[:, None] * COLS + o_c[None, :]
        slot = tl.load(targets + offs, mask=mask, other=0)
        w = tl.load(weights + offs, mask=mask, other=0.0)
        # Padding entries (weight 0, all aimed at the one sink slot) are skipped: adding 0
        # changes nothing, and thousands of atomics on one address per step serialise.
        tl.atomic_add(state + slot, w, mask=mask & (w != 0), sem="relaxed")


@triton.jit
def _reset_kernel(state, spikes, v_reset, N, param_batch_stride, BLOCK: tl.constexpr):
    i_b = tl.program_id(1)
    o_n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = o_n < N
    fired = tl.load(spikes + i_b * N + o_n, mask=m, other=0) != 0
    c = tl.load(v_reset + i_b * param_batch_stride + o_n, mask=m & fired, other=0.0)
    tl.store(state + i_b * (3 * N + 1) + o_n, c.to(state.dtype.element_ty), mask=m & fired)


def _scalar_arg(x, device: torch.device):
    """(argument, is_pointer): same-device tensors are read in the kernel (no host sync)."""
    if isinstance(x, torch.Tensor):
        if x.device == device:
            return x, True
        return float(x.item()), False
    return float(x), False


def _param_view(x: torch.Tensor, num_neurons: int) -> tuple[torch.Tensor, int]:
    """A [B or 1, N] parameter (checked: ``check_neuron_parameters``) as a contiguous tensor
    and its batch stride (0: shared)."""
    if x.shape[0] == 1 or x.stride(0) == 0:
        return x[:1].contiguous(), 0
    return x.contiguous(), num_neurons


def izhikevich_step_no_sync_(state, drive, spikes, targets, weights, half_step_ms, k1, k2,
                             u_decay, u_v_gain, v_reset, v_peak_mv, synapse_decay=None) -> None:
    """One in-place step without returning spike indices (no host sync; graph-capturable).

    state [B, 3N+1] contiguous, drive [B, N], spikes [B, N] bool (written), targets/weights
    [B*N, K+1]; parameters as in ``naive.izhikevich_network_step_``.
    """
    batch, num_neurons = drive.shape
    device = state.device
    for name, written in (("state", state), ("spikes", spikes)):  # written in place: never a copy
        if not written.is_contiguous():
            raise ValueError(f"{name} must be contiguous (the kernel writes it as a dense [B, *] "
                             f"array), got strides {written.stride()}")
    # the kernels index drive and the table rows as dense row-major arrays
    drive, targets, weights = drive.contiguous(), targets.contiguous(), weights.contiguous()
    spike_bytes = spikes.view(torch.uint8)
    # another shape (e.g. [B, 1]) would make the kernels read outside the parameter; checked
    # here too, as the reservoir's Stepper calls this step without the dispatcher
    check_neuron_parameters(state, drive, u_decay, u_v_gain, v_reset)
    a, a_stride = _param_view(u_decay, num_neurons)  # [1, N] (shared) or [B, N]
    ab, ab_stride = _param_view(u_v_gain, num_neurons)
    c, c_stride = _param_view(v_reset, num_neurons)
    h, h_ptr = _scalar_arg(half_step_ms, device)
    c1, c1_ptr = _scalar_arg(k1, device)
    c2, c2_ptr = _scalar_arg(k2, device)
    vp, vp_ptr = _scalar_arg(v_peak_mv, device)
    has_syn = synapse_decay is not None
    sd, sd_ptr = _scalar_arg(synapse_decay, device) if has_syn else (0.0, False)
    queue = torch.empty(batch * num_neurons, dtype=torch.int32, device=device)
    queue_length = torch.zeros(1, dtype=torch.int32, device=device)
    grid = (triton.cdiv(num_neurons, BLOCK_NEURONS), batch)
    _neuron_kernel[grid](state, drive, spike_bytes, queue, queue_length, a, ab, h, c1, c2, vp, sd,
                         num_neurons, a_stride, ab_stride, has_syn, h_ptr, c1_ptr, c2_ptr, vp_ptr, sd_ptr,
                         state.is_cuda, BLOCK_NEURONS, **_NO_FMA)
    cols = targets.shape[1]
    _deliver_kernel[(_delivery_programs(device),)](
        state, queue, queue_length, targets, weights, cols, triton.next_power_of_2(cols),
        ROWS_PER_ITERATION)
    _reset_kernel[grid](state, spike_bytes, c, num_neurons, c_stride, BLOCK_NEURONS)


def _delivery_programs(device: torch.device) -> int:
    """Programs of the delivery grid: one under the interpreter (queue order = reference
    order), else a few per streaming multiprocessor."""
    if device.type != "cuda":
        return 1
    return PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count


def _no_fma_options() -> dict:
    import os
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return {}  # the interpreter evaluates with numpy: no contraction to switch off
    return {"enable_fp_fusion": False}


_NO_FMA = _no_fma_options()


def triton_izhikevich_network_step_(state, v, u, synaptic_current, drive, spikes, scratch_hc,
                                    scratch_t, targets, weights, half_step_ms, k1, k2, u_decay,
                                    u_v_gain, v_reset, v_peak_mv, synapse_decay=None):
    """Triton path of ``kernels.izhikevich.izhikevich_network_step_`` (same contract).

    ``v``, ``u``, ``synaptic_current`` and the scratch buffers are accepted for signature
    compatibility; the kernels address ``state`` directly and need no scratch.
    """
    if not state.is_contiguous():
        raise ValueError("state must be a contiguous [B, 3N+1] buffer for the Triton step")
    izhikevich_step_no_sync_(state, drive, spikes, targets, weights, half_step_ms, k1, k2,
                             u_decay, u_v_gain, v_reset, v_peak_mv,
                             synapse_decay if synaptic_current is not None else None)
    return spikes.view(-1).nonzero().view(-1)


class CudaGraphStepper:
    """Replays ``steps_per_graph`` Triton steps, drive included, as one CUDA graph.

    ``drive_fn(t)`` returns the [B, N] drive of step t of a replay and must be capturable
    (fixed buffers, e.g. ``torch.randn(..., out=noise)`` followed by in-place arithmetic).
    ``spike_counts`` [B] int64 accumulates the spikes of each network over all replays
    without a host sync. The other arguments are those of :func:`izhikevich_step_no_sync_`
    and must stay alive as long as the stepper. Capturing runs the body once first
    (compiling the kernels) and restores ``state`` afterwards.
    """

    def __init__(self, state, spikes, targets, weights, half_step_ms, k1, k2, u_decay,
                 u_v_gain, v_reset, v_peak_mv, synapse_decay=None, *, drive_fn,
                 steps_per_graph: int = 50):
        if steps_per_graph < 1:
            raise ValueError(f"steps_per_graph must be >= 1, got {steps_per_graph}")
        self.steps_per_graph = steps_per_graph
        self.spike_counts = torch.zeros(state.shape[0], dtype=torch.int64, device=state.device)
        args = (targets, weights, half_step_ms, k1, k2, u_decay, u_v_gain, v_reset, v_peak_mv,
                synapse_decay)

        def body():
            for t in range(steps_per_graph):
                izhikevich_step_no_sync_(state, drive_fn(t), spikes, *args)
                self.spike_counts += spikes.sum(dim=1)

        backup = state.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            body()  # warm-up outside the capture: compiles the kernels
        torch.cuda.current_stream().wait_stream(stream)
        state.copy_(backup)
        self.spike_counts.zero_()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            body()

    def replay(self) -> None:
        """Advance ``steps_per_graph`` steps (asynchronous, on the current stream)."""
        self.graph.replay()
