"""Encoding of job envelopes. JSON (orjson) by default; pickle never."""

from __future__ import annotations

import math
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
    refuses, or a "null" in them (a NaN, or not)."""

    def __init__(self, enqueued_at: float) -> None:
        self._tail = b',"t":' + orjson.dumps(enqueued_at) + b"}"
        self._heads: dict[str, bytes] = {}

    def encode(self, name: str, args: dict[str, Any]) -> bytes | None:
        head = self._heads.get(name)
        if head is None:
            head = self._heads[name] = b'{"n":' + orjson.dumps(name) + b',"a":'
        try:
            data = orjson.dumps(args, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return None
        if b"null" in data:
            return None
        return b"".join((head, data, self._tail))  # (a new buffer: orjson's is freed at once)


def dumps_json(value: Any, what: str) -> bytes:
    """``value`` as JSON bytes; SerializationError naming ``what`` for anything JSON cannot
    hold: other types, and NaN or Infinity (which orjson writes as ``null``)."""
    try:
        data = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise SerializationError(f"{what} is not JSON-serializable: {exc}") from None
    if b"null" in data:  # None, a string holding "null"... or a NaN: look closer (rare)
        where = _non_finite(value, "")
        if where is not None:
            raise SerializationError(
                f"{what} is not JSON-serializable: {where} is not a finite number "
                "(JSON has no NaN or Infinity)"
            )
    # orjson writes into a 1 KiB buffer and shrinks it: kept by the thousand (a batch of jobs),
    # such buffers cost ~3 us each in the allocator; a copy frees the buffer at once (~0.1 us)
    return bytes(memoryview(data)) if len(data) < 1024 else data


def _non_finite(value: Any, path: str) -> str | None:
    """The path of the first NaN or infinite float in ``value``, else None."""
    if isinstance(value, float):
        return (path or "the value") if not math.isfinite(value) else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{path}[{key!r}]" if path else str(key))
        if found is not None:
            return found
    return None
