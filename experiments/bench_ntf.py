"""Non-negative CP speed: our HALS and MU against tensorly's, same tensor, same initialization.

The planted tensor of issue 5: rank 8, shape (100, 100, 200, 4), 10% Gaussian noise. One random
initialization is drawn and given to every fit. Our fits run a fixed number of iterations (no
early stop; the last error is the final error) and record a time stamp after every iteration
(the callback). From the same initialization tensorly's HALS / MU make the same iterates, so
tensorly runs only until it is within 1e-4 of that final error (at most `peer_max_iterations`;
when capped, its time to get there is its per-iteration time x the iteration count, flagged
as estimated); its error history is compared with ours on every iteration it ran (time
stamps: its once-per-iteration norm computation is wrapped). Reported per method: final
relative error, time to reach within 1e-4 of it, time per iteration (medians over repeats),
factor-match score against the planted factors and ours vs tensorly at the same iteration,
and the ratios ours / tensorly's (< 1: we are faster; the time-per-iteration ratio takes ours
over the same first iterations tensorly ran, as early iterations cost more). Our fits with extrapolation
(`ntf(..., extrapolate=True)`, other iterates than tensorly's) are timed to the same target. Masked HALS cost: a
masked iteration (20% of neuron rows missing in one animal; and 10% of entries missing at
random) over an unmasked one (tensorly has no masked HALS). Peak memory: the resident-set
high-water mark of a fresh process (warmed up on a small fit) from before the tensor is loaded
to the end of one fit, over the tensor's size, so the tensor itself counts 1 (Linux /proc).
tensorly runs with the numpy backend and the BLAS pool limited to `threads` as well.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

import numpy as np
import torch

from experiments.store import RunDir
from neuro.connectome.ntf import ntf
from neuro.connectome.rank import factor_match_score
from neuro.connectome.synthetic import make_planted_cp


@dataclass(frozen=True)
class Config:
    shape: tuple[int, ...] = field(default=(100, 100, 200, 4), metadata={"min": 1, "help": "tensor shape"})
    rank: int = field(default=8, metadata={"min": 1, "max": 64, "help": "planted and fitted rank"})
    noise: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0, "help": "noise / signal norm"})
    hals_iterations: int = field(default=200, metadata={"min": 2, "help": "our HALS iterations (final error)"})
    mu_iterations: int = field(default=500, metadata={"min": 2, "help": "our MU iterations (final error)"})
    peer_max_iterations: int = field(default=40, metadata={"min": 1, "help": "tensorly iterations at most"})
    repeats: int = field(default=3, metadata={"min": 1, "max": 20, "help": "repeats of our fits (median)"})
    peer_repeats: int = field(default=3, metadata={"min": 0, "max": 20, "help": "repeats of tensorly (0: skip)"})
    masked_iterations: int = field(default=10, metadata={"min": 2, "help": "iterations timed for masked HALS"})
    measure_memory: bool = field(default=True, metadata={"help": "peak-memory runs in fresh processes"})
    dtype: str = field(default="float64", metadata={"choices": ("float64", "float32")})
    threads: int = field(default=1, metadata={"min": 1, "max": 64, "help": "torch and BLAS threads"})


def _threads(count: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=count)


def _summarize(stamps: list[float], start: float, errors: list[float]) -> dict:
    final = errors[-1]
    reach = next(i for i, e in enumerate(errors) if e - final <= 1e-4)
    times = np.asarray(stamps) - start
    return {"final_error": final, "time_to_1e-4_s": float(times[reach]),
            "iterations_to_1e-4": reach + 1, "time_per_iteration_s": float(np.median(np.diff(
                np.concatenate([[0.0], times])))), "total_s": float(times[-1])}


def _ours(tensor, rank, method, init, iterations, mask=None, extrapolate=False):
    stamps, errors = [], []

    def callback(iteration, factors, error):
        if tensor.is_cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        errors.append(error)

    start = time.perf_counter()
    fit = ntf(tensor, rank, method=method, init=init, n_iter_max=iterations, tol=0.0, mask=mask,
              callback=callback, extrapolate=extrapolate)
    return _summarize(stamps, start, errors), (fit, stamps, start, errors)


def _tensorly(tensor: np.ndarray, rank, method, init, iterations):
    import tensorly as tl
    from tensorly.cp_tensor import CPTensor
    from tensorly.decomposition import _nn_cp

    tl.set_backend("numpy")
    stamps = []
    name = "cp_norm" if method == "hals" else "error_calc"
    original = getattr(_nn_cp, name)

    def stamped(*args, **kwargs):  # called once per iteration, after the last mode's update
        result = original(*args, **kwargs)
        stamps.append(time.perf_counter())
        return result

    peer = _nn_cp.non_negative_parafac_hals if method == "hals" else _nn_cp.non_negative_parafac
    setattr(_nn_cp, name, stamped)
    try:
        start = time.perf_counter()
        # tol=1e-300 keeps error tracking on (tol=0 switches it off) without stopping early
        (weights, factors), errors = peer(
            tensor, rank, init=CPTensor((np.ones(rank), [f.copy() for f in init])),
            n_iter_max=iterations, tol=1e-300, return_errors=True)
    finally:
        setattr(_nn_cp, name, original)
    summary = {"stamps": np.asarray(stamps) - start, "errors": [float(e) for e in errors]}
    return summary, (torch.from_numpy(np.asarray(weights)), [torch.from_numpy(f) for f in factors])


def _memory_child(path, rank, iterations, method, mask_rows, queue):  # runs in a fresh process
    torch.set_num_threads(1)

    def rss_kib(field_name):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name):
                    return int(line.split()[1])
        raise RuntimeError(field_name)

    # Warm-up on a small tensor first: libraries' code and pools that the first call maps
    # belong to the process, not to the fit's working memory.
    small = torch.rand(6, 5, 4, 3, dtype=torch.float64)
    small_mask = torch.ones(small.shape, dtype=torch.bool)
    small_mask[0, ..., 0] = False
    if method == "tensorly":
        import tensorly as tl
        from tensorly.decomposition import non_negative_parafac_hals

        tl.set_backend("numpy")
        non_negative_parafac_hals(small.numpy(), 2, init="random", n_iter_max=2, random_state=0)
    else:
        ntf(small, 2, method=method, n_iter_max=2, mask=small_mask if mask_rows else None)
    before = rss_kib("VmRSS:")
    array = np.load(path)
    tensor = torch.from_numpy(array)
    mask = None
    if mask_rows:
        mask = torch.ones(tensor.shape, dtype=torch.bool)
        mask[: tensor.shape[0] // 5, ..., 0] = False
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the high-water mark: only the fit's peak is measured
    if method == "tensorly":
        non_negative_parafac_hals(array, rank, init="random", n_iter_max=iterations, tol=1e-300,
                                  random_state=0)
    else:
        ntf(tensor, rank, method=method, n_iter_max=iterations, tol=0.0, mask=mask)
    queue.put((rss_kib("VmHWM:") - before) * 1024)


def _peak_memory(tensor: torch.Tensor, rank, iterations, method, mask_rows) -> float:
    """Peak resident memory of a fresh process running the fit, over the tensor's size."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "tensor_for_memory.npy"
        np.save(path, tensor.cpu().numpy())
        process = context.Process(target=_memory_child,
                                  args=(str(path), rank, iterations, method, mask_rows, queue))
        process.start()
        try:
            while True:  # wait for the child's answer, but never for a child that died
                try:
                    peak = queue.get(timeout=5)
                    break
                except Empty:
                    if not process.is_alive():
                        raise RuntimeError(f"memory-measuring process died (exit code "
                                           f"{process.exitcode})") from None
        finally:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    return peak / tensor.element_size() / tensor.numel()


