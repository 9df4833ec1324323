"""Sweep specification: which configs and seeds a sweep runs, validated before anything runs.

A sweep over experiment NAME combines

* ``set``: fixed overrides applied to every point (``--set a=1``, or a ``--config`` file);
* ``grid``: axes crossed with each other (cartesian product, last axis fastest);
* ``zip``: axes of equal length walked together (one more axis of the product);
* ``random``: ``N`` points whose grid/zip parameters are drawn instead of crossed
  (uniform, log-uniform, or a choice; a zip group is drawn as one row);
* ``repeats``: every point runs ``R`` times with seeds ``SeedSequence(seed)`` ->
  ``spawn`` (see :func:`repeat_seeds`). Repeat ``r`` has the same seed at every point
  (common random numbers: differences between points are not seed noise); that is our
  choice, the issue only asks for independent seeds across repeats.

:func:`build_spec` turns command-line/YAML text into a typed :class:`SweepSpec`;
:func:`expand` resolves every point against the experiment's ``Config``. A bad key,
value, range or an empty axis raises :class:`~experiments.config.ConfigError` naming the
option or the point, before any point runs.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.config import (
    ConfigError,
    _merge,
    _UniqueKeyLoader,
    check_value,
    config_hash,
    config_to_dict,
    load_config_file,
    parse_assignments,
    resolve_config,
)
from experiments.sweep.values import Distribution, leaf_type, parse_distribution, parse_grid_values


class _SweepFileLoader(_UniqueKeyLoader):
    """The config loader without YAML 1.1's base-60 numbers: unquoted, ``trials: 1:10:4`` would
    be the one value 4204 (1*3600 + 10*60 + 4), not the range the command line reads."""


_BASE_60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_SweepFileLoader.yaml_implicit_resolvers = {  # checked first: such a scalar stays text
    first: ([("tag:yaml.org,2002:str", _BASE_60)] if first in "+-0123456789" else []) + list(resolvers)
    for first, resolvers in _UniqueKeyLoader.yaml_implicit_resolvers.items()}


SPEC_FILE_KEYS = ("experiment", "config", "set", "grid", "zip", "random", "repeats", "seed",
                  "base_config")


@dataclass(frozen=True)
class SweepSpec:
    """A resolved, typed sweep (what ``sweep.yaml`` stores).

    ``config_file`` is an absolute path and ``base_config`` the resolved values every point
    starts from (defaults, then the config file, then ``fixed``), so a base config file
    edited between a sweep and its rerun makes a different sweep, not a silent mix.
    """

    experiment: str
    config_file: str | None = None
    fixed: tuple[tuple[str, Any], ...] = ()
    grid: tuple[tuple[str, tuple], ...] = ()
    zipped: tuple[tuple[str, tuple], ...] = ()
    random_samples: int | None = None
    distributions: tuple[tuple[str, Distribution], ...] = ()
    repeats: int = 1
    seed: int = 0
    base_config: dict = field(default_factory=dict, hash=False)

    @property
    def swept_keys(self) -> list[str]:
        return [k for k, _ in self.grid] + [k for k, _ in self.zipped] + [k for k, _ in self.distributions]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"experiment": self.experiment, "config": self.config_file,
                                "set": dict(self.fixed), "grid": {k: list(v) for k, v in self.grid},
                                "zip": {k: list(v) for k, v in self.zipped}}
        if self.random_samples is not None:
            data["random"] = {"samples": self.random_samples,
                              "params": {k: d.to_dict() for k, d in self.distributions}}
        data.update(repeats=self.repeats, seed=self.seed, base_config=self.base_config)
        return _plain(data)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _plain(value):
    """Tuples -> lists, recursively (YAML/JSON friendly, hash-stable)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class SweepPoint:
    """One run of the sweep: its swept values, repeat index, seed and resolved config."""

    index: int
    repeat: int
    seed: int
    overrides: dict[str, Any] = field(hash=False)
    config: Any = field(hash=False)
    config_hash: str = ""


def repeat_seeds(root_seed: int, repeats: int) -> list[int]:
    """Seeds of repeats ``0..R-1``: the second child of ``SeedSequence(root_seed)``, spawned R times.

    (The first child seeds random sampling, so adding repeats never changes the samples.)
    """
    import numpy as np

    _sampling, repeat_parent = np.random.SeedSequence(root_seed).spawn(2)
    return [int(child.generate_state(1, dtype=np.uint32)[0]) for child in repeat_parent.spawn(repeats)]


def _sampling_rng(root_seed: int):
    import numpy as np

    sampling, _ = np.random.SeedSequence(root_seed).spawn(2)
    return np.random.default_rng(sampling)


def _split_assignments(items, option: str) -> list[tuple[str, Any]]:
    if isinstance(items, Mapping):
        return list(items.items())
    pairs = []
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUES, e.g. {option} num_neurons=100,200")
        key, text = item.split("=", 1)
        pairs.append((key.strip(), text))
    return pairs


