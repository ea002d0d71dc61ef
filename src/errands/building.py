"""A job built from an enqueue call's arguments, every option checked: what ``Enqueuer.enqueue``
stores, and what an outbox row (written now, enqueued later by the relay) holds. Pure: no I/O."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .backoff import RetryOptions
from .clock import due_time, positive_seconds
from .handlers import check_priority
from .job import Job
from .limits import check_partition
from .store.keys import check_job_id, check_job_name

__all__ = ["build_job"]


def build_job(
    name: str,
    args: Mapping[str, Any] | None,
    now: float,
    new_id: str | None = None,
    *,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
    priority: int = 0,
    retry: RetryOptions | None = None,
    meta: Mapping[str, Any] | None = None,
    job_id: str | None = None,
    timeout: float | timedelta | None = None,
    partition: str | None = None,
) -> Job:
    """The job an ``enqueue(name, args, **options)`` at ``now`` stores, every option checked
    (also for an outbox row, written now and enqueued later). Pure: no I/O. ``new_id`` is the id
    of a job given no ``job_id`` (a random one by default)."""
    check_job_name(name)
    if job_id is not None:
        check_job_id(job_id)
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise TypeError(f"args of job {name!r} must be a dict, got {type(args).__name__}")
    run_at = due_time(now, delay, at) if delay is not None or at is not None else None
    return Job(
        name,
        dict(args),
        id=job_id if job_id is not None else new_id or os.urandom(16).hex(),
        enqueued_at=now,
        priority=check_priority(priority),
        retry=retry.to_dict() if retry else None,
        meta=dict(meta) if meta else None,
        run_at=run_at if run_at is not None and run_at > now else None,
        timeout=positive_seconds(timeout, "timeout"),
        partition=check_partition(partition) if partition is not None else None,
    )
