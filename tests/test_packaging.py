"""Packaging facts: environment.yml agrees with pyproject, imports are fast and side-effect free."""
import json
import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    version = tuple(int(x) for x in python.split("=")[1].split("."))
    minimum = tuple(int(x) for x in re.search(r">=\s*([\d.]+)", project["requires-python"])
                    .group(1).split("."))
    assert version >= minimum
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e .[dev,cluster]" in pip_block  # the extras make installs (sweeps on Dask too)
    assert {"dev", "cluster"} <= set(project["optional-dependencies"])


def test_numpy_is_capped_for_brian2_on_old_pythons():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("numpy") and "<2.4" in d and "python_version < '3.12'" in d for d in deps)
    triton = [d for d in deps if d.startswith("triton")]
    assert triton == ["triton; platform_system == 'Linux'"], "no separate triton pin"


def test_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"neuro": "experiments.cli:main"}


def test_library_imports_have_no_side_effects():
    """Every subpackage of neuro/bridges/kernels imports without touching global state."""
    code = (
        "import os, sys, json, torch\n"
        "env = dict(os.environ); dtype = torch.get_default_dtype(); threads = torch.get_num_threads()\n"
        "import importlib, pkgutil, neuro, bridges, kernels, experiments\n"
        "for top in (neuro, bridges, kernels):\n"
        "    for info in pkgutil.walk_packages(top.__path__, top.__name__ + '.'):\n"
        "        if info.ispkg:\n"
        "            importlib.import_module(info.name)\n"
        "print(json.dumps({'env_same': env == dict(os.environ),\n"
        "  'dtype_same': dtype == torch.get_default_dtype(),\n"
        "  'threads_same': threads == torch.get_num_threads(),\n"
        "  'heavy': sorted(m for m in ('brian2', 'matplotlib.pyplot', 'tensorly', 'dask')\n"
        "                  if m in sys.modules)}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts == {"env_same": True, "dtype_same": True, "threads_same": True, "heavy": []}
