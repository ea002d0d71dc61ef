"""Batch handlers: many jobs of one name, one call.

>>> @pool.batch_job("index_doc", max_size=100, max_wait=timedelta(seconds=2))
... async def index_docs(jobs: list[Job]) -> BatchOutcome:
...     failed = await search.bulk_index([j.args for j in jobs])
...     return BatchOutcome(failed=failed)        # {job id: exception}: only those are retried

Jobs stay individual (own id, attempts, retries, dead entry). ``BatchRunner`` is what the pool
registers for the name (the worker's batching, ``worker/batching.py``, fetches and runs the
batches); ``batch_due`` is the rule deciding when a batch starts. Pure: no I/O here.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import RegistrationError
from ..job import Job

__all__ = ["BatchOutcome", "BatchRunner", "batch_due"]


@dataclass
class BatchOutcome:
    """What a batch handler returns: ``failed`` maps the id of each job that failed to its
    exception (those are retried, or buried, as failed jobs are); every other job of the batch
    succeeded, with its entry of ``results`` (JSON) as its result, or None."""

    failed: Mapping[str, BaseException] = field(default_factory=dict)
    results: Mapping[str, Any] = field(default_factory=dict)


BatchHandler = Callable[[list[Job]], Awaitable[BatchOutcome | None]]


class BatchRunner:
    """The handler registered for a batch job name. The worker recognises it and runs the
    name's jobs in batches through ``fn``; called with one job, it runs a batch of one."""

    def __init__(self, name: str, fn: BatchHandler, max_size: int, max_wait: float) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise RegistrationError(f"{name}: a batch handler is an async def (jobs: list[Job])")
        if len(inspect.signature(fn).parameters) != 1:
            raise RegistrationError(f"{name}: a batch handler takes one parameter, the jobs")
        if not 1 <= max_size <= 10_000:
            raise RegistrationError(f"{name}: max_size must be 1..10000, got {max_size}")
        if max_wait < 0:
            raise RegistrationError(f"{name}: max_wait must be >= 0")
        self.name = name
        self.fn = fn
        self.max_size = max_size
        self.max_wait = max_wait
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__doc__ = fn.__doc__

    def __repr__(self) -> str:
        return f"<batch job {self.name} {self.fn!r}>"

    async def __call__(self, job: Job) -> Any:
        outcome = await self.fn([job])
        if outcome is not None and job.id in outcome.failed:
            raise outcome.failed[job.id]
        return outcome.results.get(job.id) if outcome is not None else None


def batch_due(waiting: int, oldest_waited: float | None, max_size: int, max_wait: float) -> float:
    """Seconds until a batch should start (0: now): once ``max_size`` jobs wait, or the oldest
    has waited ``max_wait``. ``oldest_waited`` is None when nothing waits: then ``inf``."""
    if waiting <= 0 or oldest_waited is None:
        return float("inf")
    if waiting >= max_size:
        return 0.0
    return max(0.0, max_wait - oldest_waited)