def _check_file_sections(file_data: Mapping, where: str) -> None:
    """The shapes of a sweep file's sections (their values are checked with the config)."""
    for key in ("set", "grid", "zip"):
        if file_data.get(key) is not None and not isinstance(file_data[key], Mapping):
            raise ConfigError(f"{where}: {key}: expected a mapping of KEY: VALUES, e.g. "
                              f"{key}: {{key_dim: [8, 16]}}, got {type(file_data[key]).__name__}")
    random = file_data.get("random")
    if isinstance(random, Mapping):
        unknown = [k for k in random if k not in ("samples", "params")]
        if unknown:
            raise ConfigError(f"{where}: random: unknown key {unknown[0]!r}; valid keys: samples, params")
        if random.get("params") is not None and not isinstance(random["params"], Mapping):
            raise ConfigError(f"{where}: random: params: expected a mapping of KEY: DISTRIBUTION, e.g. "
                              f"params: {{trials: '1:100:log'}}, got {type(random['params']).__name__}")
    elif random is not None and (isinstance(random, bool) or not isinstance(random, int)):
        raise ConfigError(f"{where}: random: expected a number of samples or a mapping with "
                          f"samples and params, got {random!r}")
    for key in ("config", "experiment"):
        if file_data.get(key) is not None and not isinstance(file_data[key], str):
            raise ConfigError(f"{where}: {key}: expected a string, got {file_data[key]!r}")


def _typed(config_cls, key: str, value: Any, where: str) -> Any:
    """One value of ``key`` typed and range-checked alone; whether it fits the values it is
    swept with (a ``__post_init__`` check) is up to :func:`expand`, per whole point."""
    try:
        return check_value(config_cls, key, value)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def build_spec(experiment: str, config_cls, *, grid=(), zip=(), random: int | None = None,
               seed: int | None = None, repeats: int | None = None, sets=(),
               config_file: str | None = None,
               from_file: str | Path | None = None) -> SweepSpec:
    """Parse command-line style axes (``["a=1,2", ...]``) plus an optional sweep YAML file.

    Command-line values win over the file's (``random``, ``repeats``, ``seed``, ``config``);
    axes from both are combined, and a key swept twice is an error. A file's ``base_config``
    (what ``sweep.yaml`` records) is not read: the base is always resolved anew.
    """
    file_data: dict[str, Any] = {}
    if from_file is not None:
        file_data = load_config_file(from_file, option="--from-file", loader=_SweepFileLoader)
        unknown = [k for k in file_data if k not in SPEC_FILE_KEYS]
        if unknown:
            raise ConfigError(f"--from-file {str(from_file)!r}: unknown key {unknown[0]!r}; "
                              f"valid keys: {', '.join(SPEC_FILE_KEYS)}")
        named = file_data.get("experiment")
        if named is not None and str(named).replace("-", "_") != experiment:
            raise ConfigError(f"--from-file {str(from_file)!r} is a sweep of {named!r}, not {experiment!r}")
        _check_file_sections(file_data, f"--from-file {str(from_file)!r}")
        config_file = config_file or file_data.get("config")
        file_random = file_data.get("random")
        if isinstance(file_random, Mapping):
            file_random = file_random.get("samples")
        random = random if random is not None else file_random
        repeats = repeats if repeats is not None else file_data.get("repeats")
        seed = seed if seed is not None else file_data.get("seed")
    repeats = 1 if repeats is None else repeats
    seed = 0 if seed is None else seed
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"--repeats {repeats!r}: expected a whole number >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed {seed!r}: expected a non-negative integer")
    if random is not None and (isinstance(random, bool) or not isinstance(random, int) or random < 1):
        raise ConfigError(f"--random {random!r}: expected a number of samples >= 1")

    fixed_pairs = _split_assignments(file_data.get("set") or {}, "set") + [
        (k, v) for k, v in parse_assignments(list(sets)).items()]
    fixed: dict[str, Any] = {}
    for key, value in fixed_pairs:
        leaf_type(config_cls, key)
        fixed[key] = _typed(config_cls, key, value, f"--set {key}={value}")

    grid_pairs = _split_assignments(file_data.get("grid") or {}, "--grid") + _split_assignments(grid, "--grid")
    zip_pairs = _split_assignments(file_data.get("zip") or {}, "--zip") + _split_assignments(zip, "--zip")
    if isinstance(file_data.get("random"), Mapping):
        grid_pairs += _split_assignments(file_data["random"].get("params") or {}, "--grid")
    seen: dict[str, str] = {k: "--set" for k in fixed}
    for option, pairs in (("--grid", grid_pairs), ("--zip", zip_pairs)):
        for key, _ in pairs:
            if key in seen:
                raise ConfigError(f"{option} {key}: {key!r} is already given by {seen[key]}; "
                                  "sweep each key once")
            seen[key] = option
    if random is not None and not (grid_pairs or zip_pairs):  # N draws of nothing: one point
        raise ConfigError(f"--random {random}: nothing to draw from; give the ranges or lists to "
                          "sample with --grid (or --zip)")

    grid_axes, zip_axes, distributions = [], [], []
    for key, text in grid_pairs:
        field_type, _ = leaf_type(config_cls, key)
        if random is not None:
            dist = parse_distribution(key, text, field_type)
            if dist.kind == "choice":
                dist = Distribution("choice", choices=tuple(
                    _typed(config_cls, key, v, f"--grid {key}") for v in dist.choices))
            else:
                for bound in (dist.low, dist.high):
                    _typed(config_cls, key,
                           int(bound) if dist.integer else bound, f"--grid {key}={text}")
            distributions.append((key, dist))
        else:
            values = parse_grid_values(key, text, field_type)
            grid_axes.append((key, tuple(_typed(config_cls, key, v,
                                                f"--grid {key}={text}") for v in values)))
    for key, text in zip_pairs:
        field_type, _ = leaf_type(config_cls, key)
        values = parse_grid_values(key, text, field_type, option="--zip")
        zip_axes.append((key, tuple(_typed(config_cls, key, v,
                                           f"--zip {key}={text}") for v in values)))
    lengths = {k: len(v) for k, v in zip_axes}
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"--zip: zipped lists must have equal lengths, got {lengths}")
    base = _base_config(config_cls, config_file, fixed, swept=bool(grid_pairs or zip_pairs))
    return SweepSpec(experiment=experiment,
                     config_file=str(Path(config_file).resolve()) if config_file else None,
                     fixed=tuple(fixed.items()), grid=tuple(grid_axes), zipped=tuple(zip_axes),
                     random_samples=random, distributions=tuple(distributions),
                     repeats=repeats, seed=seed, base_config=base)


