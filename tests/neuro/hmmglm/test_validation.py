"""Every bad input raises a ValueError/TypeError that names the problem."""

import numpy as np
import pytest
import torch

from neuro.hmmglm import (
    HMMGLM,
    exponential_basis,
    forward_backward,
    make_params,
    paper_problem,
    reference_problem,
    viterbi,
)


@pytest.fixture
def model():
    return HMMGLM(2, 3, basis=exponential_basis(4, (1.0,)))


def good_spikes(steps=50):
    return np.random.default_rng(0).poisson(0.3, (steps, 3)).astype(float)


@pytest.mark.parametrize("mutate,message", [
    (lambda y: y - 5.0, "negative"),
    (lambda y: y + 0.5, "non-integer"),
    (lambda y: np.where(np.arange(50)[:, None] == 3, np.nan, y), "NaN or inf"),
    (lambda y: np.where(np.arange(50)[:, None] == 3, np.inf, y), "NaN or inf"),
    (lambda y: y[:, 0], "rank 2"),
    (lambda y: y[None], "rank 2"),
    (lambda y: y[:, :2], "neurons"),
    (lambda y: y[:4], "shorter than the history basis"),
])
def test_bad_counts(model, mutate, message):
    with pytest.raises(ValueError, match=message):
        model.fit(mutate(good_spikes()), num_iters=1)


def test_counts_are_checked_before_the_cast_to_the_model_dtype():
    # a float32 model rounded 1 + 1e-8 to 1 first and took it as a whole count
    spikes = good_spikes()
    spikes[3, 0] = 1 + 1e-8
    for dtype in (torch.float32, torch.float64):
        with pytest.raises(ValueError, match="non-integer"):
            HMMGLM(2, 3, basis=exponential_basis(4, (1.0,)), dtype=dtype).fit(spikes, num_iters=1)


def test_bad_counts_in_a_list_name_the_sequence(model):
    with pytest.raises(ValueError, match=r"spikes\[1\].*negative"):
        model.fit([good_spikes(), -good_spikes() - 1], num_iters=1)
    with pytest.raises(ValueError, match="empty list"):
        model.fit([], num_iters=1)
    with pytest.raises(TypeError, match="numeric"):
        model.fit(np.array([["a", "b", "c"]] * 10), num_iters=1)


def test_the_default_link_follows_the_distribution():
    assert HMMGLM(2, 3).settings.link == "softplus"
    assert HMMGLM(2, 3, distribution="bernoulli").settings.link == "logistic"  # its only link
    assert HMMGLM(2, 3, link="exp").settings.link == "exp"


@pytest.mark.parametrize("distribution", [["poisson"], {"poisson": 1}, "gaussian", None])
def test_a_bad_distribution_with_the_default_link_is_named(distribution):
    # link=None looked the distribution up in a dict first: an unhashable one raised
    # "TypeError: unhashable type: 'list'" instead of naming the argument
    with pytest.raises(ValueError, match="distribution must be one of"):
        HMMGLM(2, 3, distribution=distribution)


