"""What ``enqueue_on_commit`` (SQLAlchemy and Django) does at the call: the job built and
encoded as its enqueuer will, so that a bad one raises in the transaction, where the caller can
handle it, and never at the commit, where it would take the transaction's other jobs with it."""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..building import build_job
from ..enqueuer import Enqueuer
from ..serialization import dumps_json
from ..sync.enqueuer import SyncEnqueuer

__all__ = ["OPTIONS", "checked_item"]

OPTIONS = ("delay", "at", "priority", "retry", "meta", "job_id", "timeout", "partition")
Item = tuple[str, dict[str, Any], dict[str, Any]]


def checked_item(enqueuer: Any, name: str, args: Any, options: dict[str, Any]) -> Item:
    """The ``enqueue_many`` item of the job, checked now (no I/O): name, job id, args and
    options as ``enqueue`` checks them, and the args encoded by the enqueuer's serializer
    within its ``max_payload``. ``options`` gets a random ``job_id`` if it has none. The
    item holds the args as checked (a copy: later changes to the caller's dict do not count);
    a ``delay`` still counts from the enqueue, at the commit."""
    unknown = [key for key in options if key not in OPTIONS]
    if unknown:
        raise TypeError(
            f"enqueue_on_commit() got unknown option(s) {', '.join(map(repr, unknown))}: "
            f"it takes {', '.join(OPTIONS)}"
        )
    options.setdefault("job_id", uuid.uuid4().hex)
    local = enqueuer._checker if isinstance(enqueuer, SyncEnqueuer) else enqueuer
    if isinstance(local, Enqueuer):
        job = local._build(name, args, **options)
        local._encode(job)  # (the serializer and max_payload: raises what enqueue would)
        job_args = job.args
    else:  # another object with enqueue_many (a test double): the options, the args as JSON
        job_args = build_job(name, args, time.time(), **options).args
        dumps_json(job_args, f"the args of job {name!r}")
    return (name, job_args, options)
