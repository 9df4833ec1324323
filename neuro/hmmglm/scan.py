"""Chunked prefix scans over time for HMM message passing.

A forward (or backward) HMM message is a row vector pushed through a product of
K x K matrices, ``v_t = v_0 M_1 M_2 ... M_t``. A Python loop over t costs ~20 us per
step (the reference loop ``kernels.hmm_scan.naive``: K = 3, float64, one sequence, one CPU
thread); these scans cut time into chunks of ``chunk`` steps and run

1. all chunks at once through their ``chunk`` steps to form each chunk's matrix product,
2. a Hillis-Steele (log-depth) prefix scan over the chunk products,
3. all chunks at once again, starting from the exact message entering each chunk,

so the number of Python-level steps is ``2 * chunk + log2(T / chunk)`` instead of T.

``scaled_vecmat_scan`` works in the (+, x) semiring on non-negative matrices whose
entries are at most 1 (transition probabilities times emission likelihoods divided by
their per-step maximum). Messages are kept as (vector, log scale) pairs and rescaled
every ``renormalize_every`` steps, as in the scaled forward algorithm (Rabiner 1989);
chunk products keep one log scale per row, so a starting state whose continuation is
astronomically unlikely is not lost to underflow. ``maxplus_vecmat_scan`` is the same
scan in the (max, +) semiring on log-matrices, for Viterbi.

Shapes: ``mats`` is (B, S, K, K); the initial vector is (B, K); outputs are (B, S, K).

The K x K products go through :func:`small_matmul`: a batched GEMM on the CPU, a broadcast
multiply and a sum over the shared index elsewhere (on a GPU, a GEMM kernel tiles 32 x 64
outputs and wastes > 99% of its work on a 3 x 3 product; see its docstring for timings).
"""

from __future__ import annotations

import math

import torch

PRODUCTS = ("auto", "gemm", "broadcast")


def small_matmul(left: torch.Tensor, right: torch.Tensor, product: str = "auto") -> torch.Tensor:
    """``left @ right`` for large batches of small matrices, (..., I, J) @ (..., J, K).

    ``product="gemm"`` calls the batched GEMM (``torch.matmul``); ``"broadcast"`` writes
    ``C[..., i, k] = sum_j A[..., i, j] B[..., j, k]`` as one broadcast multiply into
    (..., I, J, K) and one sum over j: two elementwise kernels, no GEMM. ``"auto"`` picks
    GEMM on the CPU and broadcast on any other device. Measured (1 thread, float64, batch
    64 x 313 of K x K products, median us): K=3 GEMM 1500, broadcast 5897, unrolled
    addcmul over j 1915; K=5 GEMM 3630, broadcast 8778; at batch 313 GEMM also wins, so the
    CPU keeps GEMM. On an H100 the fp64 GEMM of a 3 x 3 batch took 112 us per call (a
    32 x 64 tensor-core tile), the broadcast form is two launch-bound elementwise kernels:
    forward-backward at T=20,000, K=3, batch 64, chunk 16 took 5.5 ms broadcast vs 19.1 ms
    GEMM (batch 1: launch-bound, about equal).
    Same sums in a possibly different order: equal to float rounding.
    """
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of {PRODUCTS}, got {product!r}")
    if product == "gemm" or (product == "auto" and left.device.type == "cpu"):
        return left @ right
    return (left.unsqueeze(-1) * right.unsqueeze(-3)).sum(-2)


def _pad_to_chunks(mats: torch.Tensor, chunk: int, fill_identity) -> tuple[torch.Tensor, int]:
    batch, steps, k, _ = mats.shape
    num_chunks = max(1, math.ceil(steps / chunk))
    pad = num_chunks * chunk - steps
    if pad:
        filler = fill_identity(k, mats).expand(batch, pad, k, k)
        mats = torch.cat([mats, filler], dim=1)
    return mats.reshape(batch, num_chunks, chunk, k, k), num_chunks


