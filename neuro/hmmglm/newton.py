"""Batched Newton M-step for the GLM emissions of every (restart, state, neuron) at once.

Each problem p = (r, k, n) maximizes the expected complete-data log-likelihood plus a
diagonal Gaussian log-prior (ridge / Gaussian coupling prior), optionally inside box
bounds (the one-hot prior's sign constraints and structural zeros):

    F_p(theta) = sum_t gamma_t(r, k) l(y_tn, phi_t . theta) - 1/2 sum_d prec_d (theta_d - mu_d)^2

    g = Phi^T (gamma * l') - prec * (theta - mu)
    H = Phi^T diag(gamma * c) Phi + diag(prec),    c = -l'' >= 0

The D x D Hessians of all problems come from ONE fp32 matrix product of the curvature
weights (T, P) with the packed outer products phi_t phi_t^T (T, D(D+1)/2), precomputed
once per fit; the Newton system is solved in fp64 by a batched Cholesky. Each problem
then backtracks on its own step size (Armijo, c = 1e-4, with a rounding tolerance of
max(1e-12, 16 eps) |F| for the dtype's machine eps) and keeps its old value when no step
size increases F, so every call is an ascent step for every problem (a generalized-EM
M-step). Without bounds the search also stops once every undecided problem's first-order
gain at the current step is within that tolerance: halving further cannot yield a gain
the objective can resolve. (In float64 the tolerance is 1e-12 |F|; with 1e-12 in float32,
eps 1.2e-7, rounding alone made every step size fail near the optimum, so all 16 halvings
ran on every EM iteration and EM stopped short.)
"""

from __future__ import annotations

import torch

from kernels.dispatch import use_triton
from kernels.glm_terms import glm_terms
from neuro.hmmglm.glm import batched_terms, linear_predictor

ARMIJO_C = 1e-4
RELATIVE_TOLERANCE = 1e-12
ROUNDING_EPS_MULTIPLE = 16.0


def rounding_tolerance(value: torch.Tensor) -> torch.Tensor:
    """The part of |F| that float rounding may account for: max(1e-12, 16 eps) |F|."""
    eps = torch.finfo(value.dtype).eps
    return max(RELATIVE_TOLERANCE, ROUNDING_EPS_MULTIPLE * eps) * value.abs()


PACK_BLOCK_BYTES = 2**20  # bytes of design rows per block of PackedOuterProducts._pack (CPU)