def _leaves(data: Mapping, prefix: str = ""):
    """``(dotted key, value)`` of every leaf of a nested mapping."""
    for name, value in data.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def _base_config(config_cls, config_file, fixed: dict, swept: bool) -> dict:
    """The base config (defaults, then the config file, then ``fixed``) as a plain dict.

    It must be valid on its own, except for a cross-field check (``__post_init__``) when keys
    are swept: a fixed value may fit only the swept values, not the default they replace
    (``--set num_neurons=10 --grid in_degree=2,5`` against the default in_degree 20);
    :func:`expand` checks every whole point. Then every value is still typed and
    range-checked alone."""
    try:
        return config_to_dict(resolve_config(config_cls, config_file, fixed))
    except ConfigError as error:
        cross_field = error.__cause__ is not None and not isinstance(error.__cause__, ConfigError)
        if not (swept and cross_field):
            raise
    data = load_config_file(config_file) if config_file is not None else {}
    typed: dict[str, Any] = {}
    for key, value in [*_leaves(data), *fixed.items()]:
        node = typed
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = check_value(config_cls, key, value)
    return _plain(_merge(config_to_dict(config_cls()), typed))


def _parameter_sets(spec: SweepSpec) -> list[dict[str, Any]]:
    zip_rows = [dict(zip([k for k, _ in spec.zipped], row))
                for row in zip(*[v for _, v in spec.zipped])] if spec.zipped else [{}]
    if spec.random_samples is None:
        keys = [k for k, _ in spec.grid]
        combos = itertools.product(*[v for _, v in spec.grid])
        return [{**dict(zip(keys, combo)), **row} for combo in combos for row in zip_rows]
    rng = _sampling_rng(spec.seed)
    count = spec.random_samples
    # drawn in key order: the digest (and sweep.yaml) does not see the order of the --grid
    # options, so the same spec given in another order must draw the same points
    columns = {key: dist.sample(rng, count) for key, dist in sorted(spec.distributions, key=lambda kd: kd[0])}
    rows = [zip_rows[i] for i in rng.integers(0, len(zip_rows), size=count)]
    return [{**{k: columns[k][i] for k, _ in spec.distributions}, **rows[i]} for i in range(count)]


def expand(spec: SweepSpec, config_cls) -> list[SweepPoint]:
    """Every point of ``spec`` (repeat-major), each resolved and validated.

    Grid/zip sweeps with two identical points are rejected; random sweeps drop repeated
    draws (the table then has fewer than ``N`` points per repeat).
    """
    base = dict(spec.fixed)
    parameter_sets = _parameter_sets(spec)
    seeds = repeat_seeds(spec.seed, spec.repeats)
    points: list[SweepPoint] = []
    first_index: dict[str, int] = {}
    for repeat, seed in enumerate(seeds):
        for values in parameter_sets:
            described = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "(no swept keys)"
            try:
                config = resolve_config(config_cls, spec.config_file, {**base, **values})
            except ConfigError as error:
                raise ConfigError(f"sweep point {len(points)} ({described}): {error}") from None
            digest = config_hash(config, seed)
            if digest in first_index:
                if spec.random_samples is not None:
                    continue
                raise ConfigError(f"sweep points {first_index[digest]} and {len(points)} are "
                                  f"identical ({described}); remove the duplicate value")
            first_index[digest] = len(points)
            points.append(SweepPoint(index=len(points), repeat=repeat, seed=seed,
                                     overrides=dict(values), config=config, config_hash=digest))
    if not points:
        raise ConfigError("the sweep has no points")
    return points
