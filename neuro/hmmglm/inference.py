"""HMM inference as pure functions: forward-backward and Viterbi (dynamax-style signatures).

Given log initial probabilities ``log_pi`` (K,), log transition matrix ``log_A`` (K, K)
(rows: from-state) and per-step emission log-likelihoods ``log_lik`` (T, K):

    alpha_1 = pi * b_1,   alpha_t = (alpha_{t-1} A) * b_t,        b_t(k) = p(y_t | z_t = k)
    beta_T = 1,           beta_t = A (b_{t+1} * beta_{t+1})
    gamma_t = alpha_t * beta_t / p(y),   xi_t(i, j) = alpha_t(i) A_ij b_{t+1}(j) beta_{t+1}(j) / p(y)

(Rabiner 1989). Every function takes a leading batch axis B (independent sequences or
restarts); parameters may be shared ((K,), (K, K), or with a batch axis of 1) or per batch
element ((B, K), (B, K, K)).
Sequences of different lengths are padded to T and given ``lengths`` (B,): padded steps
use the identity matrix, so messages pass through them unchanged and get no posterior
mass. Time is handled by chunked scans (``scan.py``), not a loop per bin.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from kernels.dispatch import use_triton
from kernels.hmm_scan import scaled_vecmat_scan as kernel_scaled_vecmat_scan
from neuro.checks import check_flag, check_int
from neuro.hmmglm.scan import compose_suffix_maps, maxplus_vecmat_scan, scaled_vecmat_scan

# relative disagreement between the p(y) of different steps (scaled by the largest message
# log scale) beyond which forward_backward redoes a sequence in log space (our choice; see
# tests/neuro/hmmglm/test_inference_edges.py for the drift measured on well-posed data)
CONSISTENCY_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-1}


class Posterior(NamedTuple):
    """Output of :func:`forward_backward`.

    log_normalizer: (B,) log p(y_{1:T}).  smoothed: (B, T, K) gamma (zero on padding).
    expected_transitions: (B, K, K) sum_t xi_t.  pairwise: (B, T-1, K, K) xi_t or None.
    """

    log_normalizer: torch.Tensor
    smoothed: torch.Tensor
    expected_transitions: torch.Tensor
    pairwise: torch.Tensor | None


def _broadcast(log_initial, log_transition, log_likelihoods, lengths):
    for name, value in (("log_initial", log_initial), ("log_transition", log_transition),
                        ("log_likelihoods", log_likelihoods)):
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            shown = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {shown}")
    if log_likelihoods.dim() == 2:
        log_likelihoods = log_likelihoods.unsqueeze(0)
    if log_likelihoods.dim() != 3:
        raise ValueError(
            f"log_likelihoods must have shape (T, K) or (B, T, K), got {tuple(log_likelihoods.shape)}"
        )
    batch, steps, k = log_likelihoods.shape
    if steps == 0:
        raise ValueError("log_likelihoods has T=0 steps; an HMM needs at least one")
    if k == 0:
        raise ValueError("log_likelihoods has K=0 states (its last axis); an HMM needs at least one")
    if (log_initial.shape not in ((k,), (1, k), (batch, k))
            or log_transition.shape not in ((k, k), (1, k, k), (batch, k, k))):
        raise ValueError(
            f"log_initial {tuple(log_initial.shape)} and log_transition "
            f"{tuple(log_transition.shape)} must be (K,), (1, K) or (B, K) and (K, K), (1, K, K) or (B, K, K) for "
            f"K={k}, B={batch} of log_likelihoods"
        )
    log_initial = log_initial.to(log_likelihoods).expand(batch, k)
    log_transition = log_transition.to(log_likelihoods).expand(batch, k, k)
    if lengths is None:
        mask = None
    else:
        lengths = torch.as_tensor(lengths, device=log_likelihoods.device)
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must be (B,)={batch} integers in [1, {steps}], got dtype "
                            f"{lengths.dtype}: {lengths}")
        if lengths.shape != (batch,) or bool((lengths < 1).any()) or bool((lengths > steps).any()):
            raise ValueError(f"lengths must be (B,)={batch} integers in [1, {steps}], got {lengths}")
        mask = torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
    return log_initial, log_transition, log_likelihoods, mask


def _check_chunk(chunk) -> None:
    """``chunk`` is None (the default length) or an int >= 1 (a TypeError / ValueError naming it)."""
    if chunk is not None:
        check_int("chunk", chunk)


def _refuse_invalid(log_pi, log_a, log_lik):
    """A ValueError naming the argument that holds NaN (or +inf: a log-probability above 0
    without bound); -inf (an impossible state or move) is valid. Arguments in the broadcast
    frame (B, K), (B, K, K), (B, T, K); one host sync when all is valid."""
    checks = (("log_initial", log_pi, "(sequence, state)"),
              ("log_transition", log_a, "(sequence, from, to)"),
              ("log_likelihoods", log_lik, "(sequence, step, state)"))
    bad = [torch.isnan(value) | (value == float("inf")) for _, value, _ in checks]
    counts = torch.stack([b.sum() for b in bad]).tolist()
    for (name, _, frame), mask, count in zip(checks, bad, counts):
        if count:
            raise ValueError(f"{name} contains {count} NaN or +inf entries (the first at {frame} = "
                             f"{tuple(mask.nonzero()[0].tolist())}); log-probabilities must be < +inf")


def forward_backward(
    log_initial: torch.Tensor,
    log_transition: torch.Tensor,
    log_likelihoods: torch.Tensor,
    lengths: torch.Tensor | None = None,
    return_pairwise: bool = False,
    chunk: int | None = None,
) -> Posterior:
    """Smoothed posteriors and log p(y) of an HMM; see the module docstring for shapes."""
    _check_chunk(chunk)
    return_pairwise = check_flag("return_pairwise", return_pairwise)
    log_pi, log_a, log_lik, mask = _broadcast(log_initial, log_transition, log_likelihoods, lengths)
    batch, _steps, k = log_lik.shape
    if mask is not None:
        log_lik = log_lik.masked_fill(~mask.unsqueeze(-1), 0.0)
    # scaled emissions b_t = exp(ll_t - max_k ll_t); offsets add back log p(y)
    offset = log_lik.amax(-1, keepdim=True)
    offset = torch.where(torch.isfinite(offset), offset, torch.zeros_like(offset))
    emission = torch.exp(log_lik - offset)
    transition = torch.exp(log_a)
    # M_t = A diag(b_t) for t = 2..T (identity on padding)
    mats = transition.unsqueeze(1) * emission[:, 1:].unsqueeze(-2)
    if mask is not None:
        eye = torch.eye(k, dtype=mats.dtype, device=mats.device)
        mats = torch.where(mask[:, 1:, None, None], mats, eye)

    log_alpha0 = log_pi + log_lik[:, 0]
    # backward: beta_t^T = beta_{t+1}^T M_{t+1}^T, a forward scan over reversed time
    reversed_mats = mats.flip(1).transpose(-1, -2)
    log_beta_end = log_lik.new_zeros(batch, k)
    triton_scan = use_triton(mats)
    if mats.device.type == "cpu" and not triton_scan:
        alpha_vec, alpha_log = scaled_vecmat_scan(log_alpha0, mats, chunk=chunk)
        beta_vec, beta_log = scaled_vecmat_scan(log_beta_end, reversed_mats, chunk=chunk)
    else:
        # both directions in ONE scan of batch 2B: half the kernel launches, which bound a
        # GPU at small batches (same numbers; on the CPU the copy makes batch 64 ~1.5x
        # slower). With Triton (CUDA): the three-launch scan of kernels.hmm_scan.
        initial, all_mats = torch.cat([log_alpha0, log_beta_end]), torch.cat([mats, reversed_mats])
        if triton_scan:
            both_vec, both_log = kernel_scaled_vecmat_scan(initial, all_mats)
        else:
            both_vec, both_log = scaled_vecmat_scan(initial, all_mats, chunk=chunk)
        alpha_vec, alpha_log, beta_vec = both_vec[:batch], both_log[:batch], both_vec[batch:]
        beta_log = both_log[batch:]
    first_scale = log_alpha0.amax(-1, keepdim=True)
    first_scale = torch.where(torch.isfinite(first_scale), first_scale, torch.zeros_like(first_scale))
    alpha0_vec = torch.exp(log_alpha0 - first_scale)
    alpha = torch.cat([alpha0_vec.unsqueeze(1), alpha_vec], dim=1)  # (B, T, K), rows max 1
    alpha_logs = torch.cat([first_scale, alpha_log], dim=1)  # (B, T) log scales of alpha
    last_log = alpha_logs[:, -1]
    log_normalizer = (
        torch.log(alpha[:, -1].sum(-1)) + last_log + offset[:, 1:].sum((1, 2))
    )

    beta = torch.cat([beta_vec.flip(1), log_lik.new_ones(batch, 1, k)], dim=1)

    beta_logs = torch.cat([beta_log.flip(1), log_lik.new_zeros(batch, 1)], dim=1)

    smoothed, pair, joint_sum, empty_pair = _posteriors(alpha, beta, mats, mask)
    # likelihood ratios beyond the float range underflow the scaled messages: redo those
    # sequences exactly in log space (rare; costs ~10x). Besides messages that vanish, a
    # state that one message lost (relative weight below the float range) while the other
    # favours it by more than that range (a cyclic or left-to-right chain, forbidden moves)
    # leaves gamma_t empty or wrong though both messages look fine. Every step must give
    # the same p(y) = sum_k alpha_t(k) beta_t(k) (scales included; the emission offsets
    # are the same sum for every t): a step that disagrees lost mass (our check).
    log_z_steps = torch.log(joint_sum) + alpha_logs + beta_logs  # (B, T) up to a constant
    drift = (log_z_steps - log_z_steps[:, -1:]).abs()
    if mask is not None:
        drift = drift.masked_fill(~mask, 0.0)
    scale = 1.0 + alpha_logs.abs().amax(-1) + beta_logs.abs().amax(-1)
    lost = ~(drift.amax(-1) <= CONSISTENCY_RTOL.get(log_lik.dtype, 1e-2) * scale)  # NaN counts as lost
    failed = (~torch.isfinite(log_normalizer) | (alpha.sum(-1) == 0).any(-1)
              | (beta.sum(-1) == 0).any(-1) | lost | empty_pair)
    if bool(failed.any()):  # NaN or +inf inputs end here too (no extra sync when all is well)
        _refuse_invalid(log_pi, log_a, log_lik)
        idx = failed.nonzero().squeeze(-1)
        log_normalizer, smoothed, pair = log_normalizer.clone(), smoothed.clone(), pair.clone()
        log_normalizer[idx], smoothed[idx], pair[idx] = _log_space(
            log_pi[idx], log_a[idx], log_lik[idx], None if mask is None else mask[idx], chunk)
    return Posterior(
        log_normalizer=log_normalizer,
        smoothed=smoothed,
        expected_transitions=pair.sum(1),
        pairwise=pair if return_pairwise else None,
    )


def _posteriors(alpha, beta, mats, mask):
    """gamma (B, T, K), xi (B, T-1, K, K) from scaled messages, sum_k alpha_t beta_t (B, T),
    and a (B,) flag: some (unpadded) xi_t has no mass at all (its normalizer underflowed)."""
    tiny = torch.finfo(alpha.dtype).tiny
    joint = alpha * beta
    joint_sum = joint.sum(-1, keepdim=True)
    smoothed = joint / joint_sum.clamp_min(tiny)
    pair = alpha[:, :-1].unsqueeze(-1) * mats * beta[:, 1:].unsqueeze(-2)
    pair_sum = pair.sum((-1, -2), keepdim=True)
    pair = pair / pair_sum.clamp_min(tiny)
    empty_pair = pair_sum.flatten(-3) == 0  # (B, T-1)
    if mask is not None:
        smoothed = smoothed * mask.unsqueeze(-1)
        pair = pair * mask[:, 1:, None, None]
        empty_pair = empty_pair & mask[:, 1:]
    return smoothed, pair, joint_sum.squeeze(-1), empty_pair.any(-1)


def _log_space(log_pi, log_a, log_lik, mask, chunk):
    """Exact (logsumexp, +) forward-backward: (log Z, gamma, xi) for a few sequences."""
    batch, _steps, k = log_lik.shape
    log_mats = log_a.unsqueeze(1) + log_lik[:, 1:].unsqueeze(-2)
    if mask is not None:
        eye_log = torch.log(torch.eye(k, dtype=log_lik.dtype, device=log_lik.device))
        log_mats = torch.where(mask[:, 1:, None, None], log_mats, eye_log)
    log_alpha0 = log_pi + log_lik[:, 0]
    log_alpha = torch.cat([log_alpha0.unsqueeze(1),
                           maxplus_vecmat_scan(log_alpha0, log_mats, chunk, "logsumexp")], 1)
    rev = log_mats.flip(1).transpose(-1, -2)
    log_beta_rev = maxplus_vecmat_scan(log_lik.new_zeros(batch, k), rev, chunk, "logsumexp")
    log_beta = torch.cat([log_beta_rev.flip(1), log_lik.new_zeros(batch, 1, k)], 1)
    log_z = torch.logsumexp(log_alpha[:, -1], -1)
    smoothed = torch.softmax(log_alpha + log_beta, -1).nan_to_num(0.0)
    log_pair = log_alpha[:, :-1].unsqueeze(-1) + log_mats + log_beta[:, 1:].unsqueeze(-2)
    pair = torch.softmax(log_pair.flatten(-2), -1).reshape(log_pair.shape).nan_to_num(0.0)
    if mask is not None:
        smoothed = smoothed * mask.unsqueeze(-1)
        pair = pair * mask[:, 1:, None, None]
    return log_z, smoothed, pair


def viterbi(
    log_initial: torch.Tensor,
    log_transition: torch.Tensor,
    log_likelihoods: torch.Tensor,
    lengths: torch.Tensor | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Most likely state path argmax_z p(z, y) and its log joint probability.

    Returns ``states`` (B, T) int64 (padding repeats the last state) and ``log_prob`` (B,).
    Ties go to the lowest state index. Max-products by a chunked (max, +) scan; the
    back-tracking chain is a log-depth composition of back-pointer maps.
    """
    _check_chunk(chunk)
    log_pi, log_a, log_lik, mask = _broadcast(log_initial, log_transition, log_likelihoods, lengths)
    _refuse_invalid(log_pi, log_a, log_lik if mask is None else log_lik.masked_fill(~mask.unsqueeze(-1), 0.0))
    batch, steps, k = log_lik.shape
    log_mats = log_a.unsqueeze(1) + log_lik[:, 1:].unsqueeze(-2)  # (B, T-1, K, K)
    if mask is not None:
        eye_log = torch.log(torch.eye(k, dtype=log_lik.dtype, device=log_lik.device))
        log_mats = torch.where(mask[:, 1:, None, None], log_mats, eye_log)
    delta0 = log_pi + log_lik[:, 0]
    delta_rest = maxplus_vecmat_scan(delta0, log_mats, chunk=chunk)
    delta = torch.cat([delta0.unsqueeze(1), delta_rest], dim=1)  # (B, T, K)
    # back-pointer F_t(j) = argmax_i delta_t(i) + log_mats_{t+1}[i, j]
    pointers = (delta[:, :-1].unsqueeze(-1) + log_mats).argmax(-2)  # (B, T-1, K)
    log_prob, last = delta[:, -1].max(-1)
    if steps == 1:
        return last.unsqueeze(1), log_prob
    composed = compose_suffix_maps(pointers)  # G_t maps z_T to z_t
    earlier = torch.gather(composed, -1, last.view(batch, 1, 1).expand(batch, steps - 1, 1))
    return torch.cat([earlier.squeeze(-1), last.unsqueeze(1)], dim=1), log_prob
