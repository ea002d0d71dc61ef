"""``SyncEnqueuer``: the Enqueuer for sync code (Django, Flask, scripts, management commands)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from ..backoff import RetryOptions
from ..dedup import Dedup
from ..enqueuer import UNIQUE_TTL, EnqueueItem, Enqueuer
from ..job import Job
from ..store.keys import Keys
from .portal import Portal

__all__ = ["SyncEnqueuer"]


class SyncEnqueuer:
    """Blocking ``enqueue`` calls, for code without an event loop (and safe in one's thread).

    >>> enqueuer = SyncEnqueuer.from_url(os.environ["REDIS_URL"], namespace="myapp")
    >>> job = enqueuer.enqueue("send_email", {"address": "a@example.com"})

    It runs an async :class:`~errands.Enqueuer` (made with the same options: ``middleware``,
    ``serializer``, ``strict``...) on an event loop in a daemon thread of its own, so jobs go
    through the same middleware and serialization as from async code. Share one per process:
    it is thread-safe, and all threads share its connection pool.
    """

    def __init__(self, url: str, *, namespace: str = "errands", **options: Any) -> None:
        self.url = url
        self.keys = Keys(namespace)
        self._options = {"namespace": namespace, **options}
        # bad options raise here, not at first use; it also checks jobs without I/O (its
        # _build and _encode: contrib's enqueue_on_commit), and never connects
        self._checker = Enqueuer.from_url(url, **self._options)
        # (its factory holds no reference to self: dropped without close(), self is collected at
        # once, and its portal then stops its thread: portal.py)
        self._portal: Portal[Enqueuer] = Portal(
            partial(Enqueuer.from_url, url, **self._options), "sync-enqueuer"
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SyncEnqueuer:
        """The same as the constructor (named like ``Enqueuer.from_url``)."""
        return cls(url, **options)

    @property
    def namespace(self) -> str:
        return self.keys.namespace

    def close(self) -> None:
        """Close the connections and stop the thread (a later call opens them again)."""
        self._portal.close()

    def __enter__(self) -> SyncEnqueuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _bind(self, job: Job | None) -> Job | None:
        if job is not None:
            job._backend = _AwaitableResults(self)
        return job

    def enqueue(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int = 0,
        retry: RetryOptions | None = None,
        meta: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        dedup: Dedup | None = None,
        timeout: float | timedelta | None = None,
        partition: str | None = None,
    ) -> Job | None:
        """Store a job and return it once Redis has it (None if a middleware dropped it); the
        options are those of :meth:`errands.Enqueuer.enqueue`."""
        options: dict[str, Any] = {"delay": delay, "at": at, "priority": priority}
        options |= {"retry": retry, "meta": meta, "job_id": job_id, "dedup": dedup}
        options |= {"timeout": timeout, "partition": partition}
        return self._bind(self._portal.run(lambda e: e.enqueue(name, args, **options)))

    def enqueue_many(self, items: Iterable[EnqueueItem]) -> list[Job]:
        """Store many jobs, one round trip per 5,000 jobs or 16 MiB (see
        :meth:`errands.Enqueuer.enqueue_many`)."""
        batch = list(items)
        jobs = self._portal.run(lambda e: e.enqueue_many(batch))
        for job in jobs:
            self._bind(job)
        return jobs

    def enqueue_unique(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        key: Any = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int = 0,
        retry: RetryOptions | None = None,
        meta: Mapping[str, Any] | None = None,
        ttl: float = UNIQUE_TTL,
        job_id: str | None = None,
        partition: str | None = None,
    ) -> Job | None:
        """Enqueue unless the same job is already waiting (see
        :meth:`errands.Enqueuer.enqueue_unique`); None then."""
        options: dict[str, Any] = {"key": key, "delay": delay, "at": at, "priority": priority}
        options |= {"retry": retry, "meta": meta, "ttl": ttl}
        options |= {"job_id": job_id, "partition": partition}
        return self._bind(self._portal.run(lambda e: e.enqueue_unique(name, args, **options)))

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Block until the job's result (see :meth:`errands.Enqueuer.result`)."""
        return self._portal.run(lambda e: e.result(job_id, timeout))


class _AwaitableResults:
    """What a Job enqueued by a SyncEnqueuer is bound to: ``await job.result()`` works in any
    event loop (the wait runs on the SyncEnqueuer's loop; cancelling the awaiting task stops it
    there, and no thread waits meanwhile)."""

    def __init__(self, enqueuer: SyncEnqueuer) -> None:
        self._enqueuer = enqueuer

    async def result(self, job_id: str, timeout: float | None = None) -> Any:
        return await self._enqueuer._portal.run_async(lambda e: e.result(job_id, timeout))
