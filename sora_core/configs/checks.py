"""Config validation: every field of a component config checked against its declared type and the
class's ``limits``, plus the structural rules a module needs (``_require``)."""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from typing import Any


class ConfigError(ValueError):
    """A config that is malformed, of the wrong kind, or names an unknown preset."""


# ---------------------------------------------------------------------------------------------
# Validation: every field checked against its declared type and the class's ``limits``
# ---------------------------------------------------------------------------------------------

MAX_DIM = 65536             # any width (channels, model dim, text dim); Wan 14B uses 5120
MAX_LAYERS = 1000
MAX_ITEMS = 64              # entries of a tuple field with ``...`` length


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_scalar(label: str, value, kind: type, bounds: tuple | None) -> None:
    """Type (int / float / bool / str, no bool for numbers, finite floats) and inclusive bounds."""
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    ok = (type(value) is bool if kind is bool else isinstance(value, str) if kind is str
          else type(value) is int if kind is int
          else isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
    if not ok:
        raise ConfigError(f"{label}={value!r} must be {names[kind]}" + (" (finite)" if kind is float else ""))
    if kind is str:
        if not 0 < len(value) <= 256:
            raise ConfigError(f"{label}={value!r} must be a non-empty string of at most 256 characters")
    elif bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{label}={value!r} is out of range: allowed {bounds[0]} .. {bounds[1]}")


def check_fields(cfg) -> None:
    """Check every field of a config dataclass against its type annotation and ``cfg.limits``
    (``{field: (low, high)}``, inclusive, applied to each entry of a tuple); raises ConfigError
    naming the class, the field, the value and what is allowed."""
    cls = type(cfg)
    limits = getattr(cls, "limits", {})
    for f in dataclasses.fields(cls):
        hint, value, label = _hints(cls)[f.name], getattr(cfg, f.name), f"{cls.__name__}.{f.name}"
        if typing.get_origin(hint) is not tuple:
            _check_scalar(label, value, hint, limits.get(f.name))
            continue
        args = typing.get_args(hint)
        length = MAX_ITEMS if args[-1] is Ellipsis else len(args)
        if not isinstance(value, tuple) or (len(value) > length if args[-1] is Ellipsis else len(value) != length):
            want = f"a list of at most {length}" if args[-1] is Ellipsis else f"a list of exactly {length}"
            raise ConfigError(f"{label}={value!r} must be {want} values")
        for i, v in enumerate(value):
            _check_scalar(f"{label}[{i}]", v, args[0], limits.get(f.name))


def _require(cfg, ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{type(cfg).__name__}.{name}: {message}")
