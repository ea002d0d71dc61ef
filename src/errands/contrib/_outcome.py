"""What a middleware can tell about an attempt's outcome, mirroring settler.py's rules."""

from __future__ import annotations

from typing import Any

from ..errors import NonRetryableError
from ..job import Job

__all__ = ["failure_outcome", "is_failure_cancel", "worker_now"]


def _worker(job: Job) -> Any:
    return job._backend  # the Worker running the job (None when a handler is called directly)


def failure_outcome(job: Job, exc: BaseException) -> str:
    """``retried``, ``dead`` or ``dropped``: what the pool does with a job whose attempt raised
    ``exc`` (RetryLater excepted)."""
    jt = getattr(_worker(job), "job_types", {}).get(job.name)
    default = jt.max_fails if jt is not None else 4
    try:
        max_fails = int((job.retry or {}).get("max_fails", default))
    except (TypeError, ValueError):
        max_fails = default
    if not isinstance(exc, NonRetryableError) and job.fails + 1 < max_fails:
        return "retried"
    return "dropped" if jt is not None and jt.skip_dead else "dead"


def is_failure_cancel(job: Job) -> bool:
    """A CancelledError seen by a middleware is a failure (the job's timeout, or the handler's
    own) unless the job was cancelled on request or the pool is stopping (then it is requeued)."""
    worker = _worker(job)
    if worker is None:
        return False
    requested = job.id in getattr(worker, "_cancel_requests", {})
    return not requested and not getattr(worker, "_cancelling", False)


def worker_now(job: Job, default: float) -> float:
    """Now by the pool's clock (a FakeClock in tests), else ``default``."""
    clock = getattr(_worker(job), "clock", None)
    return float(clock.now()) if clock is not None else default
