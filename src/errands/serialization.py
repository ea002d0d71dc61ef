"""Encoding of job envelopes. JSON (orjson) by default; pickle never."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from .errors import ErrandsError

__all__ = [
    "JSONSerializer",
    "PayloadTooLargeError",
    "PlainEnvelopes",
    "SerializationError",
    "Serializer",
    "dumps_json",
]


class SerializationError(ErrandsError, ValueError):
    """A job could not be encoded or decoded."""


class PayloadTooLargeError(SerializationError):
    """An encoded job is larger than the Enqueuer's ``max_payload`` (1 MiB by default)."""


class Serializer(Protocol):
    """Turns a job envelope (a dict of JSON-like values) into bytes and back."""

    def dumps(self, value: dict[str, Any]) -> bytes: ...

    def loads(self, data: bytes) -> dict[str, Any]: ...


class JSONSerializer:
    """Fast JSON through orjson. Rejects what JSON cannot hold with a clear message, NaN and
    Infinity included (orjson would write them as null)."""

    def dumps(self, value: dict[str, Any]) -> bytes:
        return dumps_json(value, "job data")

    def loads(self, data: bytes) -> dict[str, Any]:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SerializationError(f"undecodable job payload: {exc}") from None
        if not isinstance(value, dict):
            raise SerializationError(
                f"undecodable job payload: expected a JSON object, got {type(value).__name__}"
            )
        return value


class PlainEnvelopes:
    """``JSONSerializer``'s envelopes of jobs enqueued at ``enqueued_at`` with a name and args
    only (no option set: ``Job.envelope()`` is ``{"n": name, "a": args, "t": enqueued_at}``),
    the same bytes, each name's part and the time's encoded once and no dict built per job
    (``enqueue_many``). ``encode`` returns None where the general path must look: args orjson
    refuses (keys that are not str included: two may be one in JSON), or a "null" in them (a
    NaN, or not)."""

    def __init__(self, enqueued_at: float) -> None:
        self._tail = b',"t":' + orjson.dumps(enqueued_at) + b"}"
        self._heads: dict[str, bytes] = {}

    def encode(self, name: str, args: dict[str, Any]) -> bytes | None:
        head = self._heads.get(name)
        if head is None:
            head = self._heads[name] = b'{"n":' + orjson.dumps(name) + b',"a":'
        try:
            data = orjson.dumps(args)  # (keys that are not str: the general path checks them)
        except TypeError:
            return None
        if b"null" in data:
            return None
        return b"".join((head, data, self._tail))  # (a new buffer: orjson's is freed at once)


def dumps_json(value: Any, what: str) -> bytes:
    """``value`` as JSON bytes; SerializationError naming ``what`` (and where in it) for anything
    JSON cannot hold: other types, NaN or Infinity (which orjson writes as ``null``), dict keys
    that are one once made strings (``{1: "a", "1": "b"}``: one value would be lost), a value
    nested too deep or holding itself."""
    try:
        data = orjson.dumps(value)  # (str keys only: the common case, checked in one pass)
    except TypeError:
        data = _with_other_keys(value, what)  # keys of other types, or a type JSON cannot hold
    if b"null" in data:  # None, a string holding "null"... or a NaN: look closer (rare)
        where = non_finite(value, "")
        if where is not None:
            raise SerializationError(
                f"{what} is not JSON-serializable: {where} is not a finite number "
                "(JSON has no NaN or Infinity)"
            )
    # orjson writes into a 1 KiB buffer and shrinks it: kept by the thousand (a batch of jobs),
    # such buffers cost ~3 us each in the allocator; a copy frees the buffer at once (~0.1 us)
    return bytes(memoryview(data)) if len(data) < 1024 else data


def _with_other_keys(value: Any, what: str) -> bytes:
    """``value`` as JSON with its dict keys made strings (orjson refused it as it is): a key
    lost to another one (read back, the JSON is shorter) or a type JSON cannot hold is a
    SerializationError saying where."""
    try:
        data = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:  # (a type, an int past 64 bits, recursion or depth: orjson's)
        where = _problem(value)
        raise SerializationError(f"{what} is not JSON-serializable: {where or exc}") from None
    if len(orjson.dumps(orjson.loads(data))) != len(data):  # (keys made one: one value lost)
        where = _problem(value) or "two keys are one once made strings"
        raise SerializationError(f"{what} is not JSON-serializable: {where}")
    return data


def _problem(value: Any) -> str | None:
    """json_problem's answer, or None when the walk cannot finish (a value holding itself)."""
    try:
        return json_problem(value, "")
    except RecursionError:
        return None


def json_problem(value: Any, path: str) -> str | None:
    """What JSON cannot hold in ``value``, and where (``path``): the first NaN or infinite
    float, value of a type orjson refuses, or keys that collide once made strings; else None."""
    return _first(value, path, _json_problem_at)


def _json_problem_at(value: Any, path: str) -> str | None:
    """json_problem's answer for ``value`` itself (not the items nested in it)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return f"{path or 'the value'} is not a finite number (JSON has no NaN or Infinity)"
    if isinstance(value, dict):
        if any(type(k) is not str for k in value):
            clash = _clashing_key(value)
            if clash is not None:
                return f"{path or 'the value'} has {clash}"
        return None
    if isinstance(value, list | tuple):  # (its items: walked by _first)
        return None
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        kind = type(value).__name__
        return f"{path or 'the value'} is of type {kind}, which JSON cannot hold ({exc})"
    return None


def _first(value: Any, path: str, look: Callable[[Any, str], str | None]) -> str | None:
    """The first answer of ``look(item, its path)`` that is not None, over ``value`` and then
    the items nested in it (of dicts, lists and tuples), depth first; else None. (A plain
    value, whose look is None for every caller, is passed over without the call.)"""
    if value is None or type(value) in (str, int, bool):
        return None
    found = look(value, path)
    if found is not None:
        return found
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _first(item, f"{path}[{key!r}]" if path else str(key), look)
        if found is not None:
            return found
    return None


def _clashing_key(value: dict[Any, Any]) -> str | None:
    """Two keys of ``value`` that are the same once made strings (``1`` and ``"1"``), said;
    a key orjson refuses, said; else None."""
    seen: dict[str, Any] = {}
    for key in value:
        try:
            text = orjson.loads(orjson.dumps({key: 0}, option=orjson.OPT_NON_STR_KEYS)).popitem()[0]
        except TypeError as exc:
            return f"a key {key!r:.60} JSON cannot hold ({exc})"
        if text in seen:
            return f"keys {seen[text]!r:.60} and {key!r:.60}, which are one key in JSON"
        seen[text] = key
    return None


def non_finite(value: Any, path: str) -> str | None:
    """The path of the first NaN or infinite float in ``value``, else None."""
    return _first(value, path, _non_finite_at)


def _non_finite_at(value: Any, path: str) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path or "the value"
    return None