def test_bernoulli_rejects_counts_above_one():
    m = HMMGLM(2, 3, basis=exponential_basis(2, (1.0,)), distribution="bernoulli")
    with pytest.raises(ValueError, match="bernoulli needs 0/1"):
        m.fit(good_spikes() + 2, num_iters=1)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"num_states": 0}, ValueError, "num_states must be >= 1, got 0"),
    ({"num_states": 1.5}, TypeError, "num_states must be an int >= 1, got 1.5"),
    ({"num_neurons": 0}, ValueError, "num_neurons"),
    ({"link": "identity"}, ValueError, "link"),
    ({"distribution": "gaussian"}, ValueError, "distribution"),
    ({"distribution": "bernoulli", "link": "exp"}, ValueError, "link for distribution='bernoulli'"),
    ({"prior": "laplace"}, ValueError, "prior must be one of"),
    ({"prior": "onehot", "basis": exponential_basis(5, (1.0, 2.0))}, ValueError, "one function"),
    ({"stickiness": -1.0}, ValueError, "stickiness"),
    ({"stickiness": float("nan")}, ValueError, "stickiness must be finite and >= 0"),
    ({"prior_sigma": float("inf")}, ValueError, "prior_sigma must be finite and > 0"),
    ({"transition_concentration": 0.5}, ValueError, "transition_concentration must be finite and >= 1"),
    ({"basis": np.full((2, 3), np.nan)}, ValueError, "basis must be finite"),
    ({"type_concentration": (1.2, 3.0)}, ValueError, r"type_concentration must be 3 numbers >= 1 .*got 2: \(1.2, 3.0\)"),
    ({"type_concentration": "abc"}, TypeError, "type_concentration must be 3 numbers"),
    ({"type_concentration": (0.2, 1.6, 0.2)}, ValueError, r"type_concentration\[0\] must be a finite real number in \[1.0, inf\), got 0.2"),
    ({"type_concentration": (1.0, float("nan"), 1.0)}, ValueError, r"type_concentration\[1\] .* got nan"),
    ({"newton_steps": 0}, ValueError, "newton_steps must be >= 1, got 0"),
    ({"newton_steps": 1.5}, TypeError, "newton_steps must be an int >= 1, got 1.5"),
])
def test_bad_hyperparameters(kwargs, error, message):
    args = {"num_states": 2, "num_neurons": 3}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        HMMGLM(**args)


def test_type_concentration_may_be_an_array():
    for value in (np.array([1.2, 3.0, 1.2]), torch.tensor([1.2, 3.0, 1.2], dtype=torch.float64)):
        assert HMMGLM(2, 3, type_concentration=value).settings.type_concentration == (1.2, 3.0, 1.2)


@pytest.mark.parametrize("name", ["shared_bias", "learn_prior_mean", "learn_prior_sigma"])
def test_flags_must_be_bools(name):
    with pytest.raises(TypeError, match=f"{name} must be True or False, got 'yes'"):
        HMMGLM(2, 3, **{name: "yes"})


