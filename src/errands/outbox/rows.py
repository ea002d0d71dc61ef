"""What an outbox row holds, stack-independent: built when the row is written, turned back into
an enqueue when it is relayed. Pure: no I/O."""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ..backoff import RetryOptions, backoff_from_dict
from ..building import build_job
from ..enqueuer import EnqueueItem
from ..serialization import dumps_json

__all__ = ["OutboxRow", "enqueue_item", "new_row", "skip_windows"]

TABLE = "errands_outbox"
CHANNEL = "errands_outbox"  # the PostgreSQL NOTIFY channel the table's trigger signals


@dataclass(frozen=True)
class OutboxRow:
    """One row of ``errands_outbox`` (``id`` is set by the database)."""

    job_id: str
    name: str
    payload: str
    created_at: float
    id: int = 0


def new_row(
    name: str,
    args: Mapping[str, Any] | None = None,
    *,
    now: float | None = None,
    **options: Any,
) -> OutboxRow:
    """The row for an enqueue: ``options`` as for ``Enqueuer.enqueue`` (``delay``, ``at``,
    ``priority``, ``retry``, ``meta``, ``job_id``, ``timeout``, ``partition``), checked as it
    checks them, now: a bad call raises in the transaction, not in the relay. A ``delay`` counts
    from now."""
    now = time.time() if now is None else now
    job = build_job(name, args, now, **options)
    body: dict[str, Any] = {"a": job.args}
    if job.priority:
        body["p"] = job.priority
    if job.retry is not None:
        body["r"] = job.retry
    if job.meta:
        body["m"] = job.meta
    if job.run_at is not None:
        body["d"] = job.run_at
    if job.timeout is not None:
        body["t"] = job.timeout
    if job.partition is not None:
        body["k"] = job.partition
    payload = dumps_json(body, f"the args of job {name!r}").decode()
    return OutboxRow(job.id, name, payload, now)


def enqueue_item(row: OutboxRow) -> EnqueueItem:
    """The ``enqueue_many`` item of a row: the row's job id makes a second relay a no-op. A
    payload of the wrong shape (not what ``new_row`` writes) raises ValueError naming the field."""
    body = orjson.loads(row.payload)
    if type(body) is not dict or "a" not in body:
        raise ValueError(f"payload must be a JSON object with args 'a', got {_kind(body)}")
    options: dict[str, Any] = {"job_id": row.job_id, "priority": body.get("p", 0)}
    if "r" in body:
        options["retry"] = _retry(body["r"])
    if "m" in body:
        options["meta"] = body["m"]
    if "d" in body:
        options["at"] = _due(body["d"])
    if "t" in body:
        options["timeout"] = body["t"]
    if "k" in body:
        options["partition"] = body["k"]
    return (row.name, body["a"], options)


def skip_windows(
    skip: Collection[int], chunk: int
) -> Iterator[tuple[int | None, int | None, list[int]]]:
    """The id ranges a claim passing over the ``skip`` ids walks, oldest first, each with at
    most ``chunk`` of them: ``(after, upto, ids)``, the rows with ``after < id <= upto``
    (``None``: no bound) of which ``ids`` are the skipped ones. So no statement of a claim
    carries more than ``chunk`` ids, whatever the number set aside (a database takes at most
    32767 or 65535 bind parameters in one)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    ids = sorted(skip)
    after: int | None = None
    for start in range(0, max(len(ids), 1), chunk):
        part = ids[start : start + chunk]
        upto = part[-1] if start + chunk < len(ids) else None
        yield after, upto, part
        after = upto


def _retry(stored: Any) -> RetryOptions:
    if type(stored) is not dict:
        raise ValueError(f"payload field 'r' (retry) must be an object, got {_kind(stored)}")
    backoff = stored.get("backoff")
    if backoff is not None and type(backoff) is not dict:
        raise ValueError(f"payload field 'r.backoff' must be an object, got {_kind(backoff)}")
    max_fails = stored.get("max_fails")
    if type(max_fails) is float and max_fails.is_integer():  # (4.0: an older errands wrote it)
        max_fails = int(max_fails)
    return RetryOptions(
        max_fails=max_fails,
        backoff=backoff_from_dict(backoff) if backoff else None,  # type: ignore[arg-type]
    )


def _due(stored: Any) -> datetime:
    """The due time of field 'd' (unix seconds)."""
    if type(stored) not in (int, float) or not math.isfinite(stored):
        raise ValueError(f"payload field 'd' (due) must be unix seconds, got {_kind(stored)}")
    try:
        return datetime.fromtimestamp(stored, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"payload field 'd' (due) is out of range: {stored!r}") from None


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
