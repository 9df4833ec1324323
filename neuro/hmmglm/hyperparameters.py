"""Validation of the HMM-GLM's scalar hyperparameters, and the points of a sweep over them.

``HMMGLM`` checks its hyperparameters with ``check_hyperparameter``; ``HMMGLM.fit_sweep``
turns ``{name: P values}`` into P points with ``sweep_points`` (the names in ``SWEEPABLE``
can differ per restart inside one batched EM).
"""
from __future__ import annotations

import math
import numbers

from neuro.checks import check_real

# name -> (holds for an allowed value, what is allowed)
RULES = {
    "transition_concentration": (lambda x: x >= 1.0, ">= 1"),
    "stickiness": (lambda x: x >= 0.0, ">= 0"),
    "prior_sigma": (lambda x: x > 0.0, "> 0"),
    "sigma_floor": (lambda x: x > 0.0, "> 0"),
    "strength_floor": (lambda x: x >= 0.0, ">= 0"),
}
SWEEPABLE = ("prior_sigma", "stickiness", "transition_concentration", "strength_floor")
PRIOR_OF = {"prior_sigma": "gaussian", "strength_floor": "onehot"}  # names only one prior has


def sweepable(prior: str) -> tuple[str, ...]:
    """The names in ``SWEEPABLE`` that a model with ``prior`` uses."""
    return tuple(name for name in SWEEPABLE if PRIOR_OF.get(name, prior) == prior)


def check_hyperparameter(name: str, value, label: str | None = None) -> float:
    """``value`` as a float, or a ValueError/TypeError naming ``label`` (default: ``name``)."""
    label = label or name
    holds, allowed = RULES[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{label} must be a real number {allowed}, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and holds(value)):
        raise ValueError(f"{label} must be finite and {allowed}, got {value!r}")
    return value


def check_type_concentration(value) -> tuple[float, float, float]:
    """The one-hot prior's Dirichlet concentration over (inh, none, exc): three finite reals
    >= 1 (below 1 the Dirichlet density is unbounded at the simplex's edge: no MAP exists)."""
    entries = value.tolist() if hasattr(value, "tolist") else value  # numpy / torch
    if isinstance(entries, (str, bytes)) or not hasattr(entries, "__len__"):
        raise TypeError(f"type_concentration must be 3 numbers >= 1 for (inhibitory, none, "
                        f"excitatory), got {value!r}")
    if len(entries) != 3:
        raise ValueError(f"type_concentration must be 3 numbers >= 1 for (inhibitory, none, "
                         f"excitatory), got {len(entries)}: {value!r}")
    return tuple(check_real(f"type_concentration[{i}]", x, 1.0) for i, x in enumerate(entries))


def sweep_points(values, prior: str) -> list[dict]:
    """The points of ``values`` (name -> P values) as P dicts name -> float; [{}] for {}."""
    if not isinstance(values, dict):
        raise TypeError(f"values must be a dict of hyperparameter name -> sequence of values, "
                        f"got {type(values).__name__}")
    unknown = sorted(set(values) - set(SWEEPABLE))
    if unknown:
        raise ValueError(f"values can sweep {SWEEPABLE}, got {unknown}")
    foreign = sorted(set(values) - set(sweepable(prior)))
    if foreign:
        raise ValueError(f"values sweeps {foreign[0]}, which only prior={PRIOR_OF[foreign[0]]!r} "
                         f"has (prior={prior!r})")
    columns = {}
    for name, seq in values.items():
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__") or getattr(seq, "ndim", 1) != 1:
            raise TypeError(f"values[{name!r}] must be a 1-D sequence of numbers, got {seq!r}")
        columns[name] = [check_hyperparameter(name, x, f"values[{name!r}][{i}]")
                         for i, x in enumerate(seq)]
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1 or 0 in lengths.values():
        raise ValueError(f"values must give every swept name the same number (>= 1) of values, "
                         f"got {lengths}")
    if not columns:
        return [{}]
    return [dict(zip(columns, row)) for row in zip(*columns.values())]
