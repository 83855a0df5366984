"""Building dataclasses from plain data (YAML), with conversions and errors that say where.

Values are converted to each field's declared type (YAML reads `3e-4` as a string; we make it a float),
unknown keys are refused with the nearest valid ones, and `bounded` fields are range-checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import types
import typing
from dataclasses import field
from typing import Any, Literal

from thce.utils.errors import UserError


def bounded(default: Any, low: float | None = None, high: float | None = None) -> Any:
    """A dataclass field whose number must lie in [low, high]; checked where configs are read."""
    return field(default=default, metadata={"min": low, "max": high})


def build_dataclass(cls: type, raw: Any, section: str, file: str | os.PathLike) -> Any:
    """Build dataclass `cls` from a mapping, converting values by type and rejecting unknown keys."""
    if not isinstance(raw, dict):
        raise UserError(f"{file}: section '{section}' must be a mapping, got {type(raw).__name__}: {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(fields)}"
            raise UserError(f"{file}: unknown key '{key}' in section '{section}'{hint}")
        where = key if section == "top level" else f"{section}.{key}"
        values[key] = coerce(value, hints[key], where=where, file=file)
        check_range(
            values[key], fields[key].metadata.get("min"), fields[key].metadata.get("max"), where, file
        )
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UserError(f"{file}: section '{section}' is missing required key(s): {', '.join(missing)}")
    return cls(**values)


def check_range(
    value: Any, low: float | None, high: float | None, where: str, file: str | os.PathLike
) -> None:
    """Refuse a number outside [low, high] (None: unbounded), naming the file and key."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if low is not None and value < low:
        raise UserError(f"{file}: '{where}' must be at least {low}, got {value}")
    if high is not None and value > high:
        raise UserError(f"{file}: '{where}' must be at most {high}, got {value}")


def coerce(value: Any, tp: Any, where: str, file: str | os.PathLike) -> Any:
    """Convert a YAML value to the declared type `tp`, or raise a UserError saying where and why."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail(expected: str) -> typing.NoReturn:
        raise UserError(f"{file}: '{where}' must be {expected}, got {value!r}")

    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for member in (a for a in args if a is not type(None)):
            try:
                return coerce(value, member, where, file)
            except UserError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        fail(" or ".join(type_name(a) for a in args))
    if value is None:
        fail(type_name(tp))
    if origin is Literal:
        if value in args:
            return value
        fail(f"one of {', '.join(map(repr, args))}")
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, section=where, file=file)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        fail("true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else fail("an integer")
            except ValueError:
                pass
        fail("an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        fail("a number")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        fail("a string")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value).value
        except ValueError:
            fail(f"one of {', '.join(repr(m.value) for m in tp)}")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str) and origin is list:  # `--set x=a` for a list field: one item
            value = [value]
        if not isinstance(value, (list, tuple)):
            fail("a list")
        item_type = args[0] if args else Any
        return [coerce(v, item_type, f"{where}[{i}]", file) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            fail("a mapping")
        value_type = args[1] if len(args) == 2 else Any
        return {k: coerce(v, value_type, f"{where}.{k}", file) for k, v in value.items()}
    return value  # a type we do not model (e.g. TRL's callables): TRL checks it on construction


def field_type(config_class: type, name: str) -> Any:
    try:
        return typing.get_type_hints(config_class)[name]
    except Exception:  # some TRL annotations do not resolve at runtime; fall back to the raw annotation
        annotation = next(f.type for f in dataclasses.fields(config_class) if f.name == name)
        return annotation if not isinstance(annotation, str) else Any


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    return getattr(tp, "__name__", str(tp))


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value
