"""The compiled Izhikevich engine's library: its N(0, 1) generator and its build errors.

The network loop itself is checked against the eager engine in
``tests/neuro/reservoir/test_simulation_compiled.py`` (bit-identical on the same noise).
"""
import math

import numpy as np
import pytest
import scipy.stats
import torch

from kernels.izhikevich import compiled

pytestmark = pytest.mark.skipif(compiled.find_compiler() is None, reason="no C compiler on this machine")

DRAWS = 1_000_000


@pytest.fixture(scope="module")
def draws() -> np.ndarray:
    return compiled.standard_normal(compiled.rng_state(20261126), DRAWS).numpy()


def test_ziggurat_matches_the_normal_distribution(draws):
    # Kolmogorov-Smirnov against scipy's normal CDF: at n = 1e6 the 0.1% critical value of
    # D is sqrt(ln(2 / 0.001) / 2) / sqrt(n) = 1.95e-3 (a wrong layer table or sign bit
    # moves D by ~1e-2 or more)
    statistic = scipy.stats.kstest(draws, "norm").statistic
    assert statistic < math.sqrt(math.log(2 / 1e-3) / 2) / math.sqrt(DRAWS)
    # moments within 5 standard errors (se of the mean 1/sqrt(n), of the variance
    # sqrt(2/n), of the fourth moment sqrt((105 - 9)/n))
    assert abs(draws.mean()) < 5 / math.sqrt(DRAWS)
    assert abs(draws.var() - 1.0) < 5 * math.sqrt(2 / DRAWS)
    assert abs((draws**4).mean() - 3.0) < 5 * math.sqrt(96 / DRAWS)
    # the tail beyond R = 3.654 (the ziggurat's separate tail sampler) and the sign
    beyond = int((np.abs(draws) > 3.6541528853610088).sum())
    expected = DRAWS * 2 * scipy.stats.norm.sf(3.6541528853610088)  # ~258
    assert abs(beyond - expected) < 5 * math.sqrt(expected)  # Poisson count
    assert abs((draws > 0).mean() - 0.5) < 5 * 0.5 / math.sqrt(DRAWS)


def test_draws_are_uncorrelated_in_sequence(draws):
    # lag-1 and lag-4 (one vector of lanes) autocorrelation ~ N(0, 1/n): within 5/sqrt(n)
    for lag in (1, 4):
        assert abs(np.corrcoef(draws[:-lag], draws[lag:])[0, 1]) < 5 / math.sqrt(DRAWS)


def test_generator_is_deterministic_per_seed_and_advances():
    first = compiled.standard_normal(compiled.rng_state(7), 64)
    state = compiled.rng_state(7)
    again = compiled.standard_normal(state, 32)
    rest = compiled.standard_normal(state, 32)
    assert torch.equal(first, torch.cat([again, rest]))  # one stream, resumable
    assert not torch.equal(first, compiled.standard_normal(compiled.rng_state(8), 64))
    assert torch.equal(compiled.rng_state(2**64 + 7), compiled.rng_state(7))  # seeds modulo 2**64


def test_bad_generator_state_is_refused():
    with pytest.raises(ValueError, match="rng=.*rng_state"):
        compiled.standard_normal(torch.zeros(4, dtype=torch.int64), 8)


def test_missing_compiler_raises_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("NEUROBRIDGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-c-compiler-nb")
    assert compiled.find_compiler() is None
    with pytest.raises(compiled.CompilerNotFoundError, match="no-such-c-compiler-nb.*engine='eager'"):
        compiled.load_library()
    monkeypatch.delenv("CC")
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    with pytest.raises(compiled.CompilerNotFoundError, match="'gcc' and 'cc'"):
        compiled.load_library()
    from neuro.reservoir.network import make_reservoir, simulate

    params, state = make_reservoir(20, 0, in_degree=3, seed=0)
    with pytest.raises(compiled.CompilerNotFoundError):
        simulate(params, state, None, 0.5, num_steps=3, seed=0, engine="compiled")
    monkeypatch.setenv("NEUROBRIDGE_KERNELS", "naive")  # the torch reference on CPU (GPU machines too)
    assert simulate(params, state, None, 0.5, num_steps=3, seed=0).state.step == 3  # eager needs none


def test_failing_build_reports_the_compiler_output(monkeypatch, tmp_path):
    monkeypatch.setenv("NEUROBRIDGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    if compiled.find_compiler() is None:
        pytest.skip("no `false` executable on PATH")
    with pytest.raises(RuntimeError, match="building the compiled Izhikevich engine failed"):
        compiled.load_library()
    assert not list(tmp_path.glob("*.so"))  # nothing half-built is left to load


def test_unwritable_cache_falls_back_to_the_temporary_directory(monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("NEUROBRIDGE_CACHE_DIR", str(blocked / "cache"))  # mkdir fails
    monkeypatch.setattr(compiled.tempfile, "gettempdir", lambda: str(tmp_path))
    library = compiled.load_library()
    assert library.nb_rng_words() == 4 + 4 * compiled.LANES
    assert list(tmp_path.glob("neurobridge-*/izhikevich_f32_*.so"))


def test_compiled_run_refuses_tables_the_c_loop_would_overrun():
    # the C loop writes state + target for every synapse of a spiking neuron: a target
    # outside the state buffer, a per-neuron array of another size or a tensor off the CPU
    # must be refused up front with the argument's name
    batch, n, width = 2, 5, 3
    state = torch.zeros(batch, 3 * n + 1)
    good = {"u_decay": torch.ones(n), "u_v_gain": torch.ones(batch, n), "v_reset": torch.full((1, n), -65.0),
            "targets": torch.zeros(n, width, dtype=torch.int64), "weights": torch.ones(batch * n, width)}

    def make(**changes):
        args = {**good, **changes}
        return compiled.CompiledRun(state, 0.25, 0.04, 5.0, args["u_decay"], args["u_v_gain"], args["v_reset"],
                                    30.0, None, args["targets"], args["weights"], shared=True)

    assert make().width == width
    with pytest.raises(ValueError, match=r"targets hold slots 0\.\.16; allowed 0\.\.15"):
        make(targets=torch.full((n, width), 3 * n + 1, dtype=torch.int64).index_fill_(0, torch.tensor([0]), 0))
    with pytest.raises(ValueError, match="targets hold slots -1"):
        make(targets=torch.full((n, width), -1, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"u_decay has shape \[4\]"):
        make(u_decay=torch.ones(4))
    with pytest.raises(ValueError, match=r"v_reset has shape \[3, 5\]"):
        make(v_reset=torch.ones(3, n))
    with pytest.raises(ValueError, match="weights is on meta"):
        make(weights=torch.ones(batch * n, width, device="meta"))
