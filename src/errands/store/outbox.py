"""What the relays report into Redis (``Keys.outbox_relays``), and how the Client reads it: the
backlog, the lag (age of the oldest waiting row), and whether the relays are stuck."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import orjson

from .keys import Keys

__all__ = ["OutboxStatus", "RelayStatus", "read_status", "report", "withdraw"]

SILENT_AFTER = 15.0  # seconds without a report (they come every 2 s): the relay is gone
FORGET_AFTER = 3600.0  # seconds without a report: its entry is dropped
STALL_AFTER = 30.0  # seconds without a committed batch (or two polls): the relay is stuck


@dataclass(frozen=True)
class RelayStatus:
    """One relay's last report."""

    id: str
    host: str
    pid: int
    reported_at: float
    backlog: int | None  # rows waiting when it reported (None: it could not count them)
    oldest: float | None  # creation time of the oldest of them (unix seconds)
    relayed: int  # rows it relayed since it started
    last_batch_at: float | None  # its last committed batch (an empty one too)
    error: str | None  # its last error, None once a batch went through again
    skipped: int  # rows it cannot enqueue (left in the table, passed over)
    skip_error: str | None  # why, for one of them
    silent: bool  # no report for SILENT_AFTER seconds: stopped, killed, or cut off from Redis
    # silent, or no batch (since its start) for STALL_AFTER s, or for two polls if that is
    # longer while it reports no error (idle, waiting for rows)
    stalled: bool


@dataclass(frozen=True)
class OutboxStatus:
    """The outbox as the relays see it. ``backlog`` and ``lag`` come from the latest report
    that counted the rows (None when none could); ``stuck`` is True when every relay known is
    stalled (silent for 15 s, or without a committed batch for 30 s, or two polls if longer
    for one reporting no error) while rows wait or cannot be counted, or when a relay passes
    over rows it cannot enqueue. Relays silent for an hour are forgotten: with none known,
    ``relays`` is empty."""

    relays: list[RelayStatus]
    backlog: int | None
    lag: float | None  # seconds the oldest waiting row has waited
    stuck: bool


async def report(redis: Any, keys: Keys, relay_id: str, status: dict[str, Any], now: float) -> None:
    """Write one relay's status; drop the entries of relays silent for an hour (and those no
    relay wrote: an ``at`` that is no number, which raised here and stopped every report)."""
    entry = {"host": socket.gethostname(), "pid": os.getpid(), "at": now, **status}
    stale = [
        field
        for field, value in (await redis.hgetall(keys.outbox_relays)).items()
        if (_number(_load(value).get("at")) or 0.0) < now - FORGET_AFTER
    ]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.outbox_relays, relay_id, orjson.dumps(entry))
        if stale:
            pipe.hdel(keys.outbox_relays, *stale)
        pipe.pexpire(keys.outbox_relays, int(FORGET_AFTER * 1000))
        await pipe.execute()


async def withdraw(redis: Any, keys: Keys, relay_id: str) -> None:
    """A relay that stops drops its entry (one that dies goes silent instead)."""
    await redis.hdel(keys.outbox_relays, relay_id)


async def read_status(redis: Any, keys: Keys, now: float) -> OutboxStatus:
    relays = []
    for field, value in (await redis.hgetall(keys.outbox_relays)).items():
        relay = _relay(field, _load(value), now)
        if relay is not None:
            relays.append(relay)
    relays.sort(key=lambda r: r.reported_at, reverse=True)
    counted = [r for r in relays if r.backlog is not None]
    backlog, lag = None, None
    if counted:
        backlog = counted[0].backlog
        oldest = counted[0].oldest
        lag = max(0.0, now - oldest) if oldest is not None else 0.0
    # rows wait (or cannot be counted) and no relay got a batch through lately; or a relay
    # passes over rows it cannot enqueue (they will not move without someone)
    stalled = bool(relays) and all(r.stalled for r in relays) and backlog != 0
    stuck = stalled or any(r.skipped and not r.silent for r in relays)
    return OutboxStatus(relays, backlog, lag, stuck)


def _relay(field: bytes | str, entry: dict[str, Any], now: float) -> RelayStatus | None:
    """One relay's status from its entry (None once forgotten). A field of another type than a
    relay writes (a corrupt entry) reads as missing."""
    at = _number(entry.get("at")) or 0.0
    if at < now - FORGET_AFTER:
        return None
    silent = now - at > max(SILENT_AFTER, 3 * (_number(entry.get("every")) or 0.0))
    last = _number(entry.get("last_batch_at"))
    since = last if last is not None else _number(entry.get("started_at")) or at
    error, skip_error = entry.get("error"), entry.get("skip_error")
    # an idle relay waiting longer than STALL_AFTER between polls (woken by NOTIFY) commits its
    # empty batch once a poll: stalled after two polls without one. One reporting an error (its
    # last batch failed, or it could not count the rows) is not waiting for rows but failing:
    # stalled after STALL_AFTER whatever its poll
    stall = (
        STALL_AFTER
        if error is not None
        else max(STALL_AFTER, 2 * (_number(entry.get("poll")) or 0.0))
    )
    backlog = entry.get("backlog")
    return RelayStatus(
        id=field.decode(errors="replace") if isinstance(field, bytes) else str(field),
        host=str(entry.get("host", "")),
        pid=int(_number(entry.get("pid")) or 0),
        reported_at=at,
        backlog=backlog if type(backlog) is int else None,
        oldest=_number(entry.get("oldest")),
        relayed=int(_number(entry.get("relayed")) or 0),
        last_batch_at=last,
        error=None if error is None else str(error),
        skipped=int(_number(entry.get("skipped")) or 0),
        skip_error=None if skip_error is None else str(skip_error),
        silent=silent,
        stalled=silent or now - since > stall,
    )


def _number(value: Any) -> float | None:
    """A number of an entry, None when missing or of another type."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _load(value: bytes) -> dict[str, Any]:
    try:
        entry = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return entry if isinstance(entry, dict) else {}
