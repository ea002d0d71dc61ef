"""Encoding of job envelopes. JSON (orjson) by default; pickle never."""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from .errors import ErrandsError

__all__ = ["JSONSerializer", "SerializationError", "Serializer"]


class SerializationError(ErrandsError, ValueError):
    """A job could not be encoded or decoded."""


class Serializer(Protocol):
    """Turns a job envelope (a dict of JSON-like values) into bytes and back."""

    def dumps(self, value: dict[str, Any]) -> bytes: ...

    def loads(self, data: bytes) -> dict[str, Any]: ...


class JSONSerializer:
    """Fast JSON through orjson. Rejects what JSON cannot hold with a clear message."""

    def dumps(self, value: dict[str, Any]) -> bytes:
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:
            raise SerializationError(f"job data is not JSON-serializable: {exc}") from None

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