def run(config: Config, out: RunDir) -> dict[str, float]:
    torch.set_num_threads(config.threads)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    seeds = np.random.SeedSequence(out.seed).spawn(2)
    planted = make_planted_cp(config.shape, config.rank, noise=config.noise,
                              seed=int(seeds[0].generate_state(1)[0]), dtype=dtype, device=out.device)
    truth = (torch.ones(config.rank, dtype=torch.float64), [f.double().cpu() for f in planted.factors])
    init_rng = np.random.default_rng(seeds[1])
    init = [init_rng.random((size, config.rank)).astype(np.float64 if dtype == torch.float64
                                                         else np.float32) for size in config.shape]
    init_torch = [torch.from_numpy(f).to(out.device) for f in init]
    out.log(f"planted tensor {config.shape}, rank {config.rank}, noise floor {planted.noise_floor:.5f}")
    rows, metrics = [], {"noise_floor": planted.noise_floor}
    with _threads(config.threads):
        for method, iterations in (("hals", config.hals_iterations), ("mu", config.mu_iterations)):
            ours_runs = [_ours(planted.tensor, config.rank, method, init_torch, iterations)
                         for _ in out.progress(range(config.repeats), desc=f"ours {method}")]
            ours = {key: statistics.median(run[0][key] for run in ours_runs)
                    for key in ours_runs[0][0]}
            ours_fit = ours_runs[0][1][0]
            final, needed = ours["final_error"], int(ours["iterations_to_1e-4"])
            # the same method with extrapolation: time to within 1e-4 of the plain final error
            extrapolated = []
            for _ in range(config.repeats):
                _, (fit_x, stamps_x, start_x, errors_x) = _ours(
                    planted.tensor, config.rank, method, init_torch, iterations, extrapolate=True)
                reach = next((i for i, e in enumerate(errors_x) if e - final <= 1e-4), None)
                extrapolated.append((reach, stamps_x, start_x, errors_x[-1], fit_x))
            reach_x = extrapolated[0][0]
            if reach_x is not None:
                time_x = statistics.median(run[1][reach_x] - run[2] for run in extrapolated)
                metrics[f"ours_{method}_extrapolated_iterations_to_1e-4"] = reach_x + 1
                metrics[f"ours_{method}_extrapolated_time_to_1e-4_s"] = time_x
                metrics[f"ours_{method}_extrapolated_final_error"] = extrapolated[0][3]
                extrapolated_row = ({"method": f"{method} + extrapolation", "implementation": "neurobridge",
                             "iterations": iterations, "final_error": extrapolated[0][3],
                             "time_to_1e-4_s": time_x, "iterations_to_1e-4": reach_x + 1,
                             "fms_vs_planted": factor_match_score(extrapolated[0][4], truth)})
            else:
                extrapolated_row = None
            row = {"method": method, "implementation": "neurobridge", "iterations": iterations, **ours,
                   "fms_vs_planted": factor_match_score(ours_fit, truth)}
            rows.append(row)
            if extrapolated_row is not None:
                rows.append(extrapolated_row)
            for key in ("final_error", "time_to_1e-4_s", "time_per_iteration_s", "iterations_to_1e-4"):
                metrics[f"ours_{method}_{key}"] = ours[key]
            metrics[f"ours_{method}_fms"] = row["fms_vs_planted"]
            if not config.peer_repeats:
                continue
            # Same initialization and update order give the same iterates, so tensorly runs only
            # until it reaches our final error + 1e-4 (at most peer_max_iterations); its error
            # history is checked against ours on every iteration it ran.
            peer_iterations = min(needed + 1, config.peer_max_iterations, iterations)
            tensor_np = planted.tensor.cpu().numpy()
            peer_runs = [_tensorly(tensor_np, config.rank, method, init, peer_iterations)
                         for _ in out.progress(range(config.peer_repeats), desc=f"tensorly {method}")]
            # tensorly stops early on two identical errors (|change| < tol = 1e-300): compare
            # the iterations every repeat ran
            ran = min(min(len(run[0]["stamps"]), len(run[0]["errors"])) for run in peer_runs)
            stamps = np.median([run[0]["stamps"][:ran] for run in peer_runs], axis=0)
            peer_errors = peer_runs[0][0]["errors"][:ran]
            ours_errors = ours_fit.error_history[1:ran + 1].numpy()
            per_iteration = float(np.median(np.diff(np.concatenate([[0.0], stamps]))))
            # ours per iteration over the same first `ran` iterations (early HALS iterations
            # run more inner sweeps: a median over all of ours' would favour us)
            ours_same = statistics.median(
                float(np.median(np.diff(np.concatenate([[0.0], np.asarray(run[1][1][:ran]) - run[1][2]]))))
                for run in ours_runs)
            reached = [i for i, e in enumerate(peer_errors) if e - final <= 1e-4]
            if reached:
                peer_time, estimated = float(stamps[reached[0]]), False
            else:  # identical iterates: it would get there after `needed` iterations
                peer_time, estimated = float(stamps[0]) + per_iteration * (needed - 1), True
            peer_row = {"method": method,
                        "implementation": "tensorly " + __import__("tensorly").__version__,
                        "iterations": ran, "final_error": peer_errors[-1],
                        "time_to_1e-4_s": peer_time, "iterations_to_1e-4": needed,
                        "time_per_iteration_s": per_iteration, "total_s": float(stamps[-1]),
                        "fms_vs_planted": factor_match_score(peer_runs[0][1], truth),
                        "time_to_1e-4_estimated": estimated}
            rows.append(peer_row)
            metrics[f"tensorly_{method}_iterations_run"] = ran
            metrics[f"tensorly_{method}_time_to_1e-4_s"] = peer_time
            metrics[f"tensorly_{method}_time_to_1e-4_estimated"] = estimated
            metrics[f"tensorly_{method}_time_per_iteration_s"] = per_iteration
            metrics[f"{method}_max_error_difference_vs_tensorly"] = float(
                np.max(np.abs(np.asarray(peer_errors) - ours_errors)))
            metrics[f"{method}_time_to_1e-4_ratio"] = ours["time_to_1e-4_s"] / peer_time
            if f"ours_{method}_extrapolated_time_to_1e-4_s" in metrics:
                metrics[f"{method}_extrapolated_time_to_1e-4_ratio"] = (
                    metrics[f"ours_{method}_extrapolated_time_to_1e-4_s"] / peer_time)
            metrics[f"ours_{method}_time_per_iteration_over_tensorly_iterations_s"] = ours_same
            metrics[f"{method}_time_per_iteration_ratio"] = ours_same / per_iteration
            snapshot = ours_fit if peer_iterations == iterations else ntf(
                planted.tensor, config.rank, method=method, init=init_torch,
                n_iter_max=peer_iterations, tol=0.0)
            metrics[f"{method}_fms_ours_vs_tensorly"] = factor_match_score(snapshot, peer_runs[0][1])
            out.log(f"{method}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                                               if k.startswith(("ours_" + method, "tensorly_" + method, method))))

        # masked HALS: cost of one iteration relative to an unmasked one
        shape = planted.tensor.shape
        row_mask = torch.ones(shape, dtype=torch.bool, device=planted.tensor.device)
        row_mask[: shape[0] // 5, ..., 0] = False
        random_mask = torch.rand(shape, generator=torch.Generator().manual_seed(out.seed)) >= 0.1
        random_mask = random_mask.to(planted.tensor.device)
        for label, mask in (("missing_rows", row_mask), ("missing_random", random_mask)):
            per_iteration = []
            for _ in range(config.repeats):
                plain, _ = _ours(planted.tensor, config.rank, "hals", init_torch, config.masked_iterations)
                masked, _ = _ours(planted.tensor, config.rank, "hals", init_torch,
                                    config.masked_iterations, mask=mask)
                per_iteration.append(masked["time_per_iteration_s"] / plain["time_per_iteration_s"])
            metrics[f"masked_hals_cost_ratio_{label}"] = statistics.median(per_iteration)
            rows.append({"method": f"hals masked ({label})", "implementation": "neurobridge",
                         "time_per_iteration_s": masked["time_per_iteration_s"],
                         "final_error": masked["final_error"]})

    if config.measure_memory and out.device == "cpu":
        try:
            for label, method, mask_rows in (("ours_hals", "hals", False), ("ours_mu", "mu", False),
                                             ("ours_hals_masked", "hals", True),
                                             ("tensorly_hals", "tensorly", False)):
                if method == "tensorly" and not config.peer_repeats:
                    continue
                metrics[f"peak_memory_over_tensor_{label}"] = _peak_memory(
                    planted.tensor, config.rank, 3, method, mask_rows)
        except (OSError, RuntimeError) as error:  # no /proc (not Linux): report and go on
            out.log(f"peak memory not measured: {error}")
    out.save_table("ntf_benchmark", rows, caption=(
        f"Non-negative CP on the planted rank-{config.rank} tensor {tuple(config.shape)} "
        f"({config.dtype}, {config.threads} thread(s), device {out.device}); same initialization "
        "for every fit; times in seconds."))
    _figure(out, rows)
    return metrics


def _figure(out: RunDir, rows: list[dict]) -> None:
    from matplotlib.figure import Figure

    timed = [r for r in rows if "time_to_1e-4_s" in r]
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    labels = [_bar_label(r) for r in timed]
    ax.bar(range(len(timed)), [r["time_to_1e-4_s"] for r in timed], color="tab:blue")
    ax.set_xticks(range(len(timed)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("time to within 1e-4 of final error (s)")
    out.save_figure(fig, "time_to_converge", caption="Time to reach within 1e-4 of the final "
                    "error, ours vs tensorly, same initialization (log scale; 'estimated': tensorly "
                    "was stopped at peer_max_iterations, its per-iteration time x the iterations needed).")


def _bar_label(row: dict) -> str:
    """A bar's label: method, implementation, and whether its time is an estimate."""
    label = f"{row['method']}\n{row['implementation'].split()[0]}"
    return label + " (estimated)" if row.get("time_to_1e-4_estimated") else label