@pytest.mark.parametrize("kwargs,error,message", [
    ({"dtype": torch.float16}, TypeError, "dtype must be torch.float32, torch.float64 or None"),
    ({"dtype": "float64"}, TypeError, "got 'float64'"),
    ({"device": "gpu0"}, ValueError, "device must be a torch.device or a device string"),
])
def test_bad_dtype_and_device(kwargs, error, message):
    with pytest.raises(error, match=message):
        HMMGLM(2, 3, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_device_without_cuda_is_refused_up_front():
    with pytest.raises(ValueError, match="torch.cuda.is_available"):
        HMMGLM(2, 3, device="cuda")


@pytest.mark.parametrize("spikes", [np.zeros((50, 3), dtype=complex), torch.zeros(50, 3, dtype=torch.complex64)])
def test_complex_spikes_are_refused_not_cast(model, spikes):
    with pytest.raises(TypeError, match=r"spikes must be real counts, got dtype (torch\.)?complex"):
        model.fit(spikes, num_iters=1)


def test_bad_parameters_and_fit_arguments(model):
    with pytest.raises(ValueError, match="transition must be non-negative with rows summing to 1"):
        make_params([0.5, 0.5], [[0.9, 0.2], [0.5, 0.5]], np.zeros((2, 3)), np.zeros((2, 3, 3, 1)))
    with pytest.raises(ValueError, match="initial must be non-negative"):
        make_params([0.7, 0.7], [[0.9, 0.1], [0.5, 0.5]], np.zeros((2, 3)), np.zeros((2, 3, 3, 1)))
    with pytest.raises(ValueError, match="weights must be"):
        make_params([0.5, 0.5], [[0.9, 0.1], [0.5, 0.5]], np.zeros((2, 3)), np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match=r"params.weights must have shape \(2, 3, 3, 1\)"):
        model.set_params(make_params([0.5, 0.5], [[0.9, 0.1], [0.5, 0.5]], np.zeros((2, 3)),
                                     np.zeros((2, 3, 3, 2))))
    with pytest.raises(ValueError, match="no parameters"):
        model.log_likelihood(good_spikes())
    with pytest.raises(ValueError, match="num_restarts"):
        model.fit(good_spikes(), num_restarts=0)
    with pytest.raises(ValueError, match="tolerance"):
        model.fit(good_spikes(), tolerance=float("nan"))
    with pytest.raises(TypeError, match="seed"):
        model.fit(good_spikes(), seed="abc")
    model.fit(good_spikes(), num_iters=2)
    with pytest.raises(ValueError, match="perm must be a permutation"):
        model.permute([0, 0])
    with pytest.raises(ValueError, match="perm must be a permutation of range\\(2\\), got 'ab'"):
        model.permute("ab")
    with pytest.raises(ValueError, match="num_timesteps"):
        model.sample(0)
    with pytest.raises(TypeError, match="params must be an HMMGLMParams .* got dict"):
        model.set_params({})


def _good_params(restarts=None):
    p = make_params([0.5, 0.5], [[0.9, 0.1], [0.5, 0.5]], np.zeros((2, 3)), np.zeros((2, 3, 3, 1)))
    if restarts is None:
        return p
    return type(p)(*(t.expand(restarts, *t.shape).clone() for t in
                     (p.log_initial, p.log_transition, p.bias, p.weights)))


def _with(params, **fields):
    values = {name: getattr(params, name) for name in ("log_initial", "log_transition", "bias", "weights")}
    return type(params)(**{**values, **fields})


@pytest.mark.parametrize("change,error,message", [
    (lambda p: {}, TypeError, r"init_params must be an HMMGLMParams .* got dict"),
    (lambda p: _with(p, bias=torch.zeros(3, 3, dtype=torch.float64)), ValueError,
     r"init_params.bias must have shape \(2, 3\) or \(R, \*\(2, 3\)\) for K=2, N=3, L=1, got \(3, 3\)"),
    (lambda p: _with(p, weights=torch.zeros(2, 3, 3, 2, dtype=torch.float64)), ValueError,
     r"init_params.weights must have shape \(2, 3, 3, 1\)"),
    (lambda p: _with(p, weights=torch.zeros(2, 4, 4, 1, dtype=torch.float64)), ValueError,
     r"init_params.weights must have shape .* N=3"),
    (lambda p: _with(p, bias=torch.full((2, 3), torch.nan, dtype=torch.float64)), ValueError,
     r"init_params.bias must be finite"),
    (lambda p: _with(p, log_transition=torch.log(torch.tensor([[0.9, 0.3], [0.5, 0.5]], dtype=torch.float64))),
     ValueError, r"init_params.log_transition must be log-probabilities with rows summing to 1 after exp, got row sums \[1.2"),
    (lambda p: _with(p, log_initial=p.log_initial.long()), TypeError,
     r"init_params.log_initial must be a floating torch.Tensor, got torch.int64"),
    (lambda p: _with(_good_params(3), bias=torch.zeros(2, 2, 3, dtype=torch.float64)), ValueError,
     r"init_params: every field needs the same restart axis"),
])
def test_bad_init_params_are_named(model, change, error, message):
    with pytest.raises(error, match=message):
        model.fit(good_spikes(), num_iters=1, init_params=change(_good_params()))


def test_init_params_restarts_must_agree_with_num_restarts(model):
    with pytest.raises(ValueError, match=r"init_params has 3 restarts .* but num_restarts=2"):
        model.fit(good_spikes(), num_iters=1, init_params=_good_params(3), num_restarts=2)
    assert len(model.fit(good_spikes(), num_iters=1, init_params=_good_params(3))["objective_all_restarts"][0]) == 3


def test_set_params_checks_rows_and_drops_the_old_fitted_prior_state():
    model = HMMGLM(2, 3, basis=exponential_basis(4, (1.0,)), prior="onehot")
    bad = _with(_good_params(), log_initial=torch.log(torch.tensor([0.6, 0.6], dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"params.log_initial must be log-probabilities"):
        model.set_params(bad)
    model.fit(good_spikes(200), num_iters=2, warmup_iters=1)
    assert model.prior_state is not None
    model.set_params(_good_params())
    assert model.prior_state is None


@pytest.mark.parametrize("kwargs,error,message", [
    ({"num_iters": True}, TypeError, "num_iters must be an int >= 0, got True"),
    ({"num_iters": 2.5}, TypeError, "num_iters must be an int >= 0, got 2.5"),
    ({"num_iters": float("inf")}, TypeError, "num_iters must be an int >= 0, got inf"),
    ({"num_restarts": 0}, ValueError, "num_restarts must be >= 1, got 0"),
    ({"warmup_iters": -1}, ValueError, "warmup_iters must be >= 0, got -1"),
    ({"tolerance": float("inf")}, ValueError, r"tolerance must be a finite real number in \[0.0, inf\), got inf"),
    ({"tolerance": -1e-3}, ValueError, r"tolerance must be a finite real number in \[0.0, inf\)"),
    ({"tolerance": "1e-5"}, TypeError, "tolerance must be a finite real number"),
    ({"smoothing_bins": 0.0}, ValueError, r"smoothing_bins must be a finite real number in \(0.0, inf\), got 0.0"),
    ({"smoothing_bins": float("nan")}, ValueError, "smoothing_bins must be a finite real number .* got nan"),
])
@pytest.mark.parametrize("method", ["fit", "fit_sweep"])
def test_bad_fit_arguments_name_the_argument(model, kwargs, error, message, method):
    call = model.fit if method == "fit" else (lambda spikes, **kw: model.fit_sweep(spikes, {}, **kw))
    with pytest.raises(error, match=message):
        call(good_spikes(), **kwargs)


@pytest.mark.parametrize("call,message", [
    (lambda: reference_problem(-1), "num_timesteps must be >= 1, got -1"),
    (lambda: reference_problem(100, link="logistic"), "link must be 'softplus' or 'exp'"),
    (lambda: paper_problem(100, num_states=1), "num_states must be >= 2, got 1"),
    (lambda: paper_problem(100, num_neurons=0), "num_neurons must be >= 1, got 0"),
])
def test_bad_problem_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_inference_arguments():
    with pytest.raises(ValueError, match="log_likelihoods must have shape"):
        forward_backward(torch.zeros(2), torch.zeros(2, 2), torch.zeros(5))
    with pytest.raises(ValueError, match=r"must be \(K,\), \(1, K\) or \(B, K\) .* for K=2, B=1"):
        forward_backward(torch.zeros(3), torch.zeros(3, 3), torch.zeros(5, 2))
    with pytest.raises(ValueError, match=r"log_initial \(3, 2\) .* for K=2, B=2"):  # per-sequence, wrong B
        forward_backward(torch.zeros(3, 2), torch.zeros(2, 2), torch.zeros(2, 5, 2))
    for function in (forward_backward, viterbi):
        with pytest.raises(ValueError, match="log_likelihoods has T=0 steps"):
            function(torch.zeros(2), torch.zeros(2, 2), torch.zeros(0, 2))
    with pytest.raises(TypeError, match=r"lengths must be .* integers in \[1, 5\], got dtype torch.float32"):
        forward_backward(torch.zeros(2), torch.zeros(2, 2), torch.zeros(2, 5, 2), lengths=torch.tensor([2.5, 5.0]))
    with pytest.raises(ValueError, match="lengths"):
        forward_backward(torch.zeros(2), torch.zeros(2, 2), torch.zeros(2, 5, 2), lengths=torch.tensor([0, 9]))
    with pytest.raises(TypeError, match="log_likelihoods must be a floating-point torch.Tensor, got torch.int64"):
        forward_backward(torch.zeros(2), torch.zeros(2, 2), torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="log_likelihoods must be a floating-point torch.Tensor, got ndarray"):
        viterbi(torch.zeros(2), torch.zeros(2, 2), np.zeros((5, 2)))
    bad = torch.zeros(5, 2, dtype=torch.float64)
    bad[3, 1] = float("nan")
    for function in (forward_backward, viterbi):
        with pytest.raises(ValueError, match=r"log_likelihoods contains 1 NaN or \+inf entries \(the first at \(sequence, step, state\) = \(0, 3, 1\)\)"):
            function(torch.zeros(2), torch.zeros(2, 2), bad)
        with pytest.raises(ValueError, match="log_transition contains 1 NaN or"):
            function(torch.zeros(2), torch.tensor([[0.0, float("inf")], [0.0, 0.0]]), bad.nan_to_num())
    # NaN on padding (beyond a sequence's length) is never read: no error
    padded = torch.zeros(2, 5, 2, dtype=torch.float64)
    padded[0, 4] = float("nan")
    for function in (forward_backward, viterbi):
        function(torch.zeros(2), torch.zeros(2, 2), padded, lengths=torch.tensor([4, 5]))


# --- large sizes: the fit's memory is estimated and checked before anything is allocated


def test_fit_refuses_oversize_problem_before_allocating():
    """T = 2,000,000 bins x N = 100 neurons, K = 5 (the old code converted the counts and
    built the design, then failed inside torch's allocator or was OOM-killed). The counts
    are a zero-stride view, so the test allocates nothing big."""
    import numpy as np

    from neuro.hmmglm import HMMGLM
    from neuro.hmmglm.model import estimate_fit_bytes

    spikes = np.broadcast_to(np.zeros(1, dtype=np.int8), (2_000_000, 100))
    model = HMMGLM(5, 100)
    # the design has N L + 1 columns for L basis functions (rows of the basis), not lags
    num_basis, num_lags = model.basis.shape
    assert num_basis != num_lags
    need = estimate_fit_bytes(2_000_000, 100, num_basis, 5, 1, model.dtype)
    with pytest.raises(ValueError, match=rf"2000000 bins x 100 neurons.*needs about {need / 2**30:.2f} GiB"
                                         r".*memory_limit_bytes=8589934592"):
        model.fit(spikes, num_iters=1)
    with pytest.raises(ValueError, match=r"64 restarts.*memory_limit_bytes=1000000"):
        HMMGLM(2, 3).fit_sweep(np.zeros((50_000, 3)), {"stickiness": list(range(16))}, num_restarts=4,
                               memory_limit_bytes=10**6)


def test_fit_memory_estimate_tracks_its_terms():
    from neuro.hmmglm.model import PACKED_MAX_BYTES, estimate_fit_bytes

    small = estimate_fit_bytes(1000, 10, 3, 2, 1)
    dim = 31
    assert small == (1000 * dim * (dim + 1) // 2 * 4 + 1000 * (3 * dim + 20 + 8 * 2 * 10) * 8
                     + 2 * 2 * 10 * dim * dim * 8)  # packed products, per-bin arrays, Newton solve
    # at N = 200, L = 3 the (R K N, D, D) Hessians and their factors dominate: 2 x 2.7 GiB
    wide = estimate_fit_bytes(20_000, 200, 3, 5, 1)
    assert wide >= 2 * 5 * 200 * 601**2 * 8 + PACKED_MAX_BYTES
    big = estimate_fit_bytes(2_000_000, 100, 3, 5, 1)
    assert big > PACKED_MAX_BYTES + 2_000_000 * 8 * 5 * 100 * 8


@pytest.mark.parametrize("block_rows", [1, 3, 7, 50])
def test_packed_outer_products_write_in_place_blocks(monkeypatch, block_rows):
    """_pack writes every product straight into its output, a block of rows at a time (no
    gathered temporaries: gathering all rows at once made the peak ~3x the array), and
    its products equal the gathered phi_i phi_j of the upper triangle exactly, for any
    block size (1, one that leaves a remainder, one block)."""
    from neuro.hmmglm import newton

    monkeypatch.setattr(newton, "PACK_BLOCK_BYTES", 4 * 6 * block_rows)  # rows of 6 fp32
    design = torch.randn(50, 6, dtype=torch.float64)
    design[::4, 2] = 0.0
    seen = []
    real_mul = torch.mul

    def spy(a, b, *args, **kwargs):
        seen.append((a.shape[0], kwargs.get("out")))
        return real_mul(a, b, *args, **kwargs)

    monkeypatch.setattr(newton.torch, "mul", spy)
    outer = newton.PackedOuterProducts(design)
    monkeypatch.setattr(newton.torch, "mul", real_mul)
    low = design.float()
    assert torch.equal(outer.packed, low[:, outer.rows] * low[:, outer.cols])
    assert len(seen) == 6 * -(-50 // block_rows)  # one product per row i of each block
    for rows, out in seen:
        assert rows <= block_rows
        assert out is not None and out.untyped_storage().data_ptr() == outer.packed.untyped_storage().data_ptr()


@pytest.mark.parametrize("function", [forward_backward, viterbi])
@pytest.mark.parametrize("chunk,error,message", [
    (-1, ValueError, "chunk must be >= 1, got -1"),  # was torch's "numel: integer multiplication overflow"
    (2.5, TypeError, "chunk must be an int >= 1, got 2.5"),  # was torch's expand() TypeError
])
def test_bad_chunk_is_named(function, chunk, error, message):
    log_pi, log_a = torch.log(torch.full((2,), 0.5)), torch.log(torch.full((2, 2), 0.5))
    with pytest.raises(error, match=message):
        function(log_pi, log_a, torch.zeros(5, 2), chunk=chunk)


def test_return_pairwise_must_be_a_bool():
    # "no" was truthy: pairwise posteriors computed and returned
    log_pi, log_a = torch.log(torch.full((2,), 0.5)), torch.log(torch.full((2, 2), 0.5))
    with pytest.raises(TypeError, match="return_pairwise must be True or False, got 'no'"):
        forward_backward(log_pi, log_a, torch.zeros(5, 2), return_pairwise="no")


def test_no_states_is_named():
    with pytest.raises(ValueError, match="K=0 states"):  # was an IndexError from amax
        forward_backward(torch.zeros(0), torch.zeros(0, 0), torch.zeros(5, 0))


@pytest.mark.parametrize("change,error,message", [
    ({"bias": np.zeros(3)}, ValueError, r"bias must be \(K, N\) .* got shape \(3,\)"),  # was IndexError
    ({"initial": 0.5}, ValueError, r"initial \(\) / transition"),  # was IndexError
    ({"bias": np.full((2, 3), np.nan)}, ValueError, "bias must be finite"),
    ({"weights": np.full((2, 3, 3, 1), np.inf)}, ValueError, "weights must be finite"),
    ({"transition": [[1.0], [0.5, 0.5]]}, ValueError, "transition must be an array of real numbers"),
    ({"bias": object()}, TypeError, "bias must be an array of real numbers"),
    ({"dtype": torch.int64}, TypeError, "dtype must be a floating torch.dtype"),  # was "row sums 0"
    ({"dtype": "float32"}, TypeError, "dtype must be a floating torch.dtype"),  # was torch's to() error
])
def test_make_params_names_the_bad_argument(change, error, message):
    arguments = {"initial": [0.5, 0.5], "transition": [[0.9, 0.1], [0.5, 0.5]],
                 "bias": np.zeros((2, 3)), "weights": np.zeros((2, 3, 3, 1)), **change}
    with pytest.raises(error, match=message):
        make_params(**arguments)


def test_basis_may_be_a_tensor_that_requires_grad_and_a_bad_basis_is_named():
    basis = torch.tensor(exponential_basis(4, (1.0,)), requires_grad=True)
    model = HMMGLM(2, 3, basis=basis)  # was torch's "Can't call numpy() on Tensor that requires grad"
    np.testing.assert_array_equal(model.basis.numpy(), exponential_basis(4, (1.0,)))
    with pytest.raises(TypeError, match="basis must be a .* array of real numbers, got 'abc'"):
        HMMGLM(2, 3, basis="abc")


def test_a_progress_that_is_not_callable_is_named(model):
    with pytest.raises(TypeError, match="progress must be None or a callable"):  # was "'int' object is not callable"
        model.fit(good_spikes(), num_iters=1, progress=3)
