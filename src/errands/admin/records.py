"""The records of ended jobs and attempts (``done:<id>``, ``histdata``) in both layouts.

A record written by ``ack.lua`` is compact: ``{"j": envelope, "r": result, "b": began ms, "e":
ended ms, "a": attempt}``, its id in its key or field, its status ``finished``; and a job's
result record only names its attempt (``"1"``) while the history holds that very record. The
other scripts, and versions before issue 15, write ``{"id", "status", "job", "result", "error",
"started", "finished", "attempt"}``. Readers go through :func:`record_of` and :func:`read_done`.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..store.keys import Keys
from ..store.stored import stored_text

__all__ = ["read_done", "record_of"]

_COMPACT = {"j": "job", "r": "result", "b": "started", "e": "finished", "a": "attempt"}


def record_of(raw: bytes | str | None, job_id: str) -> dict[str, Any] | None:
    """The record as a dict in the long layout (``id``, ``status``, ``job``, ...), or None when
    it is missing, not JSON, or not an object."""
    if raw is None:
        return None
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rec, dict):
        return None
    if "status" in rec:
        return rec
    out: dict[str, Any] = {"id": job_id, "status": "finished"}
    out |= {long: rec[short] for short, long in _COMPACT.items() if short in rec}
    return out


def _text(value: bytes | str) -> str:
    return stored_text(value)  # (a corrupt record may not be UTF-8)


async def read_done(redis: Any, keys: Keys, job_id: str) -> dict[str, Any] | None:
    """The result record of an ended job (None when there is none, or it expired). One that
    names its attempt is read from the history; the history's trim moves the record into the
    result record before dropping it, so a second look finds it there."""
    for _ in range(2):
        raw = await redis.get(keys.done(job_id))
        if raw is None or not _text(raw).isdigit():
            return record_of(raw, job_id)
        rec = record_of(await redis.hget(keys.history_data, f"{job_id}:{_text(raw)}"), job_id)
        if rec is not None:
            return rec
    return None
