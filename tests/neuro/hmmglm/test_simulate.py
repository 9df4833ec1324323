"""The problem generators: a draw whose rates run away is discarded and drawn again from the
same generator; a draw that stays bounded is returned as it is."""
import numpy as np
import pytest

from neuro.hmmglm import simulate
from neuro.hmmglm.seeding import numpy_generator


def _same_problem(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f))
               for f in ("spikes", "states", "rates", "bias", "weights", "transition"))


@pytest.mark.parametrize("seed", [6, 16, 26])
def test_a_seed_whose_first_draw_runs_away_gets_the_next_bounded_draw(seed):
    rng, discarded = numpy_generator(seed), 0
    while True:
        try:
            bounded = simulate._draw_reference(20_000, rng, "softplus")
            break
        except simulate.RatesDiverged as error:
            assert "rates diverged at bin" in str(error)
            discarded += 1
    assert 1 <= discarded < simulate.MAX_PROBLEM_DRAWS
    problem = simulate.reference_problem(20_000, seed=seed)
    assert _same_problem(problem, bounded)
    assert np.all(np.isfinite(problem.rates)) and problem.rates.max() < simulate.RATE_LIMIT
    assert 0.1 < problem.spikes.mean() < 0.3  # the documented ~0.18 spikes per bin


def test_a_bounded_first_draw_is_returned_unchanged():
    for generator, draw in ((simulate.reference_problem, simulate._draw_reference),
                            (simulate.paper_problem, lambda t, rng, link: simulate._draw_paper(t, rng, link, 5, 20))):
        assert _same_problem(generator(3_000, seed=0), draw(3_000, numpy_generator(0), "softplus"))


def test_all_draws_running_away_is_a_named_error(monkeypatch):
    monkeypatch.setattr(simulate, "RATE_LIMIT", 1e-3)  # every bin's rate exceeds it
    for generator in (simulate.reference_problem, simulate.paper_problem):
        with pytest.raises(simulate.RatesDiverged, match=r"all 10 draws of this problem \(seed=4\) ran away"):
            generator(200, seed=4)


def test_a_paper_problem_too_large_to_stay_bounded_names_num_neurons():
    # the paper's strengths do not shrink with N: at N=100 every draw runs away
    with pytest.raises(simulate.RatesDiverged, match=r"use num_neurons <= 60 \(got 100\)"):
        simulate.paper_problem(2_000, seed=0, num_neurons=100)
