"""SLURM / PBS clusters for sweeps, configured from a YAML file (``--cluster slurm.yaml``).

Example ``slurm.yaml``::

    kind: slurm              # slurm | pbs
    queue: normal            # partition (SLURM) / queue (PBS)
    account: my-project
    cores: 16                # cores per job
    memory: 64GB             # memory per job
    walltime: "04:00:00"
    threads_per_task: 2      # compute threads per sweep point (default 1)
    jobs: 4                  # jobs kept running; or maximum_jobs: 8 for adaptive scaling
    prologue:                # shell lines run before the worker starts
      - module load python/3.11
      - source $HOME/neurobridge/.venv/bin/activate
    directives: ["--gres=gpu:1"]    # extra #SBATCH / #PBS lines (optional)
    python: python           # interpreter on the nodes (default: this one)

Each job runs ``cores // threads_per_task`` worker processes. With more than one thread per
task, every worker carries a ``task_slot=1`` resource and every point asks for it, so a
worker runs one point at a time with all its threads.

Walltime: a job the batch system kills at its walltime would take its workers' points with it,
and nothing would submit a new job (dask-jobqueue, "How to handle job queueing system walltime
killing workers"). So workers get ``--lifetime`` and ``--lifetime-stagger`` from the job's
walltime (the file's ``walltime``, else the one dask-jobqueue's configuration gives the jobs:
its own default is 00:30:00, or a site's ``jobqueue.yaml``)
(unless ``worker_extra_args`` sets ``--lifetime`` itself): each worker retires gracefully at a
random time in [walltime - slack - 2 stagger, walltime - slack], stagger = min(4 min, 5%) and
slack = min(5 min, 10%) of the walltime; and the jobs are kept by Dask's adaptive scaling
(``jobs: N`` is ``adapt(minimum_jobs=N, maximum_jobs=N)``), which submits a new job for one that
ended. Unknown keys and bad values are
:class:`~experiments.config.ConfigError`s naming the key.
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, load_config_file

_KINDS = ("slurm", "pbs")
_SUBMIT_COMMANDS = {"slurm": "sbatch", "pbs": "qsub"}
_WALLTIME = r"(\d+-)?\d{1,3}:[0-5]\d(:[0-5]\d)?"  # [D-]HH:MM[:SS], minutes and seconds < 60
_KEYS = ("kind", "queue", "account", "cores", "memory", "walltime", "threads_per_task", "jobs",
         "maximum_jobs", "prologue", "directives", "python", "local_directory", "log_directory",
         "interface", "job_name", "worker_extra_args")


def _positive_int(settings: dict, key: str, where: str, default: int | None = None) -> int | None:
    value = settings.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {key}: expected a whole number >= 1, got {value!r}")
    return value


def _string_list(settings: dict, key: str, where: str) -> list[str]:
    value = settings.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key}: expected a list of strings, got {value!r}")
    return value


def load_cluster_config(path: str | Path) -> dict[str, Any]:
    """Read and check a cluster YAML file; returns the settings with defaults filled in."""
    where = f"--cluster {str(path)!r}"
    raw = load_config_file(path, option="--cluster")
    unknown = [k for k in raw if k not in _KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(_KEYS)}")
    settings = dict(raw)
    if settings.get("kind") not in _KINDS:
        raise ConfigError(f"{where}: kind: expected one of {list(_KINDS)}, got {settings.get('kind')!r}")
    for key in ("cores", "memory"):
        if key not in settings:
            raise ConfigError(f"{where}: {key} is required (cores and memory per job)")
    cores = _positive_int(settings, "cores", where)
    threads = _positive_int(settings, "threads_per_task", where, default=1)
    if cores % threads:
        raise ConfigError(f"{where}: threads_per_task={threads} must divide cores={cores}")
    try:
        from dask.utils import parse_bytes

        # a bare number is bytes to Dask (memory: 16 would be 16 bytes, which dask-jobqueue
        # cannot even render for SLURM): a unit is required, and a size a job can run in
        size = parse_bytes(str(settings["memory"]))
        if not re.search(r"[A-Za-z]", str(settings["memory"])) or size < 2**20:
            raise ValueError(settings["memory"])
    except (ImportError, ValueError):
        raise ConfigError(f"{where}: memory: expected a size like '16GB' (with a unit, at least "
                          f"1MiB), got {settings['memory']!r}") from None
    walltime = settings.get("walltime")
    if walltime is not None and not re.fullmatch(_WALLTIME, str(walltime)):
        # YAML 1.1 reads an unquoted 4:00:00 as the base-60 number 14400
        hint = "; quote it, e.g. walltime: \"04:00:00\"" if type(walltime) is int else ""
        raise ConfigError(f"{where}: walltime: expected HH:MM:SS (or D-HH:MM:SS), got {walltime!r}{hint}")
    jobs = _positive_int(settings, "jobs", where)
    maximum = _positive_int(settings, "maximum_jobs", where)
    if jobs is not None and maximum is not None:
        raise ConfigError(f"{where}: give jobs (fixed) or maximum_jobs (adaptive), not both")
    for key in ("prologue", "directives", "worker_extra_args"):
        settings[key] = _string_list(settings, key, where)
    settings.update(threads_per_task=threads, processes=cores // threads,
                    jobs=jobs if maximum is None else None, maximum_jobs=maximum)
    settings["expected_workers"] = settings["processes"] * (maximum or jobs or 1)
    if settings.get("jobs") is None and maximum is None:
        settings["jobs"] = 1
    return settings


def check_submit_command(settings: dict[str, Any], path: str | Path | None = None) -> dict[str, Any]:
    """Refuse a cluster whose submit command (``sbatch`` / ``qsub``) is not on this machine's
    PATH: dask-jobqueue would fail in the background and the sweep would wait forever.

    Returns a copy of ``settings`` with the command's full path under ``submit_command``;
    :func:`start_jobqueue_cluster` does not look up settings that carry it again (a cluster
    file cannot set that key), so a sweep checks once, before it creates anything."""
    command = _SUBMIT_COMMANDS[settings["kind"]]
    found = shutil.which(command)
    if found is None:
        where = "--cluster" if path is None else f"--cluster {str(path)!r}"
        raise ConfigError(f"{where}: kind {settings['kind']} submits jobs with "
                          f"{command!r}, which is not on this machine's PATH; run the sweep on the "
                          "cluster's login node, or use --executor dask without --cluster")
    return {**settings, "submit_command": found}


def walltime_seconds(walltime: str) -> int:
    """Seconds of a walltime as SLURM and PBS read the forms ``load_cluster_config`` accepts:
    ``M:SS``, ``H:MM:SS``, ``D-H:MM`` and ``D-H:MM:SS``."""
    days, _, clock = str(walltime).rpartition("-")
    fields = [int(field) for field in clock.split(":")]
    if days:  # SLURM's days-hours:minutes[:seconds]
        fields = [int(days) * 24 + fields[0], *fields[1:], 0][:3]
    elif len(fields) == 2:  # minutes:seconds
        fields = [0, *fields]
    hours, minutes, seconds = fields
    return (hours * 60 + minutes) * 60 + seconds


def lifetime_arguments(walltime: str) -> list[str]:
    """``--lifetime`` / ``--lifetime-stagger`` worker options that retire every worker before
    ``walltime`` (module docstring); none for a walltime too short to leave a lifetime."""
    total = walltime_seconds(walltime)
    stagger = min(240, total // 20)
    lifetime = total - min(300, total // 10) - stagger
    if lifetime - stagger < 60:
        return []
    return ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]


def job_arguments(settings: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue``'s ``SLURMCluster``/``PBSCluster`` (and Job)."""
    extra_args = list(settings["worker_extra_args"])
    walltime = settings.get("walltime") or _configured_walltime(settings["kind"])
    if walltime is not None and not any(a.split("=")[0] == "--lifetime" for a in extra_args):
        extra_args += lifetime_arguments(walltime)
    if settings["threads_per_task"] > 1:
        extra_args += ["--resources", "task_slot=1"]
    arguments: dict[str, Any] = {
        "cores": settings["cores"], "memory": str(settings["memory"]),
        "processes": settings["processes"],
        "job_script_prologue": settings["prologue"],
        "job_extra_directives": settings["directives"],
        "worker_extra_args": extra_args,
        "python": settings.get("python") or sys.executable,
    }
    for key in ("queue", "account", "walltime", "local_directory", "log_directory", "interface",
                "job_name"):
        if settings.get(key) is not None:
            arguments[key] = str(settings[key])
    if settings["kind"] == "pbs" and settings.get("walltime") is not None:
        # PBS reads [[HH:]MM:]SS only: SLURM's D-HH:MM[:SS] becomes hours
        total = walltime_seconds(settings["walltime"])
        arguments["walltime"] = f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"
    return arguments


