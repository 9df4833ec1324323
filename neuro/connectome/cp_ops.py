"""Building blocks of CP (CANDECOMP/PARAFAC) fits that never form the full Khatri-Rao product.

A rank-R CP model of an N-way tensor X of shape (I_0, ..., I_{N-1}) is

    X_hat[i_0, ..., i_{N-1}] = sum_r w_r * prod_n A_n[i_n, r],

with factor matrices A_n of shape (I_n, R) and weights w (R,). The matricized-tensor
times Khatri-Rao product of mode n is

    MTTKRP_n[i_n, r] = sum_{i_m, m != n} X[i_0, ..., i_{N-1}] * prod_{m != n} A_m[i_m, r].

Peers (tensorly, tensortools) build the Khatri-Rao product of all other modes, a
(prod_{m != n} I_m, R) matrix, once per mode. Here the modes are split into a left group
(0..s-1) and a right group (s..N-1); the tensor is viewed as a (P_left, P_right) matrix
(no copy, C order) and one GEMM with the *partial* Khatri-Rao product of one group
contracts that group for every mode of the other group at once:

    T_right = X_(P_left x P_right) @ KR(A_s, ..., A_{N-1})      (P_left, R)
    T_left  = KR(A_0, ..., A_{s-1})^T @ X_(P_left x P_right)    (R, P_right)

The MTTKRP of a left mode then contracts the small T_right with the other left factors.
The split s minimises P_left + P_right, so intermediates stay far below the tensor size.
The squared norm of the model comes from Gram matrices:
||X_hat||^2 = sum_{r,q} w_r w_q prod_n (A_n^T A_n)[r, q].
(Kolda & Bader 2009, "Tensor Decompositions and Applications", SIAM Review 51(3),
sections 3 and 3.4; the reshape trick is Phan, Tichavsky & Cichocki 2013, arXiv 1204.1586.)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "choose_split",
    "contract_group",
    "cp_norm_squared",
    "cp_reconstruct",
    "normalize_and_sort",
    "partial_khatri_rao",
]


def choose_split(shape: Sequence[int]) -> int:
    """Split point s in 1..N-1 minimising P_left + P_right (ties: the smaller s)."""
    num_modes = len(shape)
    best_split, best_cost = 1, None
    for split in range(1, num_modes):
        left = 1
        for size in shape[:split]:
            left *= int(size)
        right = 1
        for size in shape[split:]:
            right *= int(size)
        cost = left + right
        if best_cost is None or cost < best_cost:
            best_split, best_cost = split, cost
    return best_split


def partial_khatri_rao(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Column-wise Kronecker product of the given factors, first factor most significant.

    KR(A, B)[i * J + j, r] = A[i, r] * B[j, r]; shape (prod I_m, R). Matches C-order
    flattening of the corresponding tensor modes.
    """
    product = factors[0]
    for factor in factors[1:]:
        rank = factor.shape[1]
        product = (product[:, None, :] * factor[None, :, :]).reshape(-1, rank)
    return product


def contract_group(
    partial: torch.Tensor, group_factors: Sequence[torch.Tensor], keep: int, rank_axis: int
) -> torch.Tensor:
    """MTTKRP of one mode of a group from that group's partial contraction.

    partial: the group's modes plus a rank axis (at position 0 or last = rank_axis);
    group_factors: the factors of the group's modes, in order; keep: index within the group
    of the mode whose MTTKRP is wanted. Every other group mode m is contracted with its
    factor, Hadamard over the rank axis. Returns (I_keep, R).
    """
    num_group = len(group_factors)
    result = partial
    mode_axis_offset = 1 if rank_axis == 0 else 0
    # Contract from the last mode backwards so earlier axis positions stay valid.
    for position in range(num_group - 1, -1, -1):
        if position == keep:
            continue
        axis = position + mode_axis_offset
        factor = group_factors[position]
        view_shape = [1] * result.dim()
        view_shape[axis] = factor.shape[0]
        rank_position = 0 if rank_axis == 0 else result.dim() - 1
        view_shape[rank_position] = factor.shape[1]
        if rank_axis == 0:
            factor_view = factor.t().reshape(view_shape)
        else:
            factor_view = factor.reshape(view_shape)
        result = (result * factor_view).sum(dim=axis)
    if rank_axis == 0:
        result = result.t()
    return result.contiguous()


def cp_reconstruct(
    weights: torch.Tensor, factors: Sequence[torch.Tensor], out: torch.Tensor | None = None
) -> torch.Tensor:
    """Full tensor sum_r w_r a_0r o ... o a_{N-1}r, built as one GEMM of two partial
    Khatri-Rao products: (P_left, R) @ (R, P_right). Optional preallocated `out`."""
    shape = [int(factor.shape[0]) for factor in factors]
    split = choose_split(shape) if len(shape) > 1 else 1
    left = partial_khatri_rao(list(factors[:split])) * weights[None, :]
    if split < len(shape):
        right = partial_khatri_rao(list(factors[split:]))
    else:
        right = torch.ones(1, weights.shape[0], dtype=weights.dtype, device=weights.device)
    if out is None:
        return torch.mm(left, right.t()).reshape(shape)
    torch.mm(left, right.t(), out=out.view(left.shape[0], right.shape[0]))
    return out


def cp_norm_squared(weights: torch.Tensor, grams: Sequence[torch.Tensor]) -> torch.Tensor:
    """||X_hat||^2 = w^T (G_0 * ... * G_{N-1}) w with G_n = A_n^T A_n (Hadamard product)."""
    hadamard = grams[0].clone()
    for gram in grams[1:]:
        hadamard.mul_(gram)
    return weights @ hadamard @ weights


def normalize_and_sort(
    weights: torch.Tensor, factors: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Unit-norm factor columns, norms absorbed into the weights, components sorted by
    decreasing weight. Zero columns stay zero (their weight becomes 0)."""
    weights = weights.clone()
    normalized = []
    for factor in factors:
        norms = torch.linalg.vector_norm(factor, dim=0)
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        normalized.append(factor / safe)
        weights = weights * norms
    order = torch.argsort(weights, descending=True, stable=True)
    return weights[order], [factor[:, order].contiguous() for factor in normalized]
