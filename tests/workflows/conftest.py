"""A pool and an enqueuer on one namespace, with handlers that record what ran."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, NonRetryableError, WorkerPool
from errands.store.keys import Keys


class Env:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.namespace = namespace
        self.keys = Keys(namespace)
        self.pool = WorkerPool(redis, namespace=namespace, concurrency=8)
        self.enqueuer = Enqueuer(redis, namespace=namespace)
        self.ran: list[tuple[str, dict[str, Any]]] = []  # (job name, args)
        self.deps: dict[str, dict[str, Any]] = {}  # job id -> dependency_results()
        pool = self.pool

        @pool.job("work")
        async def work(job: Job) -> Any:
            self.ran.append((job.name, job.args))
            if job.args.get("fail"):
                raise NonRetryableError("boom")
            return job.args.get("value", job.workflow_node)

        @pool.job("merge")
        async def merge(job: Job) -> Any:
            self.ran.append((job.name, job.args))
            self.deps[job.id] = await job.dependency_results()
            return len(self.deps[job.id])

        @pool.job("notify")
        async def notify(job: Job) -> None:
            self.ran.append((job.name, job.args))
            self.deps[job.id] = await job.dependency_results()

    def names(self) -> list[str]:
        return [name for name, _args in self.ran]


@pytest.fixture
async def env(redis: Redis, namespace: str) -> AsyncIterator[Env]:
    e = Env(redis, namespace)
    yield e
    await e.pool.stop()
