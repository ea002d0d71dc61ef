"""``SyncClient``: the read side of the :class:`~errands.Client`, blocking, for sync code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from ..admin.client import Client
from ..admin.jobinfo import HistoryEntry, JobInfo, Page, PoolInfo, QueueInfo, WorkerInfo
from ..periodic.listing import ScheduleInfo
from ..store.keys import Keys
from .portal import Portal

__all__ = ["SyncClient"]

T = TypeVar("T")


class SyncClient:
    """Look up jobs and queues from sync code (a Django view, a management command).

    >>> client = SyncClient.from_url(os.environ["REDIS_URL"], namespace="myapp")
    >>> info = client.job(job_id)            # JobInfo, or None
    >>> client.result(job_id, timeout=10)    # the handler's return value

    Each method blocks on the async :class:`~errands.Client` method of the same name, run on an
    event loop in a daemon thread of its own (thread-safe; share one per process). Anything else
    of the Client runs with ``run``: ``client.run(lambda c: c.cancel(job_id))``.
    """

    def __init__(self, url: str, *, namespace: str = "errands", **options: Any) -> None:
        self.url = url
        self.keys = Keys(namespace)
        self._options = {"namespace": namespace, **options}
        # (its factory holds no reference to self: dropped without close(), self is collected at
        # once, and its portal then stops its thread: portal.py)
        self._portal: Portal[Client] = Portal(
            partial(Client.from_url, url, **self._options), "sync-client"
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SyncClient:
        return cls(url, **options)

    @property
    def namespace(self) -> str:
        return self.keys.namespace

    def close(self) -> None:
        self._portal.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, fn: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``fn(client)`` with the async Client and return its result."""
        return self._portal.run(fn)

    # -- the read side -----------------------------------------------------------------------
    def job(self, job_id: str) -> JobInfo | None:
        return self.run(lambda c: c.job(job_id))

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        return self.run(lambda c: c.result(job_id, timeout))

    def job_names(self) -> list[str]:
        return self.run(lambda c: c.job_names())

    def queues(self) -> list[QueueInfo]:
        return self.run(lambda c: c.queues())

    def queue_sizes(self) -> dict[str, dict[str, int]]:
        return self.run(lambda c: c.queue_sizes())

    def paused(self) -> set[str]:
        return self.run(lambda c: c.paused())

    def count_by_status(self) -> dict[str, int]:
        return self.run(lambda c: c.count_by_status())

    def dead_count(self) -> int:
        return self.run(lambda c: c.dead_count())

    def stats(self) -> dict[str, int]:
        return self.run(lambda c: c.stats())

    def worker_pools(self) -> list[PoolInfo]:
        return self.run(lambda c: c.worker_pools())

    def workers(self) -> list[WorkerInfo]:
        return self.run(lambda c: c.workers())

    def jobs_by_status(self, status: str, page: int = 1) -> Page[JobInfo]:
        return self.run(lambda c: c.jobs_by_status(status, page))

    def queued_jobs(self, job_name: str, page: int = 1) -> Page[JobInfo]:
        return self.run(lambda c: c.queued_jobs(job_name, page))

    def scheduled_jobs(self, page: int = 1) -> Page[JobInfo]:
        return self.run(lambda c: c.scheduled_jobs(page))

    def retry_jobs(self, page: int = 1) -> Page[JobInfo]:
        return self.run(lambda c: c.retry_jobs(page))

    def dead_jobs(self, page: int = 1) -> Page[JobInfo]:
        return self.run(lambda c: c.dead_jobs(page))

    def cancelled_jobs(self, page: int = 1) -> Page[JobInfo]:
        return self.run(lambda c: c.cancelled_jobs(page))

    def history(self, page: int = 1, job_name: str | None = None) -> Page[HistoryEntry]:
        return self.run(lambda c: c.history(page, job_name))

    def history_job(self, job_id: str) -> list[HistoryEntry]:
        return self.run(lambda c: c.history_job(job_id))

    def schedules(self) -> list[ScheduleInfo]:
        return self.run(lambda c: c.schedules())
