"""Typed job arguments: check and convert JSON values to a handler's annotations (worker side),
and turn typed values into JSON (enqueue side).

``converter(annotation)`` builds, once per parameter at registration, a function
``convert(value, path)`` returning the value as the handler expects it, or raising
``ArgumentMismatch`` whose message names ``path`` (``tags[2]``, ``user.email``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import sys
import types
import typing
import uuid
from collections.abc import Callable, Mapping, MutableSet, Set
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["ArgumentMismatch", "converter", "to_json", "type_name"]

Convert = Callable[[Any, str], Any]


class ArgumentMismatch(Exception):
    """A value does not fit its annotation; the message names the field."""


def type_name(expected: Any) -> str:
    if isinstance(expected, type) and not typing.get_args(expected):
        return expected.__name__
    return str(expected).replace("typing.", "")


def _mismatch(expected: Any, value: Any, path: str) -> ArgumentMismatch:
    return ArgumentMismatch(
        f"argument {path!r} must be {type_name(expected)}, got {type(value).__name__} {value!r:.60}"
    )


def _passthrough(value: Any, path: str) -> Any:
    return value


def converter(expected: Any) -> Convert:
    """The conversion function for one annotation (``Any`` and unknown forms pass through)."""
    if expected is Any or expected is object:
        return _passthrough
    origin = typing.get_origin(expected)
    if origin is typing.Annotated:
        return converter(typing.get_args(expected)[0])
    if origin in (typing.Union, types.UnionType):
        return _union(expected)
    if expected is None or expected is type(None):
        return _exact(type(None), expected)
    if origin is typing.Literal:
        return _literal(expected)
    if isinstance(expected, typing.NewType):
        return converter(expected.__supertype__)
    if typing.is_typeddict(expected):
        return _exact(dict, expected)
    if origin is not None:
        return _generic(expected, origin)
    if not isinstance(expected, type):
        return _passthrough  # TypeVar, forward references...: not checked
    return _class(expected)


def _exact(kind: type | tuple[type, ...], expected: Any) -> Convert:
    def convert(value: Any, path: str) -> Any:
        if isinstance(value, kind):
            return value
        raise _mismatch(expected, value, path)

    return convert


def _union(expected: Any) -> Convert:
    members = typing.get_args(expected)
    converters = [(m, converter(m)) for m in members]

    def convert(value: Any, path: str) -> Any:
        # a member of the value's own JSON type wins (int | float keeps an int an int)
        for member, conv in converters:
            if isinstance(member, type) and type(value) is member:
                return conv(value, path)
        for _member, conv in converters:
            try:
                return conv(value, path)
            except ArgumentMismatch:
                continue
        raise _mismatch(expected, value, path)

    return convert


def _literal(expected: Any) -> Convert:
    allowed = typing.get_args(expected)

    def convert(value: Any, path: str) -> Any:
        for choice in allowed:
            if value == choice and type(value) is type(choice):
                return choice
        raise _mismatch(expected, value, path)

    return convert


def _generic(expected: Any, origin: Any) -> Convert:
    args = typing.get_args(expected)
    origin = _SETS.get(origin, origin)
    if origin in (list, set, frozenset) or (origin is tuple and len(args) == 2 and args[1] is ...):
        return _sequence(expected, origin, converter(args[0]) if args else _passthrough)
    if origin is tuple:
        items = [converter(a) for a in args]

        def convert_tuple(value: Any, path: str) -> Any:
            if not isinstance(value, list | tuple) or len(value) != len(items):
                raise _mismatch(expected, value, path)
            pairs = enumerate(zip(items, value, strict=True))
            return tuple(c(v, f"{path}[{i}]") for i, (c, v) in pairs)

        return convert_tuple
    if origin is dict or origin is Mapping:
        key = converter(args[0]) if args else _passthrough
        val = converter(args[1]) if len(args) > 1 else _passthrough

        def convert_dict(value: Any, path: str) -> Any:
            if not isinstance(value, dict):
                raise _mismatch(expected, value, path)
            return {_key(key, k, path): val(v, f"{path}[{k!r}]") for k, v in value.items()}

        return convert_dict
    if isinstance(origin, type):
        return _exact(origin, expected)
    return _passthrough


def _key(key: Convert, k: Any, path: str) -> Any:
    """A dict's key ``k`` converted; a str refused says JSON's keys are always strings."""
    try:
        return key(k, f"{path}[{k!r}]")
    except ArgumentMismatch as exc:
        if not isinstance(k, str):
            raise
        raise ArgumentMismatch(
            f"{exc} (a key of {path!r}: JSON object keys are always strings, so annotate the "
            "keys as str)"
        ) from None


# the abstract sets a JSON list becomes (``AbstractSet[X]``, ``MutableSet[X]``, and bare)
_SETS: dict[Any, type] = {Set: frozenset, MutableSet: set}


def _sequence(expected: Any, origin: type, item: Convert) -> Convert:
    """A list, set, frozenset or tuple (JSON holds each as a list) of ``item``'s values."""

    def convert_seq(value: Any, path: str) -> Any:
        if not isinstance(value, list | tuple):
            raise _mismatch(expected, value, path)
        items = [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is list:
            return items
        try:
            return origin(items)
        except TypeError:  # an item a set cannot hold
            raise ArgumentMismatch(
                f"argument {path!r} must be {type_name(expected)}, got list {value!r:.60}, "
                "an item of which is unhashable"
            ) from None

    return convert_seq


def _class(cls: type) -> Convert:
    if cls is bool or cls is str:
        return _exact(cls, cls)
    if cls in (set, frozenset, tuple) or cls in _SETS:  # bare: JSON holds them as lists
        return _sequence(cls, _SETS.get(cls, cls), _passthrough)
    if cls is int:
        return _strict_int
    if cls is float:
        return _to_float
    if cls in _PARSERS:
        return _parsed(cls, _PARSERS[cls])
    if issubclass(cls, enum.Enum):
        return _enum(cls)
    if dataclasses.is_dataclass(cls):
        return _dataclass(cls)
    if _is_pydantic_model(cls):
        return _pydantic(cls)
    return _exact(cls, cls)


def _strict_int(value: Any, path: str) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _mismatch(int, value, path)


def _to_float(value: Any, path: str) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int too large for a float
            pass
    raise _mismatch(float, value, path)


def _parse_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError
    return Decimal(str(value))


def _parse_timedelta(value: Any) -> dt.timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError
    return dt.timedelta(seconds=value)


def _from_string(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def run(value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError
        return parse(value)

    return run


# classes carried as strings (or numbers) in JSON: the parser of each
_PARSERS: dict[type, Callable[[Any], Any]] = {
    dt.datetime: _from_string(dt.datetime.fromisoformat),
    dt.date: _from_string(dt.date.fromisoformat),
    dt.time: _from_string(dt.time.fromisoformat),
    dt.timedelta: _parse_timedelta,
    uuid.UUID: _from_string(uuid.UUID),
    Decimal: _parse_decimal,
}


def _parsed(cls: type, parse: Callable[[Any], Any]) -> Convert:
    def convert(value: Any, path: str) -> Any:
        if type(value) is cls:
            return value
        try:
            return parse(value)
        except (TypeError, ValueError, OverflowError, InvalidOperation):
            raise _mismatch(cls, value, path) from None

    return convert


def _enum(cls: type[enum.Enum]) -> Convert:
    def convert(value: Any, path: str) -> Any:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise ArgumentMismatch(
                f"argument {path!r} must be one of {choices}, got {value!r:.60}"
            ) from None

    return convert


def _dataclass(cls: type) -> Convert:
    fields = [f for f in dataclasses.fields(cls) if f.init]
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    converters = {f.name: converter(hints.get(f.name, Any)) for f in fields}

    def convert(value: Any, path: str) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise _mismatch(cls, value, path)
        missing = sorted(required - value.keys())
        if missing:
            raise ArgumentMismatch(f"missing argument {path + '.' + missing[0]!r}")
        unknown = sorted(str(k) for k in value.keys() - converters.keys())
        if unknown:
            raise ArgumentMismatch(f"unexpected argument {path + '.' + unknown[0]!r}")
        return cls(**{k: converters[k](v, f"{path}.{k}") for k, v in value.items()})

    return convert


def _is_pydantic_model(cls: type) -> bool:
    pydantic = sys.modules.get("pydantic")  # never imported by errands itself
    return pydantic is not None and issubclass(cls, pydantic.BaseModel)


def _pydantic(cls: Any) -> Convert:
    def convert(value: Any, path: str) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return cls.model_validate(value)
        except ValueError as exc:  # pydantic.ValidationError
            errors: list[dict[str, Any]] = getattr(exc, "errors", list)()
            if not errors:
                raise ArgumentMismatch(f"argument {path!r} is invalid: {exc}") from None
            first = errors[0]
            where = ".".join([path, *(str(part) for part in first.get("loc", ()))])
            raise ArgumentMismatch(f"argument {where!r}: {first.get('msg', exc)}") from None

    return convert


# -- enqueue side ----------------------------------------------------------------------------
def to_json(value: Any) -> Any:
    """``value`` with the types ``converter`` parses turned into JSON data: datetimes, dates
    and times as ISO strings, timedeltas as seconds, UUIDs and Decimals as strings, enums as their
    values, dataclasses and pydantic models as dicts, tuples and sets as lists."""
    if value is None or isinstance(value, str | int | float | bool):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model
        return dump(mode="json")
    return value
