"""SLURM/PBS clusters from YAML: the job script dask-jobqueue would submit, checked line by line.

No batch system is needed: ``render_job_script`` builds the script from the same keyword
arguments that ``start_jobqueue_cluster`` gives ``SLURMCluster``/``PBSCluster``, and one
test starts a real ``SLURMCluster`` object (its scheduler runs here, zero jobs are
submitted) to show that its ``job_script()`` is the one we render.
"""
import re

import pytest

from experiments.config import ConfigError

pytest.importorskip("dask_jobqueue", reason="the SLURM/PBS path needs the 'cluster' extra")

import itertools

from experiments.sweep.jobqueue import job_arguments, load_cluster_config, render_job_script

SLURM = """\
kind: slurm
queue: compute
account: neuro-lab
cores: 8
memory: 32GB
walltime: "02:30:00"
threads_per_task: 2
jobs: 3
prologue:
  - module load python/3.11
  - source /home/me/neurobridge/.venv/bin/activate
directives: ["--gres=gpu:1"]
python: /home/me/neurobridge/.venv/bin/python
"""


def write(tmp_path, text, name="cluster.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_slurm_job_script_has_directives_prologue_and_worker_command(tmp_path):
    settings = load_cluster_config(write(tmp_path, SLURM))
    assert settings["processes"] == 4 and settings["expected_workers"] == 12
    script = render_job_script(settings, "tcp://10.0.0.5:8786")
    lines = script.splitlines()
    assert lines[0].startswith("#!") and "bash" in lines[0]
    directives = [l for l in lines if l.startswith("#SBATCH")]
    for expected in ("-p compute", "-A neuro-lab", "--cpus-per-task=8", "-t 02:30:00", "--gres=gpu:1"):
        assert any(d.endswith(expected) for d in directives), (expected, directives)
    memory = next(d for d in directives if "--mem=" in d)
    assert int(re.search(r"--mem=(\d+)G", memory).group(1)) in (29, 30, 32)  # 32 GB in GiB, rounded
    # the prologue runs after the directives and before the worker, in order
    body = [l for l in lines if l and not l.startswith("#")]
    assert body[:2] == ["module load python/3.11", "source /home/me/neurobridge/.venv/bin/activate"]
    worker = body[2].split()
    assert worker[:3] == ["/home/me/neurobridge/.venv/bin/python", "-m", "distributed.cli.dask_worker"]
    assert worker[3] == "tcp://10.0.0.5:8786"
    options = dict(itertools.pairwise(worker))
    assert options["--nthreads"] == "2" and options["--nworkers"] == "4"
    assert options["--resources"] == "task_slot=1"  # one point per worker process at a time
    assert "--nanny" in worker


def test_pbs_job_script(tmp_path):
    settings = load_cluster_config(write(tmp_path, SLURM.replace("kind: slurm", "kind: pbs")
                                         .replace("threads_per_task: 2", "threads_per_task: 1")))
    script = render_job_script(settings, "tcp://head:8786")
    directives = [l for l in script.splitlines() if l.startswith("#PBS")]
    assert any(d == "#PBS -q compute" for d in directives)
    assert any("ncpus=8" in d for d in directives) and any("walltime=02:30:00" in d for d in directives)
    worker = script.strip().splitlines()[-1].split()
    assert "--nworkers" in worker and worker[worker.index("--nworkers") + 1] == "8"
    assert worker[worker.index("--nthreads") + 1] == "1" and "--resources" not in worker


@pytest.mark.parametrize("walltime, rendered", [
    ("1-04:00:00", "28:00:00"), ("2-00:30", "48:30:00"), ("04:00:00", "04:00:00"), ("5:00", "00:05:00")])
def test_pbs_walltime_is_written_in_a_form_pbs_reads(tmp_path, walltime, rendered):
    # PBS reads [[HH:]MM:]SS: SLURM's days form (accepted for both kinds) must become hours
    text = SLURM.replace("kind: slurm", "kind: pbs").replace('"02:30:00"', f'"{walltime}"')
    script = render_job_script(load_cluster_config(write(tmp_path, text)))
    assert [l for l in script.splitlines() if "walltime" in l] == [f"#PBS -l walltime={rendered}"]


def test_rendered_script_is_what_slurm_cluster_would_submit(tmp_path):
    from dask_jobqueue import SLURMCluster

    settings = load_cluster_config(write(tmp_path, SLURM))
    cluster = SLURMCluster(**job_arguments(settings), dashboard_address=None,
                           scheduler_options={"host": "127.0.0.1"})
    try:
        # dask-jobqueue previews with the worker name "dummy-name" (real jobs are numbered)
        expected = render_job_script(settings, cluster.scheduler.address, worker_name="dummy-name")
        assert cluster.job_script() == expected
    finally:
        cluster.close()


@pytest.mark.parametrize("text, message", [
    ("kind: lsf\ncores: 1\nmemory: 1GB\n", "kind: expected one of ['slurm', 'pbs']"),
    ("kind: slurm\nmemory: 1GB\n", "cores is required"),
    ("kind: slurm\ncores: 4\nmemory: lots\n", "memory: expected a size like '16GB'"),
    ("kind: slurm\ncores: 4\nmemory: 4GB\nqueues: x\n", "unknown key 'queues'; valid keys: kind, queue"),
    ("kind: slurm\ncores: 4\nmemory: 4GB\nthreads_per_task: 3\n", "threads_per_task=3 must divide cores=4"),
    ("kind: slurm\ncores: 4\nmemory: 4GB\nwalltime: 2h\n", "walltime: expected HH:MM:SS"),
    ("kind: slurm\ncores: 4\nmemory: 4GB\nwalltime: \"1:99:00\"\n", "walltime: expected HH:MM:SS"),  # was 2 h 39 min
    ("kind: slurm\ncores: 4\nmemory: 4GB\njobs: 2\nmaximum_jobs: 4\n", "not both"),
    ("kind: slurm\ncores: 0\nmemory: 4GB\n", "cores: expected a whole number >= 1"),
    ("kind: slurm\ncores: 4\nmemory: 4GB\nprologue: [1, 2]\n", "prologue: expected a list of strings"),
    # a bare number is bytes to Dask (16 bytes: dask-jobqueue raised a TypeError rendering it)
    ("kind: slurm\ncores: 4\nmemory: 16\n", "memory: expected a size like '16GB' (with a unit"),
    ("kind: slurm\ncores: 4\nmemory: 0GB\n", "memory: expected a size like '16GB'"),
    ("kind: slurm\ncores: 4\nmemory: -5GB\n", "memory: expected a size like '16GB'"),
    # YAML reads an unquoted 4:00:00 as the number 14400: say so
    ("kind: slurm\ncores: 4\nmemory: 4GB\nwalltime: 4:00:00\n", 'got 14400; quote it, e.g. walltime: "04:00:00"'),
])
def test_bad_cluster_files_are_rejected_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_cluster_config(write(tmp_path, text))
    assert message in str(error.value)


@pytest.mark.parametrize("kind, command", [("slurm", "sbatch"), ("pbs", "qsub")])
def test_cluster_without_its_submit_command_is_refused_before_anything_starts(tmp_path, monkeypatch,
                                                                             capsys, kind, command):
    from experiments.cli import main

    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    cluster = write(tmp_path, f"kind: {kind}\ncores: 2\nmemory: 4GB\n")
    out = tmp_path / "s"
    assert main(["sweep", "hebbian_recall", "--grid", "key_dim=8,16", "--cluster", str(cluster),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (f"--cluster {str(cluster)!r}: kind {kind} submits jobs with {command!r}, which is not on "
            "this machine's PATH") in err
    assert not out.exists()
    # a dry run (e.g. on a laptop, to preview the points) checks the file but needs no batch system
    assert main(["sweep", "hebbian_recall", "--grid", "key_dim=8,16", "--cluster", str(cluster),
                 "--dry-run"]) == 0
    assert "2 points" in capsys.readouterr().out
    bad = write(tmp_path, f"kind: {kind}\ncores: 2\nmemory: 16\n", name="bad.yaml")
    assert main(["sweep", "hebbian_recall", "--grid", "key_dim=8", "--cluster", str(bad), "--dry-run"]) == 2
    assert "memory" in capsys.readouterr().err
    # with the command on PATH the same file passes the checks (nothing is submitted here)
    from experiments.sweep.executors import check_pool_options

    fake = empty_bin / command
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    check_pool_options("dask", cluster_file=str(cluster))


class Submitted(Exception):
    """Raised where dask-jobqueue would build the cluster and submit its jobs."""


def _count_submit_checks(monkeypatch, tmp_path, kind, command, on_path):
    """PATH holds only ``command`` (a stub that is never run) or nothing; check_submit_command
    counts its calls and then does its real work, so a missing command raises its own
    ConfigError; the cluster class raises Submitted with its keyword arguments."""
    from experiments.sweep import jobqueue

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if on_path:
        stub = bin_dir / command
        stub.write_text("#!/bin/sh\nexit 1\n")
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    calls = []
    real = jobqueue.check_submit_command

    def counting(settings, path=None):
        calls.append(settings["kind"])
        return real(settings, path)

    def cluster_class(**arguments):
        raise Submitted(arguments)

    monkeypatch.setattr(jobqueue, "check_submit_command", counting)
    monkeypatch.setattr(jobqueue, "_classes", lambda kind: (cluster_class, None))
    return calls


@pytest.mark.parametrize("kind, command", [("slurm", "sbatch"), ("pbs", "qsub")])
def test_one_cluster_sweep_looks_up_its_submit_command_once(tmp_path, monkeypatch, capsys, kind,
                                                            command):
    from experiments.cli import main

    cluster = write(tmp_path, f"kind: {kind}\ncores: 2\nmemory: 4GB\n")
    argv = ["sweep", "hebbian_recall", "--grid", "key_dim=8,16", "--set", "trials=1", "--cluster",
            str(cluster), "--quiet"]
    calls = _count_submit_checks(monkeypatch, tmp_path, kind, command, on_path=True)
    with pytest.raises(Submitted) as submitted:  # the sweep got as far as submitting jobs
        main([*argv, "--out", str(tmp_path / "s")])
    assert calls == [kind]  # was 3: run_sweep, then open_pool, then start_jobqueue_cluster
    assert submitted.value.args[0]["cores"] == 2
    # without the command: the same one call, the same clear error, nothing created
    (tmp_path / "bin" / command).unlink()
    calls.clear()
    assert main([*argv, "--out", str(tmp_path / "t")]) == 2
    assert calls == [kind]
    err = capsys.readouterr().err
    assert (f"--cluster {str(cluster)!r}: kind {kind} submits jobs with {command!r}, which is not on "
            "this machine's PATH; run the sweep on the cluster's login node") in err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("on_path", [True, False])
def test_every_direct_way_to_a_submission_checks_the_command_once(tmp_path, monkeypatch, on_path):
    from experiments.sweep.executors import DaskPool, open_pool
    from experiments.sweep.jobqueue import start_jobqueue_cluster

    cluster = write(tmp_path, "kind: slurm\ncores: 2\nmemory: 4GB\n")
    calls = _count_submit_checks(monkeypatch, tmp_path, "slurm", "sbatch", on_path)
    starts = {"open_pool": lambda: open_pool("dask", cluster_file=str(cluster)),
              "DaskPool": lambda: DaskPool(cluster_file=str(cluster)),
              "start_jobqueue_cluster": lambda: start_jobqueue_cluster(load_cluster_config(cluster),
                                                                       cluster)}
    for name, start in starts.items():
        calls.clear()
        with pytest.raises(Submitted if on_path else ConfigError) as error:
            start()
        assert calls == ["slurm"], name
        if not on_path:
            assert str(error.value).startswith(f"--cluster {str(cluster)!r}: kind slurm submits jobs "
                                               "with 'sbatch', which is not on this machine's PATH")


@pytest.mark.parametrize("walltime, seconds", [
    ("02:30:00", 9000), ("2:30:00", 9000), ("45:30", 2730), ("1-04:00", 100800),
    ("1-04:00:30", 100830), ("100:00:00", 360000),
])
def test_walltimes_are_read_as_slurm_and_pbs_read_them(walltime, seconds):
    from experiments.sweep.jobqueue import walltime_seconds

    assert walltime_seconds(walltime) == seconds


def test_workers_retire_before_the_walltime_and_jobs_are_kept_by_adaptive_scaling(tmp_path, monkeypatch):
    from experiments.sweep import jobqueue

    for walltime in ("00:02:00", "01:00:00", "02:30:00", "2-00:00:00"):
        settings = load_cluster_config(write(tmp_path, SLURM.replace('"02:30:00"', f'"{walltime}"')))
        options = dict(itertools.pairwise(render_job_script(settings).split()))
        lifetime = int(options["--lifetime"].rstrip("s"))
        stagger = int(options["--lifetime-stagger"].rstrip("s"))
        total = jobqueue.walltime_seconds(walltime)
        # dask draws each worker's lifetime in lifetime +- stagger: all retire >= 1 min early
        # (or 10% early when shorter), and none in the first minute
        assert lifetime + stagger <= total - min(60, total // 10) and lifetime - stagger >= 60, walltime
    # a lifetime of the user's own is kept as it is
    own = SLURM.replace("python: ", 'worker_extra_args: ["--lifetime", "20m"]\npython: ')
    worker = render_job_script(load_cluster_config(write(tmp_path, own))).split()
    assert worker.count("--lifetime") == 1 and "20m" in worker and "--lifetime-stagger" not in worker
    own = SLURM.replace("python: ", 'worker_extra_args: ["--lifetime=20m"]\npython: ')
    worker = render_job_script(load_cluster_config(write(tmp_path, own))).split()
    assert "--lifetime=20m" in worker and "--lifetime" not in worker  # the = form is the user's own too
    # no walltime in the file: the jobs still get dask-jobqueue's (00:30:00 unless a site's
    # jobqueue.yaml says otherwise), and the workers retire before it (they had no lifetime)
    import dask

    no_walltime = load_cluster_config(write(tmp_path, SLURM.replace('walltime: "02:30:00"\n', "")))
    for configured in ("00:30:00", "03:00:00"):
        with dask.config.set({"jobqueue.slurm.walltime": configured}):
            script = render_job_script(no_walltime)
        options = dict(itertools.pairwise(script.split()))
        assert f"-t {configured}" in script
        assert options["--lifetime"] == f"{jobqueue.lifetime_arguments(configured)[1]}"
    # jobs: N keeps N jobs through adaptive scaling (scale() would not replace an ended job)
    calls = []

    class Cluster:
        def __init__(self, **arguments):
            pass

        def adapt(self, **limits):
            calls.append(("adapt", limits))

        def scale(self, **size):
            calls.append(("scale", size))

    monkeypatch.setattr(jobqueue, "_classes", lambda kind: (Cluster, None))
    settings = {**load_cluster_config(write(tmp_path, SLURM)), "submit_command": "/bin/sbatch"}
    jobqueue.start_jobqueue_cluster(settings)
    assert calls == [("adapt", {"minimum_jobs": 3, "maximum_jobs": 3})]
