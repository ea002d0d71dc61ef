"""Batch handlers: many jobs of one name, one call.

>>> @pool.batch_job("index_doc", max_size=100, max_wait=timedelta(seconds=2))
... async def index_docs(jobs: list[Job]) -> BatchOutcome:
...     failed = await search.bulk_index([j.args for j in jobs])
...     return BatchOutcome(failed=failed)        # {job id: exception}: only those are retried

Jobs stay individual (own id, attempts, retries, dead entry). ``BatchRunner`` is what the pool
registers for the name (the worker's batching, ``worker/batching.py``, fetches and runs the
batches); ``batch_due`` is the rule deciding when a batch starts; ``read_outcome`` checks what
a handler returned. Pure: no I/O here.
"""

from __future__ import annotations

import inspect
import reprlib
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..checks import seconds, whole
from ..errors import BatchJobError, RegistrationError
from ..job import Job

__all__ = ["BatchOutcome", "BatchRunner", "batch_due", "read_outcome"]


@dataclass
class BatchOutcome:
    """What a batch handler returns: ``failed`` maps the id of each job that failed to its
    exception (those are retried, or buried, as failed jobs are; a ``RetryLater`` snoozes its
    job, no failure counted; a string fails its job with a ``BatchJobError`` of that message;
    an id in ``failed`` is a failure whatever its value, None too: a ``TypeError`` naming it);
    every other job of the batch succeeded, with its entry of ``results`` (JSON) as its
    result, or None. Both map ids of the batch's jobs only: anything else fails the batch."""

    failed: Mapping[str, BaseException] = field(default_factory=dict)
    results: Mapping[str, Any] = field(default_factory=dict)


BatchHandler = Callable[[list[Job]], Awaitable[BatchOutcome | None]]


class BatchRunner:
    """The handler registered for a batch job name. The worker recognises it and runs the
    name's jobs in batches through ``fn``; called with one job, it runs a batch of one."""

    def __init__(
        self, name: str, fn: BatchHandler, max_size: int, max_wait: float | timedelta
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise RegistrationError(f"{name}: a batch handler is an async def (jobs: list[Job])")
        if len(inspect.signature(fn).parameters) != 1:
            raise RegistrationError(f"{name}: a batch handler takes one parameter, the jobs")
        # (a float or bool count broke every fetch; a nan max_wait never started a batch)
        error = RegistrationError
        max_size = whole(f"{name}: max_size", max_size, least=1, most=10_000, error=error)
        max_wait = seconds(f"{name}: max_wait", max_wait, error=error)
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
        failed, results = read_outcome(await self.fn([job]), {job.id})
        if job.id in failed:
            raise failed[job.id]
        return results.get(job.id)


def read_outcome(
    outcome: object, ids: Collection[str]
) -> tuple[dict[str, BaseException], dict[str, Any]]:
    """What a batch handler of the jobs ``ids`` returned, checked: (failed, results), each a dict
    of some of ``ids``. A failure that is no exception becomes one: a string a BatchJobError
    of that message, anything else a TypeError naming it. Raises TypeError for an outcome
    that is not a BatchOutcome or None, or whose ``failed`` or ``results`` is no mapping, and
    ValueError when either names an id not of the batch (keyed by something else than the
    job ids, it would fail or give results to no job: the failures would pass for successes)."""
    if outcome is None:
        return {}, {}
    if not isinstance(outcome, BatchOutcome):
        raise TypeError(f"a batch handler returns a BatchOutcome or None, not {outcome!r}")
    failed = _of_batch(outcome.failed, "failed", ids)
    results = _of_batch(outcome.results, "results", ids)
    return {i: _exception(i, value) for i, value in failed.items()}, results


def _of_batch(value: object, what: str, ids: Collection[str]) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        kind = type(value).__name__
        raise TypeError(f"BatchOutcome.{what} is a {kind}, not a mapping of job ids")
    got = dict(value)
    stray = [key for key in got if key not in ids]
    if stray:
        more = f" (and {len(stray) - 5} more)" if len(stray) > 5 else ""
        raise ValueError(f"BatchOutcome.{what} names ids not of its batch: {stray[:5]!r}{more}")
    return got


def _exception(job_id: str, value: object) -> BaseException:
    if isinstance(value, BaseException):
        return value
    if isinstance(value, str):
        return BatchJobError(value)
    return TypeError(f"BatchOutcome.failed[{job_id!r}] is {reprlib.repr(value)}, not an exception")


def batch_due(waiting: int, oldest_waited: float | None, max_size: int, max_wait: float) -> float:
    """Seconds until a batch should start (0: now): once ``max_size`` jobs wait, or the oldest
    has waited ``max_wait``. ``oldest_waited`` is None when nothing waits: then ``inf``."""
    if waiting <= 0 or oldest_waited is None:
        return float("inf")
    if waiting >= max_size:
        return 0.0
    return max(0.0, max_wait - oldest_waited)