class PackedOuterProducts:
    """Packed upper triangles of phi_t phi_t^T, (T, D(D+1)/2), in fp32, built once.

    When the full array would exceed ``max_bytes`` it is rebuilt chunk by chunk on
    every call instead (same result up to the fp32 rounding of the chunked sum, more time,
    bounded memory; ``HMMGLM.fit`` sets ``max_bytes`` from its memory limit,
    ``model.packed_budget``).
    """

    def __init__(self, design: torch.Tensor, max_bytes: int = 1 << 30, dtype=torch.float32):
        num_timesteps, dim = design.shape
        self.dim = dim
        self.dtype = dtype
        self.rows, self.cols = torch.triu_indices(dim, dim, device=design.device)
        self.design = design
        packed_bytes = num_timesteps * self.rows.numel() * torch.finfo(dtype).bits // 8
        self.chunk = num_timesteps if packed_bytes <= max_bytes else max(
            1, max_bytes // (self.rows.numel() * torch.finfo(dtype).bits // 8)
        )
        self.packed = self._pack(design) if self.chunk == num_timesteps else None

    def _pack(self, rows_of_design: torch.Tensor) -> torch.Tensor:
        """(T', D(D+1)/2) products phi_ti phi_tj (i <= j, row-major: ``triu_indices``' order),
        written straight into one output: for each block of rows (``PACK_BLOCK_BYTES`` of
        design rows, cache-sized, on the CPU; all rows at once elsewhere) and each i, ONE
        product phi_i * phi_{i..D-1} into the contiguous run of output columns of row i.
        No gathered temporaries: the former ``low[:, rows] * low[:, cols]`` gathers took
        7.4 ns per packed element at D = 201 and 16 ns at D = 601 (1 thread), this takes
        2.7 and 3.5 ns, and it runs on every Hessian once the array exceeds ``max_bytes``.
        The same products, bit for bit."""
        low = rows_of_design.to(self.dtype)
        dim = self.dim
        out = torch.empty(low.shape[0], self.rows.numel(), dtype=self.dtype, device=low.device)
        block = (max(1, PACK_BLOCK_BYTES // (dim * out.element_size())) if low.device.type == "cpu"
                 else max(1, low.shape[0]))  # a GPU: D launches in all, not D per block
        for start in range(0, low.shape[0], block):
            part, dest = low[start : start + block], out[start : start + block]
            offset = 0
            for i in range(dim):
                torch.mul(part[:, i : i + 1], part[:, i:], out=dest[:, offset : offset + dim - i])
                offset += dim - i
        return out

    def hessians(self, curvature_weights: torch.Tensor) -> torch.Tensor:
        """sum_t w_tp phi_t phi_t^T for weights (T, P): (P, D, D) in the design's dtype."""
        weights = curvature_weights.to(self.dtype).transpose(0, 1)
        if self.packed is not None:
            packed = weights @ self.packed
        else:
            packed = 0
            for start in range(0, self.design.shape[0], self.chunk):
                stop = start + self.chunk
                packed = packed + weights[:, start:stop] @ self._pack(self.design[start:stop])
        return self._unpack(packed)

    def _unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """(P, D(D+1)/2) upper triangles -> (P, D, D) symmetric matrices in the design's dtype."""
        packed = packed.to(self.design.dtype)
        out = packed.new_zeros(packed.shape[0], self.dim, self.dim)
        out[:, self.rows, self.cols] = packed
        out[:, self.cols, self.rows] = packed
        return out


def weighted_time_sum(resp: torch.Tensor, terms: torch.Tensor) -> torch.Tensor:
    """sum_t resp[t, r, k] terms[t, r, k, n]: (R, K, N) for resp (T, R, K), terms (T, R, K, N).

    One batched matrix product over (r, k) on strided views of ``terms``; ``torch.einsum``
    first copies the whole (T, R, K, N) array into (r, k, n, t) order (on an H100 with 64
    restarts that copy took as long as the product). Same products and sums as the einsum.
    """
    num_timesteps = terms.shape[0]
    left = resp.reshape(num_timesteps, -1).transpose(0, 1).unsqueeze(1)  # (RK, 1, T)
    right = terms.reshape(num_timesteps, left.shape[0], -1).transpose(0, 1)  # (RK, T, N)
    return torch.bmm(left, right).reshape(terms.shape[1:])


def objective(eta, counts, resp, theta, link, precision, prior_mean, terms=None):
    """F_p for every problem: (R, K, N). eta (T, R, K, N), resp (T, R, K), counts (T, N)."""
    if terms is None:
        terms = batched_terms(eta, counts, link, derivatives=False)
    return with_log_prior(weighted_time_sum(resp, terms), theta, precision, prior_mean)


def with_log_prior(value, theta, precision, prior_mean):
    """value - 1/2 sum_d prec_d (theta_d - mu_d)^2 (value itself without a prior)."""
    if precision is None:
        return value
    return value - 0.5 * (precision * (theta - prior_mean) ** 2).sum(-1)


def ridged_cholesky(hess: torch.Tensor, ridge: float):
    """Cholesky factors of H + ridge * max(1, max_d |H_dd|) I for every problem (..., D, D).

    ``hess`` is consumed: the ridge goes onto its diagonal in place; the caller drops it
    before ``newton_direction`` so that at most two (..., D, D) arrays live at once
    (``cholesky_solve`` copies the factors once more; at N = 200, L = 3 each is 2.9 GB).
    Returns (factors, info (...,) nonzero where the factorization failed, diag (..., D):
    the ridged diagonal clamped at 1e-12). Batched ``cholesky_ex``: no host sync.
    """
    diagonal = hess.diagonal(dim1=-2, dim2=-1)
    scale = diagonal.abs().amax(-1, keepdim=True).clamp_min(1.0)
    diagonal.add_((ridge * scale).expand(diagonal.shape))
    chol, info = torch.linalg.cholesky_ex(hess)
    return chol, info, diagonal.clamp_min(1e-12)


def newton_direction(chol: torch.Tensor, info: torch.Tensor, diag: torch.Tensor,
                     grad: torch.Tensor) -> torch.Tensor:
    """(H + ridge) delta = g from ``ridged_cholesky``'s outputs, (..., D); where the
    factorization failed, the diagonally scaled gradient step g / diag (no host sync to
    check); non-finite entries become 0."""
    direction = torch.cholesky_solve(grad.unsqueeze(-1), chol).squeeze(-1)
    direction = torch.where((info != 0).unsqueeze(-1), grad / diag, direction)
    return torch.nan_to_num(direction, nan=0.0, posinf=0.0, neginf=0.0)


def newton_step(
    design: torch.Tensor,
    outer: PackedOuterProducts,
    counts: torch.Tensor,
    resp: torch.Tensor,
    theta: torch.Tensor,
    link: str,
    precision: torch.Tensor | None = None,
    prior_mean: torch.Tensor | None = None,
    lower: torch.Tensor | None = None,
    upper: torch.Tensor | None = None,
    ridge: float = 1e-6,
    max_halvings: int = 16,
    eta: torch.Tensor | None = None,
    loglik: torch.Tensor | None = None,
    spikes: tuple[torch.Tensor, torch.Tensor] | None = None,
):
    """One damped Newton step for every problem. theta (R, K, N, D); resp (T, R, K).

    ``eta`` and ``loglik`` (the elementwise log-likelihood terms at theta) may be passed
    in when already known (the E-step computes them). Returns (theta_new, F_new (R, K, N),
    eta_new (T, R, K, N), loglik_new (T, R, K, N) or None). ``spikes``: the nonzero
    positions of ``counts`` if known (see ``batched_terms``). Host syncs: one per step
    size tried. On CUDA (``kernels/dispatch.py``) the terms and their time sums come from
    the one-pass kernel ``kernels.glm_terms`` and no (T, R, K, N) log-likelihoods are
    formed: loglik_new is then the per-bin sums over neurons (T, R, K) at theta_new when
    every problem accepted the full step (the first trial computes them, so the next
    E-step needs no pass of its own; without bounds they are taken at eta + delta_eta,
    which may differ from the returned eta = Phi theta_new by rounding), else None.
    Elsewhere the terms come from the sparse-aware torch ``batched_terms``.
    """
    num_timesteps = design.shape[0]
    shape = theta.shape
    dim = shape[-1]
    fused = use_triton(design, counts, resp)
    resp_flat = resp.reshape(num_timesteps, -1)  # (T, R K)

    def flat(x):  # (T, R, K, N) -> (T, R K, N)
        return x.reshape(num_timesteps, -1, x.shape[-1])

    if eta is None:
        eta = linear_predictor(design, theta)
    if fused:
        terms = glm_terms(flat(eta), counts, resp_flat, link, derivatives=True,
                          curvature_dtype=outer.dtype)
        f_old = terms.value.reshape(shape[:-1])
        weighted_grad, weighted_curv = terms.weighted_gradient, terms.weighted_curvature
        loglik = None
    else:  # the weighted derivatives directly, the curvature in the Hessian product's dtype
        weight = resp.unsqueeze(-1)
        if loglik is None:
            loglik, weighted_grad, weighted_curv = batched_terms(
                eta, counts, link, spikes=spikes, weight=weight, curvature_dtype=outer.dtype)
        else:
            _, weighted_grad, weighted_curv = batched_terms(
                eta, counts, link, need_loglik=False, spikes=spikes, weight=weight,
                curvature_dtype=outer.dtype)
        f_old = weighted_time_sum(resp, loglik)
    f_old = with_log_prior(f_old, theta, precision, prior_mean)
    grad = design.transpose(0, 1) @ weighted_grad.reshape(num_timesteps, -1)
    grad = grad.transpose(0, 1).reshape(shape)
    del weighted_grad
    hess = outer.hessians(weighted_curv.reshape(num_timesteps, -1)).reshape(*shape, dim)
    del weighted_curv
    # hess is our own array: the diagonal terms go in in place (x + 0 = x off the diagonal,
    # so the values equal adding diag_embed arrays; at N = 200 each (P, D, D) array is 0.3 GB)
    diagonal = hess.diagonal(dim1=-2, dim2=-1)
    if precision is not None:
        grad = grad - precision * (theta - prior_mean)
        diagonal.add_(precision)
    fixed = torch.zeros(shape, dtype=torch.bool, device=theta.device)
    if lower is not None:
        fixed = (lower >= upper) | ((theta <= lower) & (grad < 0)) | ((theta >= upper) & (grad > 0))
        grad = grad.masked_fill(fixed, 0.0)
        keep = ~fixed
        hess.mul_(keep.unsqueeze(-1) & keep.unsqueeze(-2))
        diagonal.add_(fixed.to(hess.dtype))
    factors = ridged_cholesky(hess, ridge)
    del hess, diagonal  # two (R, K, N, D, D) arrays at most at once (``ridged_cholesky``)
    direction = newton_direction(*factors, grad)
    del factors

    bounded = lower is not None
    delta_eta = None if bounded else linear_predictor(design, direction)
    best_theta, best_f, best_eta, best_terms = theta, f_old, eta, loglik
    accepted = torch.zeros(f_old.shape, dtype=torch.bool, device=theta.device)
    step = 1.0
    tolerance = rounding_tolerance(f_old)
    for _ in range(max_halvings):
        if bounded:
            trial = torch.minimum(torch.maximum(theta + step * direction, lower), upper)
            trial_eta = linear_predictor(design, trial)
        else:
            trial = theta + step * direction
            trial_eta = None if fused else torch.add(eta, delta_eta, alpha=step)  # one pass
        if fused:  # eta + step * delta_eta is formed inside the kernel, never stored
            first = step == 1.0  # the per-bin sums the next E-step needs, if all accept here
            trial_out = (glm_terms(flat(trial_eta), counts, resp_flat, link, per_bin=first)
                         if bounded else glm_terms(flat(eta), counts, resp_flat, link,
                                                   flat(delta_eta), step, per_bin=first))
            f_trial = with_log_prior(trial_out.value.reshape(shape[:-1]), trial, precision,
                                     prior_mean)
            trial_terms = None if trial_out.per_bin is None else trial_out.per_bin.reshape(
                num_timesteps, *shape[:2])
        else:
            trial_terms = batched_terms(trial_eta, counts, link, derivatives=False, spikes=spikes)
            f_trial = objective(trial_eta, counts, resp, trial, link, precision, prior_mean,
                                trial_terms)
        slope = (grad * (trial - theta)).sum(-1)
        ok = (f_trial >= f_old + ARMIJO_C * slope - tolerance) & torch.isfinite(f_trial) & ~accepted
        accepted = accepted | ok
        # no resolvable gain left at smaller steps (unbounded: the first-order gain shrinks
        # with the step; a projected step can gain more when shorter, so it tries them all)
        settled = accepted if bounded else accepted | (slope <= tolerance)
        # one host sync per step size: does any / every problem accept, is every one done
        any_ok, all_ok, all_done = torch.stack([ok.any(), ok.all(), settled.all()]).tolist()
        if any_ok:
            best_theta = torch.where(ok.unsqueeze(-1), trial, best_theta)
            best_f = torch.where(ok, f_trial, best_f)
            if fused:  # per-bin sums kept only if all took step 1; eta formed once below
                best_terms = trial_terms if all_ok else None  # (unless this trial formed it)
                best_eta = trial_eta if all_ok and bounded else None
            elif all_ok:
                best_eta, best_terms = trial_eta, trial_terms
            else:
                best_eta = torch.where(ok.unsqueeze(0), trial_eta, best_eta)
                best_terms = torch.where(ok.unsqueeze(0), trial_terms, best_terms)
        if all_done:
            break
        step *= 0.5
    if best_eta is None:
        best_eta = linear_predictor(design, best_theta)
    return best_theta, best_f, best_eta, best_terms


def shared_bias_step(design, counts, resp, theta, link, max_halvings: int = 16, spikes=None):
    """Newton step on a bias shared across states (column 0 of theta equal over K).

    Maximizes sum_k F_(r,k,n) over the common b_rn with the weights held fixed.
    Returns the new theta (R, K, N, D). ``spikes`` as in ``batched_terms``.
    """
    eta = linear_predictor(design, theta)
    loglik, grad_eta, curv_eta = batched_terms(eta, counts, link, spikes=spikes)
    f_old = torch.einsum("trk,trkn->rn", resp, loglik)
    grad = torch.einsum("trk,trkn->rn", resp, grad_eta)
    curv = torch.einsum("trk,trkn->rn", resp, curv_eta).clamp_min(1e-12)
    direction = grad / curv
    accepted = torch.zeros_like(f_old, dtype=torch.bool)
    best = torch.zeros_like(direction)
    step = 1.0
    tolerance = rounding_tolerance(f_old)
    for _ in range(max_halvings):
        shift = step * direction
        terms = batched_terms(eta + shift[None, :, None, :], counts, link, derivatives=False,
                              spikes=spikes)
        f_trial = torch.einsum("trk,trkn->rn", resp, terms)
        ok = (f_trial >= f_old + ARMIJO_C * grad * shift - tolerance) & ~accepted
        best = torch.where(ok, shift, best)
        accepted = accepted | ok
        if bool(accepted.all()):
            break
        step *= 0.5
    new_theta = theta.clone()
    new_theta[..., 0] = theta[..., 0] + best.unsqueeze(1)
    return new_theta
