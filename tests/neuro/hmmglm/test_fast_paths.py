"""The M-step's fast paths against the computations they replace, on small problems.

Tolerances. Bitwise (torch.equal) where the fast path performs the same float operations
on the same operands (weighted derivatives, in-place Hessian assembly, packing). Where it
sums in another order: the objective and gradient are float64 (~1e-16 relative per term:
1e-10 on one step with float64 Hessians); the Hessian is a float32 product in both paths
(``PackedOuterProducts``, by design), so ONE Newton step moves by float32 rounding times
the Hessian's condition (bounded so below). Over a whole fit these float32 roundings decide
the path by as much as the thread count already does in the code these paths replace: on
paper_problem(3000 bins, 8 neurons, 3 states, seed=2), 96 EM iterations to tolerance 1e-9,
that code fitted with 1 and with 2 threads (MKL sums the float32 product in another order)
differs by 2.2e-9 relative in the objective history, 3e-9 of the largest weight and 8e-8 of
the largest log transition; we allow 1e-8 and 1e-6 of the largest entry.
"""

import numpy as np
import pytest
import torch

from neuro.hmmglm import HMMGLM, paper_problem
from neuro.hmmglm.basis import design_matrix, exponential_basis
from neuro.hmmglm.glm import batched_terms
from neuro.hmmglm.newton import PackedOuterProducts, newton_direction, newton_step, ridged_cholesky


def _problem(num_timesteps=400, num_neurons=4, num_basis=2, seed=0):
    rng = np.random.default_rng(seed)
    counts = torch.as_tensor(rng.poisson(0.4, (num_timesteps, num_neurons)).astype(float))
    basis = torch.as_tensor(exponential_basis(5, (1.0, 3.0)[:num_basis]))
    return rng, counts, design_matrix(counts, basis)


@pytest.mark.parametrize("link", ["softplus", "exp", "logistic"])
@pytest.mark.parametrize("curvature_dtype", [None, torch.float32])
def test_weighted_batched_terms_equal_weighting_afterwards(link, curvature_dtype):
    rng = np.random.default_rng(1)
    eta = torch.as_tensor(rng.normal(-1.5, 3.0, (300, 2, 3, 5)))
    eta[::7, 0, 1, 2] = -40.0  # the series branch of the softplus terms
    counts = torch.as_tensor(rng.poisson(0.5, (300, 5)).astype(float))
    if link == "logistic":
        counts = counts.clamp_max(1.0)
    weight = torch.as_tensor(rng.random((300, 2, 3, 1)))
    weight[::5] = 0.0
    loglik, grad, curvature = batched_terms(eta, counts, link)
    w_loglik, w_grad, w_curvature = batched_terms(eta, counts, link, weight=weight,
                                                  curvature_dtype=curvature_dtype)
    assert torch.equal(w_loglik, loglik)
    assert torch.equal(w_grad, weight * grad)
    assert w_curvature.dtype == (curvature_dtype or eta.dtype)
    assert torch.equal(w_curvature, (weight * curvature).to(curvature_dtype or eta.dtype))
    none, only_grad, only_curvature = batched_terms(eta, counts, link, need_loglik=False, weight=weight,
                                                    curvature_dtype=curvature_dtype,
                                                    spikes=counts.nonzero(as_tuple=True))
    assert none is None and torch.equal(only_grad, w_grad) and torch.equal(only_curvature, w_curvature)


def _assert_same_fit(obj_a, params_a, obj_b, params_b):
    """Two fits of one problem agree to the float32-Hessian spread (module docstring)."""
    assert len(obj_a) == len(obj_b) > 10
    np.testing.assert_allclose(obj_a, obj_b, rtol=1e-8)
    for name in ("bias", "weights", "log_transition"):
        a, b = getattr(params_a, name).numpy(), getattr(params_b, name).numpy()
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max())


def _old_direction(design, outer, counts, resp, theta, link, precision, mean, lower, upper, ridge):
    """newton_step's direction as the code before the fast paths formed it: unweighted terms
    weighted afterwards, and the diagonal terms added as diag_embed arrays."""
    eta = design @ theta.reshape(-1, theta.shape[-1]).T
    eta = eta.reshape(design.shape[0], *theta.shape[:-1])
    _, grad_eta, curv_eta = batched_terms(eta, counts, link)
    weight = resp.unsqueeze(-1)
    grad = (design.T @ (weight * grad_eta).reshape(design.shape[0], -1)).T.reshape(theta.shape)
    hess = outer.hessians((weight * curv_eta).reshape(design.shape[0], -1)).reshape(*theta.shape, -1)
    if precision is not None:
        grad = grad - precision * (theta - mean)
        hess = hess + torch.diag_embed(precision)
    if lower is not None:
        fixed = (lower >= upper) | ((theta <= lower) & (grad < 0)) | ((theta >= upper) & (grad > 0))
        grad = grad.masked_fill(fixed, 0.0)
        keep = ~fixed
        hess = hess * (keep.unsqueeze(-1) & keep.unsqueeze(-2))
        hess = hess + torch.diag_embed(fixed.to(hess.dtype))
    scale = hess.diagonal(dim1=-2, dim2=-1).abs().amax(-1, keepdim=True).clamp_min(1.0)
    hess = hess + torch.diag_embed((ridge * scale).expand(theta.shape))
    chol, info = torch.linalg.cholesky_ex(hess)
    direction = torch.cholesky_solve(grad.unsqueeze(-1), chol).squeeze(-1)
    diag = hess.diagonal(dim1=-2, dim2=-1).clamp_min(1e-12)
    direction = torch.where((info != 0).unsqueeze(-1), grad / diag, direction)
    return torch.nan_to_num(direction, nan=0.0, posinf=0.0, neginf=0.0)