def _configured_walltime(kind: str) -> str | None:
    """The walltime dask-jobqueue gives a job when the cluster file has none
    (``jobqueue.<kind>.walltime`` of dask's configuration), where it is in a form
    ``load_cluster_config`` accepts; else None."""
    try:
        import dask
    except ImportError:
        return None
    walltime = dask.config.get(f"jobqueue.{kind}.walltime", default=None)
    return walltime if isinstance(walltime, str) and re.fullmatch(_WALLTIME, walltime) else None


def _classes(kind: str):
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError("--cluster needs dask-jobqueue: pip install 'neurobridge[cluster]'") from None
    if kind == "slurm":
        return dask_jobqueue.SLURMCluster, dask_jobqueue.slurm.SLURMJob
    return dask_jobqueue.PBSCluster, dask_jobqueue.pbs.PBSJob


def render_job_script(settings: dict[str, Any], scheduler_address: str = "tcp://SCHEDULER:8786",
                      worker_name: str = "sweep-worker") -> str:
    """The batch script a worker job would be submitted with (no scheduler is started).

    ``worker_name``: the ``--name`` of the job's workers (the cluster numbers real jobs).
    """
    _, job_cls = _classes(settings["kind"])
    return job_cls(scheduler=scheduler_address, name=worker_name, **job_arguments(settings)).job_script()


def start_jobqueue_cluster(settings: dict[str, Any], path: str | Path | None = None):
    """Start the cluster object (its scheduler runs here) and submit or adapt the jobs.

    Every path to a submission goes through here: settings straight from
    :func:`load_cluster_config` (no ``submit_command``) are checked with
    :func:`check_submit_command` first (``path``: the file, for the message); settings it
    returned were checked already and are not looked up again."""
    if "submit_command" not in settings:
        settings = check_submit_command(settings, path)
    cluster_cls, _ = _classes(settings["kind"])
    cluster = cluster_cls(**job_arguments(settings))
    if settings.get("maximum_jobs"):
        cluster.adapt(minimum_jobs=0, maximum_jobs=settings["maximum_jobs"])
    else:  # adaptive at a fixed size: a job that ends (walltime) is replaced; scale() would not
        cluster.adapt(minimum_jobs=settings["jobs"], maximum_jobs=settings["jobs"])
    return cluster