def _sum_identity(k: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(k, dtype=like.dtype, device=like.device)


def _max_identity(k: int, like: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(k, dtype=like.dtype, device=like.device)
    return torch.log(eye)  # 0 on the diagonal, -inf elsewhere


def default_chunk(steps: int, device: torch.device | str = "cpu") -> int:
    """Chunk length balancing the in-chunk loops against the across-chunk scan (our choice).

    CPU: ~sqrt(steps), in [4, 64] (compute-bound: the across-chunk scan does log2(#chunks)
    times the work). Other devices: at most 16, since there every step of the in-chunk
    loops is a few launch-bound kernels while more chunks cost little. Measured on an H100
    (T=20,000, K=3, float64, forward-backward ms, chunk 4/8/16/32/64): batch 1
    4.3/7.5/8.6/7.2/10.8, batch 64 10.3/6.3/5.5/7.3/10.9; EM iteration of problem (a)
    with chunk 64/16/8: 13.7/7.9/7.0 ms for 1 restart, 27.2/20.1/20.9 ms for 64.
    """
    chunk = int(min(64, max(4, 2 ** round(math.log2(max(math.sqrt(steps), 1.0))))))
    return chunk if torch.device(device).type == "cpu" else min(chunk, 16)


def scaled_vecmat_scan(
    log_initial: torch.Tensor,
    mats: torch.Tensor,
    chunk: int | None = None,
    renormalize_every: int | None = None,
    product: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """All prefix products ``v_s = v_0 M_1 ... M_s`` for s = 1..S, as (vector, log scale).

    ``log_initial``: (B, K) log of v_0. ``mats``: (B, S, K, K), entries in [0, 1].
    ``product``: how K x K products are formed (:func:`small_matmul`).
    Returns ``vectors`` (B, S, K) with max 1 along K (0 where v_s = 0) and
    ``log_scale`` (B, S) so that ``v_s = vectors[:, s-1] * exp(log_scale[:, s-1])``.
    """
    batch, steps, k, _ = mats.shape
    dtype = mats.dtype
    if steps == 0:
        empty = mats.new_zeros(batch, 0, k)
        return empty, mats.new_zeros(batch, 0)
    chunk = chunk or default_chunk(steps, mats.device)
    if renormalize_every is None:
        renormalize_every = 8 if dtype == torch.float64 else 4
    tiny = torch.finfo(dtype).tiny
    blocks, num_chunks = _pad_to_chunks(mats, chunk, _sum_identity)

    # 1. chunk products with one log scale per row
    running = blocks[:, :, 0].clone()
    row_log = mats.new_zeros(batch, num_chunks, k)
    for j in range(1, chunk):
        running = small_matmul(running, blocks[:, :, j], product)
        if j % renormalize_every == 0 or j == chunk - 1:
            row_max = running.amax(-1, keepdim=True).clamp_min(tiny)
            running = running / row_max
            row_log = row_log + torch.log(row_max.squeeze(-1))
    # log of each chunk's product matrix, rows carrying their scale
    log_chunk = torch.log(running) + row_log.unsqueeze(-1)

    # 2. inclusive Hillis-Steele scan over chunks in log space (log-sum-exp matmul)
    prefix = log_chunk
    shift = 1
    while shift < num_chunks:
        left = prefix[:, :-shift]
        right = prefix[:, shift:]
        combined = torch.logsumexp(left.unsqueeze(-1) + right.unsqueeze(-3), dim=-2)
        prefix = torch.cat([prefix[:, :shift], combined], dim=1)
        shift *= 2
    # message entering chunk c: v_0 times the product of chunks before c
    log_enter_rest = torch.logsumexp(
        log_initial.unsqueeze(1).unsqueeze(-1) + prefix[:, :-1], dim=-2
    )
    log_enter = torch.cat([log_initial.unsqueeze(1), log_enter_rest], dim=1)  # (B, C, K)

    # 3. run every chunk from its entering message
    scale = log_enter.amax(-1, keepdim=True)
    scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))
    vec = torch.exp(log_enter - scale)
    # messages and scales collected in lists and stacked once (one copy, not one per step)
    vectors, scales = [], []
    for j in range(chunk):
        vec = small_matmul(vec.unsqueeze(-2), blocks[:, :, j], product).squeeze(-2)
        if (j + 1) % renormalize_every == 0:
            vmax = vec.amax(-1, keepdim=True).clamp_min(tiny)
            vec = vec / vmax
            scale = scale + torch.log(vmax)
        vectors.append(vec)
        scales.append(scale)
    out = torch.stack(vectors, 2).reshape(batch, num_chunks * chunk, k)[:, :steps]
    out_scale = torch.stack(scales, 2).reshape(batch, num_chunks * chunk)[:, :steps]
    vmax = out.amax(-1, keepdim=True).clamp_min(tiny)
    return out / vmax, out_scale + torch.log(vmax.squeeze(-1))


def _logsumexp_reduce(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(x, dim=dim)


def _max_reduce(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.amax(dim)


def maxplus_vecmat_scan(
    log_initial: torch.Tensor, log_mats: torch.Tensor, chunk: int | None = None,
    semiring: str = "max",
) -> torch.Tensor:
    """All prefix (max, +) products ``d_s = max_i d_{s-1}(i) + L_s[i, j]`` for s = 1..S.

    ``log_initial``: (B, K); ``log_mats``: (B, S, K, K) (``-inf`` allowed). Returns (B, S, K).
    ``semiring="logsumexp"`` gives the (logsumexp, +) scan instead: exact log-space
    messages, ~2.5x slower (CPU, one thread, K = 3, T = 20,000), the fallback for likelihood
    ratios beyond e^700.
    """
    reduce = _max_reduce if semiring == "max" else _logsumexp_reduce
    batch, steps, k, _ = log_mats.shape
    if steps == 0:
        return log_mats.new_zeros(batch, 0, k)
    chunk = chunk or default_chunk(steps, log_mats.device)
    blocks, num_chunks = _pad_to_chunks(log_mats, chunk, _max_identity)

    product = blocks[:, :, 0]
    for j in range(1, chunk):
        product = reduce(product.unsqueeze(-1) + blocks[:, :, j].unsqueeze(-3), -2)

    prefix = product
    shift = 1
    while shift < num_chunks:
        combined = reduce(prefix[:, :-shift].unsqueeze(-1) + prefix[:, shift:].unsqueeze(-3), -2)
        prefix = torch.cat([prefix[:, :shift], combined], dim=1)
        shift *= 2
    enter_rest = reduce(log_initial.unsqueeze(1).unsqueeze(-1) + prefix[:, :-1], -2)
    vec = torch.cat([log_initial.unsqueeze(1), enter_rest], dim=1)

    vectors = []
    for j in range(chunk):
        vec = reduce(vec.unsqueeze(-1) + blocks[:, :, j], -2)
        vectors.append(vec)
    return torch.stack(vectors, 2).reshape(batch, num_chunks * chunk, k)[:, :steps]


def compose_suffix_maps(maps: torch.Tensor) -> torch.Tensor:
    """Suffix compositions of index maps: ``G_t = F_t o F_{t+1} o ... o F_{S-1}``.

    ``maps``: (B, S, K) integer tensor, ``F_t(j) = maps[:, t, j]``. Returns (B, S, K) with
    ``G_t(j) = F_t(F_{t+1}(...F_{S-1}(j)))``, by a log-depth (Hillis-Steele) scan of gathers.
    """
    _batch, steps, _k = maps.shape
    composed = maps
    shift = 1
    while shift < steps:
        head = composed[:, : steps - shift]
        tail = composed[:, shift:]
        merged = torch.gather(head, -1, tail)  # G_t o G_{t+shift}
        composed = torch.cat([merged, composed[:, steps - shift :]], dim=1)
        shift *= 2
    return composed
