"""What an outbox row holds, stack-independent: built when the row is written, turned back into
an enqueue when it is relayed. Pure: no I/O."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ..backoff import RetryOptions, backoff_from_dict
from ..clock import due_time
from ..enqueuer import EnqueueItem
from ..handlers import check_priority
from ..serialization import dumps_json
from ..store.keys import check_job_id, check_job_name

__all__ = ["OutboxRow", "enqueue_item", "new_row"]

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
    delay: float | timedelta | None = None,
    at: datetime | None = None,
    priority: int = 0,
    retry: RetryOptions | None = None,
    meta: Mapping[str, Any] | None = None,
    job_id: str | None = None,
    now: float | None = None,
) -> OutboxRow:
    """The row for an enqueue: options as for ``Enqueuer.enqueue``; checked now, so a bad call
    raises in the transaction, not in the relay. A ``delay`` counts from now."""
    check_job_name(name)
    job_id = job_id if job_id is not None else uuid.uuid4().hex
    check_job_id(job_id)
    if args is not None and not isinstance(args, Mapping):
        raise TypeError(f"args of job {name!r} must be a dict, got {type(args).__name__}")
    now = time.time() if now is None else now
    body: dict[str, Any] = {"a": dict(args or {})}
    if priority:
        body["p"] = check_priority(priority)
    if retry is not None:
        body["r"] = retry.to_dict()
    if meta:
        body["m"] = dict(meta)
    due = due_time(now, delay, at)
    if due is not None:
        body["d"] = due
    payload = dumps_json(body, f"the args of job {name!r}").decode()
    return OutboxRow(job_id, name, payload, now)


def enqueue_item(row: OutboxRow) -> EnqueueItem:
    """The ``enqueue_many`` item of a row: the row's job id makes a second relay a no-op."""
    body = orjson.loads(row.payload)
    options: dict[str, Any] = {"job_id": row.job_id, "priority": body.get("p", 0)}
    if "r" in body:
        stored = body["r"]
        backoff = stored.get("backoff")
        options["retry"] = RetryOptions(
            max_fails=stored.get("max_fails"),
            backoff=backoff_from_dict(backoff) if backoff else None,  # type: ignore[arg-type]
        )
    if "m" in body:
        options["meta"] = body["m"]
    if "d" in body:
        options["at"] = datetime.fromtimestamp(body["d"], UTC)
    return (row.name, body["a"], options)
