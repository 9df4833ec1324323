"""Finds experiments: every module ``experiments/<name>.py`` with a top-level ``Config``
class and ``run`` function. Modules are read with ``ast`` (not imported) to list them, so
``neuro list`` stays fast; an experiment's optional ``DEMO`` literal (the overrides of its
short version in ``neuro demo``) is read the same way.
"""
from __future__ import annotations

import ast
import importlib
from functools import cache
from pathlib import Path
from types import ModuleType

from experiments.config import ConfigError

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def _scan() -> dict[str, tuple[str, dict | None]]:
    found: dict[str, tuple[str, dict | None]] = {}
    for path in sorted(_PACKAGE_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        names = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
        if not {"Config", "run"} <= names:
            continue
        demo = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "DEMO" for t in node.targets
            ):
                demo = ast.literal_eval(node.value)
        doc = (ast.get_docstring(tree) or "").strip().splitlines()
        found[path.stem] = (doc[0] if doc else "", demo)
    return found


def list_experiments() -> dict[str, str]:
    """``{name: one-line description}`` of every registered experiment, sorted by name."""
    return {name: description for name, (description, _) in _scan().items()}


def demo_experiments() -> dict[str, dict]:
    """``{name: overrides}`` for the experiments that take part in ``neuro demo``."""
    return {name: demo for name, (_, demo) in _scan().items() if demo is not None}


def canonical_name(name: str) -> str:
    """Accept ``bench-reservoir`` for ``bench_reservoir``; unknown names list the valid ones."""
    candidate = name.replace("-", "_")
    if candidate not in _scan():
        valid = ", ".join(_scan()) or "(none)"
        raise ConfigError(f"unknown experiment {name!r}; valid experiments: {valid}")
    return candidate


def load_experiment(name: str) -> ModuleType:
    """Import ``experiments.<name>`` (after :func:`canonical_name`)."""
    return importlib.import_module(f"experiments.{canonical_name(name)}")
