"""Masked non-negative CP: masked entries never matter, the EM-imputation oracle, missing rows."""
import numpy as np
import torch

from neuro.connectome.cp_ops import cp_reconstruct
from neuro.connectome.ntf import ntf
from neuro.connectome.rank import factor_match_score
from neuro.connectome.synthetic import make_planted_cp


def _random_mask(shape, fraction, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) >= fraction


def test_values_at_masked_entries_do_not_change_the_fit():
    planted = make_planted_cp((20, 15, 30, 3), 4, noise=0.1, seed=1)
    mask = _random_mask(planted.tensor.shape, 0.3, seed=2)
    scrambled = planted.tensor.clone()
    noise = torch.rand(scrambled.shape, generator=torch.Generator().manual_seed(3),
                       dtype=torch.float64) * 50.0
    scrambled[~mask] = noise[~mask]
    with_nan = planted.tensor.clone()
    with_nan[~mask] = float("nan")
    fits = [ntf(t, 4, mask=mask, n_iter_max=30, tol=0.0, seed=0)
            for t in (planted.tensor, scrambled, with_nan)]
    for other in fits[1:]:
        for a, b in zip(fits[0].factors, other.factors):
            assert torch.equal(a, b)
        assert torch.equal(fits[0].error_history, other.error_history)


def test_masked_iterates_equal_em_imputation_oracle():
    """Oracle: one unmasked HALS iteration on Z = M * X + (1 - M) * X_hat, repeated; the masked
    error is the plain residual over observed entries from a full reconstruction."""
    shape, rank = (12, 10, 14, 3), 3
    planted = make_planted_cp(shape, rank, noise=0.1, seed=4)
    mask = _random_mask(shape, 0.25, seed=5)
    generator = torch.Generator().manual_seed(6)
    init = [torch.rand(size, rank, generator=generator, dtype=torch.float64) for size in shape]
    ours_factors, ours_errors = [], []
    fit = ntf(planted.tensor, rank, mask=mask, init=init, n_iter_max=8, tol=0.0,
              callback=lambda i, f, e: (ours_factors.append([x.clone() for x in f]),
                                        ours_errors.append(e)))
    factors = [f.clone() for f in init]
    observed_norm = torch.linalg.vector_norm(planted.tensor[mask])
    ones = torch.ones(rank, dtype=torch.float64)
    for iteration in range(8):
        imputed = torch.where(mask, planted.tensor, cp_reconstruct(ones, factors))
        captured = []

        def capture(iteration, fitted, error, store=captured):
            store.append([x.clone() for x in fitted])

        ntf(imputed, rank, init=factors, n_iter_max=1, tol=0.0, callback=capture)
        factors = captured[0]
        residual = (planted.tensor - cp_reconstruct(ones, factors))[mask]
        expected_error = float(torch.linalg.vector_norm(residual) / observed_norm)
        for a, b in zip(ours_factors[iteration], factors):
            # float64; the two paths sum in different orders: agreement to ~1e-13 relative
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
        assert abs(ours_errors[iteration] - expected_error) < 1e-9
    assert (np.diff(fit.error_history.numpy()) <= 1e-10).all()


def test_twenty_percent_missing_neuron_rows_in_one_animal():
    shape, rank = (60, 60, 100, 4), 8
    planted = make_planted_cp(shape, rank, noise=0.1, seed=7)
    rng = np.random.default_rng(8)
    missing_rows = rng.choice(shape[0], size=shape[0] // 5, replace=False)
    mask = torch.ones(shape, dtype=torch.bool)
    mask[missing_rows, :, :, 0] = False
    corrupted = planted.tensor.clone()
    corrupted[~mask] = float("nan")
    fit = ntf(corrupted, rank, mask=mask, n_iter_max=80, seed=0)  # FMS ~0.995 by then
    truth = (torch.ones(rank, dtype=torch.float64), planted.factors)
    assert factor_match_score(fit, truth) >= 0.9
    assert (np.diff(fit.error_history.numpy()) <= 1e-10).all()


def test_masked_mu_runs_and_decreases():
    planted = make_planted_cp((15, 12, 20, 3), 3, noise=0.1, seed=9)
    mask = _random_mask(planted.tensor.shape, 0.2, seed=10)
    fit = ntf(planted.tensor, 3, mask=mask, method="mu", n_iter_max=60, seed=0)
    assert fit.error_history[-1] < fit.error_history[0]
    assert all((f >= 0).all() and torch.isfinite(f).all() for f in fit.factors)
