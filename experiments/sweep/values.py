"""Parse the values of one swept parameter: lists, ranges and random distributions.

Text forms (the same on the command line and in a sweep file):

* ``1,2,3`` or ``[1, 2, 3]`` (a YAML flow list): explicit values. Tuple-valued fields
  need the list-of-lists form, ``[[0.5, 1.0], [2.0]]``, since a comma is ambiguous there.
* ``LO:HI:N``: ``N`` evenly spaced values from ``LO`` to ``HI`` inclusive
  (``numpy.linspace``); ``LO:HI:N:log``: geometric spacing (``numpy.geomspace``).
  Numeric fields only; an ``int`` field needs a range whose values are whole numbers.
* Random sampling (``--random N``): ``LO:HI`` uniform, ``LO:HI:log`` log-uniform; an
  explicit list is a uniform choice among its values. ``int`` fields draw integers.

Every problem is a :class:`~experiments.config.ConfigError` naming the option, the key
and the text, and saying which form is allowed.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import yaml

from experiments.config import ConfigError, yaml_error_text

_RANGE_HELP = "LO:HI:N (N evenly spaced values) or LO:HI:N:log (geometric), e.g. 0.1:1.0:5"
_SAMPLE_HELP = "LO:HI (uniform), LO:HI:log (log-uniform) or a list of choices, e.g. 1e-4:1e-1:log"


def leaf_type(config_cls, key: str):
    """The annotated type of dotted ``key`` in ``config_cls`` with ``T | None`` unwrapped.

    Returns ``(type, optional)``; raises ``ConfigError`` listing the valid keys.
    """
    node = config_cls
    parts = key.split(".")
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(node) if dataclasses.is_dataclass(node) else {}
        names = [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []
        if part not in names:
            raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(valid_keys(config_cls))}")
        node = hints[part]
        if dataclasses.is_dataclass(node) and depth == len(parts) - 1:
            raise ConfigError(f"{key!r} is a section, not a value; sweep one of its fields: "
                              + ", ".join(k for k in valid_keys(config_cls) if k.startswith(key + ".")))
    optional = False
    if typing.get_origin(node) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(node) if a is not type(None)]
        optional, node = True, args[0]
    return node, optional


def valid_keys(config_cls, prefix: str = "") -> list[str]:
    """Every dotted leaf key of ``config_cls``."""
    keys = []
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        if dataclasses.is_dataclass(hints[field.name]):
            keys.extend(valid_keys(hints[field.name], prefix + field.name + "."))
        else:
            keys.append(prefix + field.name)
    return keys


def _number(text: str, where: str, help_text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a number; expected {help_text}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {text!r} is not finite; expected {help_text}")
    return value


def _tidy_float(value: float) -> float:
    """Round to 12 significant digits so 0.1:0.3:3 gives 0.2, not 0.20000000000000004."""
    return float(f"{value:.12g}")


def _is_numeric(field_type) -> bool:
    return field_type in (int, float)


def _as_list(text: Any, where: str, field_type) -> list | None:
    """An explicit list from YAML/CLI text, or None when ``text`` is a range form."""
    if isinstance(text, (list, tuple)):
        return list(text)
    if not isinstance(text, str):
        return [text]
    stripped = text.strip()
    if not stripped:
        raise ConfigError(f"{where}: no values given (empty list)")
    is_tuple = typing.get_origin(field_type) is tuple
    if stripped.startswith("["):
        try:
            parsed = yaml.safe_load(stripped)
        except yaml.YAMLError as error:
            raise ConfigError(f"{where}: {text!r} is not a valid YAML list "
                              f"({yaml_error_text(error)})") from None
        if not isinstance(parsed, list):
            raise ConfigError(f"{where}: {text!r} is not a list")
        if is_tuple and not all(isinstance(item, list) for item in parsed):
            raise ConfigError(f"{where}: a tuple field takes a list of lists, e.g. [[0.5, 1.0], [2.0]]")
        return parsed
    if is_tuple:
        raise ConfigError(f"{where}: {text!r} is ambiguous for a tuple field; give a YAML list "
                          "of lists, e.g. '[[0.5, 1.0], [2.0]]'")
    if ":" in stripped and _is_numeric(field_type):
        return None
    return [item.strip() for item in stripped.split(",")]


def parse_grid_values(key: str, text: Any, field_type, option: str = "--grid") -> list:
    """Values of one grid/zip axis (typed numbers for ranges, else raw items)."""
    where = f"{option} {key}={text}" if isinstance(text, str) else f"{option} {key}"
    values = _as_list(text, where, field_type)
    if values is None:
        values = _parse_range(text.strip(), where, field_type)
    if not values:
        raise ConfigError(f"{where}: no values given (empty list)")
    if any(isinstance(v, str) and not v for v in values):
        raise ConfigError(f"{where}: empty value in the list; give at least one value per item")
    return values


def _parse_range(text: str, where: str, field_type) -> list:
    import numpy as np

    parts = text.split(":")
    log = parts[-1].strip().lower() == "log"
    if log:
        parts = parts[:-1]
    if len(parts) != 3:
        raise ConfigError(f"{where}: bad range syntax; expected {_RANGE_HELP}")
    lo = _number(parts[0], where, _RANGE_HELP)
    hi = _number(parts[1], where, _RANGE_HELP)
    try:
        count = int(parts[2])
    except ValueError:
        raise ConfigError(f"{where}: the count {parts[2]!r} is not a whole number; "
                          f"expected {_RANGE_HELP}") from None
    if count < 1:
        raise ConfigError(f"{where}: the count must be at least 1, got {count}")
    if log and (lo <= 0 or hi <= 0):
        raise ConfigError(f"{where}: a log range needs LO > 0 and HI > 0")
    raw = np.geomspace(lo, hi, count) if log else np.linspace(lo, hi, count)
    if field_type is int:
        rounded = np.rint(raw)
        if np.any(np.abs(raw - rounded) > 1e-6 * np.maximum(1.0, np.abs(raw))):
            raise ConfigError(f"{where}: gives non-integer values {[_tidy_float(v) for v in raw]} "
                              "for an int field; choose LO, HI, N so that every value is whole")
        return [int(v) for v in rounded]
    # a linear range's rounding error is relative to its span, not to each value: the point
    # meant to be 0 in -0.1:0.2:4 comes out as 1.4e-17, which 12 significant digits keep;
    # the ends are linspace's exact LO and HI, kept as given however small (1e-15:1e-3:3)
    scale = max(abs(lo), abs(hi))
    return [0.0 if not log and abs(v) <= 1e-12 * scale and (v == 0 or v not in (lo, hi))
            else _tidy_float(v) for v in raw]


@dataclasses.dataclass(frozen=True)
class Distribution:
    """One randomly sampled parameter: ``kind`` is uniform, loguniform or choice."""

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    integer: bool = False

    def to_dict(self) -> dict:
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        bounds = [int(self.low), int(self.high)] if self.integer else [self.low, self.high]
        return {self.kind: bounds}

    def sample(self, rng, count: int) -> list:
        """``count`` draws from ``rng`` (a ``numpy.random.Generator``)."""
        import numpy as np

        if self.kind == "choice":
            picks = rng.integers(0, len(self.choices), size=count)
            return [self.choices[i] for i in picks]
        if self.kind == "uniform" and self.integer:
            return [int(v) for v in rng.integers(int(self.low), int(self.high), size=count,
                                                 endpoint=True)]
        if self.kind == "uniform":
            return [_tidy_float(v) for v in rng.uniform(self.low, self.high, size=count)]
        draws = np.exp(rng.uniform(math.log(self.low), math.log(self.high), size=count))
        if self.integer:
            return [int(v) for v in np.clip(np.rint(draws), math.ceil(self.low), math.floor(self.high))]
        return [_tidy_float(v) for v in draws]


def parse_distribution(key: str, text: Any, field_type) -> Distribution:
    """The distribution of one parameter in ``--random`` mode."""
    where = f"--grid {key}={text} (with --random)" if isinstance(text, str) else f"random {key}"
    if isinstance(text, dict) and len(text) == 1:
        ((kind, spec),) = text.items()
        if kind == "choice":
            return Distribution("choice", choices=tuple(parse_grid_values(key, spec, field_type)))
        if kind in ("uniform", "loguniform") and isinstance(spec, (list, tuple)) and len(spec) == 2:
            text = f"{spec[0]}:{spec[1]}" + (":log" if kind == "loguniform" else "")
        else:
            raise ConfigError(f"{where}: expected {{uniform: [LO, HI]}}, {{loguniform: [LO, HI]}} "
                              "or {choice: [...]}")
    if not (isinstance(text, str) and ":" in text and _is_numeric(field_type)):
        values = _as_list(text, where, field_type)
        if not values:
            raise ConfigError(f"{where}: no values given (empty list)")
        return Distribution("choice", choices=tuple(values))
    parts = text.strip().split(":")
    log = parts[-1].strip().lower() == "log"
    if log:
        parts = parts[:-1]
    if len(parts) != 2:
        raise ConfigError(f"{where}: bad sampling range; expected {_SAMPLE_HELP} "
                          "(a count N belongs to grid ranges, not to --random)")
    lo, hi = (_number(p, where, _SAMPLE_HELP) for p in parts)
    if not lo < hi:
        raise ConfigError(f"{where}: need LO < HI, got {lo} and {hi}")
    if log and lo <= 0:
        raise ConfigError(f"{where}: a log-uniform range needs LO > 0")
    integer = field_type is int
    if integer and (not float(lo).is_integer() or not float(hi).is_integer()):
        raise ConfigError(f"{where}: an int field needs whole-number bounds")
    return Distribution("loguniform" if log else "uniform", lo, hi, integer=integer)