@pytest.mark.parametrize("case", ["plain", "prior", "bounds"])
def test_newton_step_equals_the_former_assembly_bit_for_bit(case):
    rng, counts, design = _problem()
    r, k, n, d = 2, 3, counts.shape[1], design.shape[1]
    resp = torch.as_tensor(rng.dirichlet(np.ones(k), (counts.shape[0], r)))
    theta = torch.as_tensor(rng.normal(0.0, 0.1, (r, k, n, d)))
    theta[..., 0] = -1.0
    outer = PackedOuterProducts(design)
    precision = mean = lower = upper = None
    if case == "prior":
        precision = torch.as_tensor(rng.uniform(0.5, 2.0, (r, k, n, d)))
        mean = torch.as_tensor(rng.normal(0.0, 0.1, (r, k, n, d)))
    if case == "bounds":
        lower = torch.full_like(theta, -np.inf)
        upper = torch.full_like(theta, np.inf)
        lower[..., 1::2], upper[..., 2::3] = 0.0, 0.0  # some coordinates at a bound
        lower[..., 3] = upper[..., 3] = 0.0  # a structural zero
        theta = torch.minimum(torch.maximum(theta, lower), upper)
    want = _old_direction(design, outer, counts, resp, theta, "softplus", precision, mean, lower,
                          upper, 1e-6)
    got, _, _, _ = newton_step(design, outer, counts, resp, theta, "softplus", precision, mean, lower,
                               upper, max_halvings=1)
    trial = theta + want
    if lower is not None:
        trial = torch.minimum(torch.maximum(trial, lower), upper)
    moved = (got != theta).any(-1)
    assert moved.float().mean() > 0.5  # most problems took the full step
    assert torch.equal(got[moved], trial[moved])


def test_newton_direction_solves_the_ridged_system_and_falls_back_where_cholesky_fails():
    rng = np.random.default_rng(2)
    a = torch.as_tensor(rng.normal(size=(3, 5, 5)))
    hess = a @ a.transpose(-1, -2) + 0.1 * torch.eye(5)
    hess[2] = -torch.eye(5)  # not positive definite: the diagonally scaled gradient step
    grad = torch.as_tensor(rng.normal(size=(3, 5)))
    ridge = 1e-3
    got = newton_direction(*ridged_cholesky(hess.clone(), ridge), grad)
    scale = hess.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1.0)
    ridged = hess[:2] + ridge * scale[:2, None, None] * torch.eye(5)
    np.testing.assert_allclose(got[:2].numpy(), torch.linalg.solve(ridged, grad[:2]).numpy(), rtol=1e-10)
    np.testing.assert_allclose(got[2].numpy(), (grad[2] / 1e-12).numpy(), rtol=1e-15)  # clamped diagonal


def test_packed_budget_stores_the_products_where_the_memory_limit_allows():
    from neuro.hmmglm.model import PACKED_MAX_BYTES, estimate_fit_bytes, packed_budget

    sizes = (20_000, 200, 1, 5, 1, torch.float64)  # packed products 1.6 GB > 1 GiB
    full = 20_000 * 201 * 202 // 2 * 4
    roomy = packed_budget(*sizes, 8 * 2**30)
    assert roomy >= full and estimate_fit_bytes(*sizes, packed_max_bytes=roomy) <= 8 * 2**30
    rest = estimate_fit_bytes(*sizes, packed_max_bytes=0)
    assert packed_budget(*sizes, rest + 1_300_000_000) == 1_300_000_000  # two chunks
    assert packed_budget(*sizes, rest + 10) == PACKED_MAX_BYTES  # the least cap: refused as before
    assert estimate_fit_bytes(*sizes) == rest + PACKED_MAX_BYTES


def test_fit_with_products_rebuilt_in_chunks_ends_where_the_stored_one_does(monkeypatch):
    """The memory budget decides whether the packed products are stored or rebuilt in chunks;
    the chunks sum the same float32 products in another grouping (module docstring's bounds)."""
    from neuro.hmmglm import model as model_module
    from neuro.hmmglm.newton import PackedOuterProducts as Packed

    problem = paper_problem(num_timesteps=3000, num_neurons=8, num_states=3, seed=2)
    made = []

    class Spy(Packed):
        def __init__(self, design, max_bytes=1 << 30, dtype=torch.float32):
            super().__init__(design, max_bytes, dtype)
            made.append(self)

    monkeypatch.setattr(model_module, "PackedOuterProducts", Spy)
    fits = []
    for chunked in (False, True):
        if chunked:  # the least cap: 700 rows of the 8 neurons' 45 packed products
            monkeypatch.setattr(model_module, "PACKED_MAX_BYTES", 700 * 45 * 4)
        model = HMMGLM(3, 8, basis=problem.basis)
        limit = model_module.estimate_fit_bytes(3000, 8, 1, 3, 1, packed_max_bytes=0) + 700 * 45 * 4
        history = model.fit(problem.spikes, num_iters=200, tolerance=1e-9, seed=0,
                            memory_limit_bytes=limit if chunked else 8 * 2**30)
        fits.append((np.array(history["objective"]), model.params))
    assert made[0].packed is not None and made[1].packed is None and made[1].chunk == 700
    (obj_a, params_a), (obj_b, params_b) = fits
    _assert_same_fit(obj_a, params_a, obj_b, params_b)
