"""Experiment configs: frozen dataclasses, loaded from YAML, overridden with `a.b=value`.

Each experiment declares ``Config``, a frozen dataclass whose fields have defaults.
Allowed field types: ``int``, ``float``, ``bool``, ``str``, ``tuple[T, ...]`` of those,
``T | None``, and nested frozen dataclasses. A field may carry ``metadata`` with
``min`` / ``max`` (inclusive bounds, applied to every element of a tuple), ``choices``,
``allow_empty`` (a tuple field may be empty; by default it needs one value) and ``help``.
Tuple values are flat: ``1,2``, ``[1, 2]`` or a YAML list; nested brackets are refused.
Every error is a :class:`ConfigError` (a ``ValueError``) that names the key and lists the
valid keys or the allowed values.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key, value or file that cannot be used; the message says what is allowed."""


def _fields(config_cls) -> dict[str, tuple[dataclasses.Field, Any]]:
    """name -> (field, resolved type annotation)."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(config_cls)}


def _valid_keys(config_cls, prefix: str = "") -> list[str]:
    keys = []
    for name, (_, f_type) in _fields(config_cls).items():
        if dataclasses.is_dataclass(f_type):
            keys.extend(_valid_keys(f_type, prefix + name + "."))
        else:
            keys.append(prefix + name)
    return keys


def _describe(f_type) -> str:
    origin = typing.get_origin(f_type)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_describe(a) for a in typing.get_args(f_type))
    if origin is tuple:
        return f"tuple[{_describe(typing.get_args(f_type)[0])}, ...]"
    return getattr(f_type, "__name__", str(f_type))


def _coerce(key: str, f_type, value: Any) -> Any:
    """Convert ``value`` (typed, or a string from the command line) to ``f_type``."""
    origin = typing.get_origin(f_type)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(f_type) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        return _coerce(key, args[0], value)
    if origin is tuple:
        (element_type, *_rest) = typing.get_args(f_type)
        if isinstance(value, str):
            text = value.strip()
            if text[:1] + text[-1:] in ("[]", "()"):
                text = text[1:-1]
            if any(bracket in text for bracket in "()[]"):
                raise ConfigError(f"{key}: nested brackets in {value!r}; expected a flat list "
                                  f"of {_describe(element_type)}, e.g. 1,2 or [1, 2]")
            items = [s.strip() for s in text.split(",") if s.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        if any(isinstance(item, (list, tuple, Mapping)) for item in items):
            raise ConfigError(f"{key}: nested list in {value!r}; expected a flat list "
                              f"of {_describe(element_type)}, e.g. [1, 2]")
        return tuple(_coerce(key, element_type, item) for item in items)
    if f_type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):  # a file's 1 / 0, as --set flag=1 / 0
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{key}: expected a bool (true/false), got {value!r}")
    if f_type is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an int, got bool {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
            try:  # "1e4" or "2000.0", as a YAML file's 1.0e+4 or 2000.0 is accepted
                number = float(value.strip())
            except ValueError:
                number = math.nan
            if number.is_integer() and abs(number) <= 2**53:  # exact in a float
                return int(number)
        raise ConfigError(f"{key}: expected an int, got {value!r}")
    if f_type is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a float, got bool {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a float, got {value!r}")
    if f_type is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {_describe(f_type)}")


def _check_range(key: str, field: dataclasses.Field, value: Any) -> None:
    meta = field.metadata
    if value == () and not meta.get("allow_empty", False):
        raise ConfigError(f"{key}: empty list; give at least one value")
    values = value if isinstance(value, tuple) else (value,)
    for item in values:
        if item is None:
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{key}: {item!r} is not a finite number")
        if "choices" in meta and item not in meta["choices"]:
            raise ConfigError(f"{key}: {item!r} is not allowed; choose one of {list(meta['choices'])}")
        lo, hi = meta.get("min"), meta.get("max")
        if (lo is not None and item < lo) or (hi is not None and item > hi):
            bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            raise ConfigError(f"{key}: {item!r} is out of range; allowed {bounds}")


def _field_default(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def config_from_dict(config_cls, data: Mapping[str, Any], _prefix: str = "", _base=None):
    """Build ``config_cls`` from a nested mapping; missing keys keep their defaults.

    A nested section starts from the default its parent gives it (``default_factory``),
    not from the nested class's own defaults, so overriding one nested field keeps the
    parent's choices for the others."""
    if not isinstance(data, Mapping):
        where = _prefix.rstrip(".") or "config"
        raise ConfigError(f"{where}: expected a mapping of its fields, got {type(data).__name__}")
    fields = _fields(config_cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        valid = ", ".join(_valid_keys(config_cls, _prefix))
        raise ConfigError(f"unknown key {_prefix + str(unknown[0])!r}; valid keys: {valid}")
    kwargs = {}
    for name, value in data.items():
        field, f_type = fields[name]
        key = _prefix + name
        if dataclasses.is_dataclass(f_type):
            nested_base = getattr(_base, name) if _base is not None else _field_default(field)
            kwargs[name] = config_from_dict(f_type, value, key + ".", nested_base)
        else:
            kwargs[name] = _coerce(key, f_type, value)
            _check_range(key, field, kwargs[name])
    try:
        if _base is not None:
            return dataclasses.replace(_base, **kwargs)
        return config_cls(**kwargs)
    except (ValueError, TypeError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{_prefix or 'config'}: {error}") from error


def check_value(config_cls, key: str, value: Any) -> Any:
    """``value`` of dotted ``key`` typed and range-checked on its own: no ``__post_init__``
    (whether it fits the other values is checked when the whole config is built)."""
    node, parts = config_cls, key.split(".")
    for part in parts[:-1]:
        node = _fields(node)[part][1]
    field, f_type = _fields(node)[parts[-1]]
    typed = _coerce(key, f_type, value)
    _check_range(key, field, typed)
    return typed


def config_to_dict(config) -> dict[str, Any]:
    """Nested plain dict (tuples become lists) that YAML and JSON can hold."""
    result = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = config_to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        result[f.name] = value
    return result


def flatten_config(config) -> dict[str, Any]:
    """``{"a.b": value}`` with dotted keys, tuples kept as tuples (table columns)."""
    flat = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            flat.update({f"{f.name}.{k}": v for k, v in flatten_config(value).items()})
        else:
            flat[f.name] = value
    return flat


def _copy(value: Any) -> Any:
    """Nested mappings copied into fresh dicts (the caller's overrides are never changed)."""
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, Mapping) else value


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a": {"c": 2}}`` -> ``{"a": {"b": 1, "c": 2}}``, in either order."""
    nested: dict[str, Any] = {}
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {part!r} is not a nested section")
        value = _copy(value)
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            value = _merge(node[parts[-1]], value)
        node[parts[-1]] = value
    return nested


def _merge(base: dict, extra: Mapping) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": "1", "c": "x"}``; values stay strings; a key given
    twice is an error (which value was meant is unclear)."""
    parsed = {}
    for item in assignments:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set num_neurons=500")
        key, value = item.split("=", 1)
        if key.strip() in parsed:
            raise ConfigError(f"--set {key.strip()}: {key.strip()!r} is given twice; set each key once")
        parsed[key.strip()] = value
    return parsed


def yaml_error_text(error: Exception) -> str:
    """PyYAML's several-line error as one line: ``expected ',' or ']' ... at line 2, column 9``."""
    problem, mark = getattr(error, "problem", None), getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(error).split())


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the
    last silently; like ``--set`` twice, which value was meant is unclear)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *anchor``: merged by the SafeLoader (its keys may be given again)
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key: the SafeLoader itself refuses it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice; give each key once", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config_file(path: str | Path, option: str = "--config", loader=None) -> dict[str, Any]:
    """Read a YAML mapping with a ``yaml.SafeLoader`` (no arbitrary objects; a key given twice
    is an error), or ``loader`` (a subclass of it); errors name ``option`` (the command-line
    flag that gave the path)."""
    path = Path(path)
    where = f"{option} {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader or _UniqueKeyLoader)
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{where}: not readable as UTF-8 text ({error})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: not valid YAML ({yaml_error_text(error)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return data


def resolve_config(config_cls, config_file=None, overrides: Mapping[str, Any] | list[str] | None = None):
    """Defaults, then the YAML file, then ``overrides`` (``{"a.b": v}`` or ``["a.b=v"]``).

    The file may spell a nested key either way: ``synapse: {tau_ms: 3}`` or ``synapse.tau_ms: 3``."""
    data = load_config_file(config_file) if config_file is not None else {}
    dotted = {key: value for key, value in data.items() if "." in str(key)}
    if dotted:
        plain = {key: value for key, value in data.items() if key not in dotted}
        data = _merge(plain, _nest(dotted))
    if overrides:
        if isinstance(overrides, (list, tuple)):
            overrides = parse_assignments(list(overrides))
        data = _merge(data, _nest(overrides))
    return config_from_dict(config_cls, data)


def config_hash(config, seed: int) -> str:
    """SHA-256 (hex) of the canonical JSON of the resolved config and the seed: a run's identity."""
    canonical = json.dumps({"config": config_to_dict(config), "seed": int(seed)}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def config_to_yaml(config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
