"""A middleware that catches ``Exception`` (logs an error and carries on, as many do) must not
swallow an iterable job's stop at a checkpoint: the stop is no error, and a middleware that took
it for one and returned would have the worker acknowledge the job as finished half-way, its
remaining items never run. ``Suspend`` derives from ``BaseException`` (as asyncio's
``CancelledError``), so ``except Exception`` lets it through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
from redis.asyncio import Redis

from errands import Enqueuer, Job, Middleware, WorkerPool
from errands.longwork.iterable import Suspend
from errands.middleware import Next
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants


class Forgiving(Middleware):
    """Logs a failed job and reports it done: the shape of many error-reporting middlewares."""

    def __init__(self) -> None:
        self.swallowed: list[BaseException] = []

    async def process(self, job: Job, next: Next) -> Any:
        try:
            return await next()
        except Exception as exc:
            self.swallowed.append(exc)
            return None


def test_suspend_is_no_exception() -> None:
    assert not issubclass(Suspend, Exception)
    assert issubclass(Suspend, BaseException)


async def test_a_middleware_catching_exception_does_not_swallow_a_stop(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=1, shutdown_grace=5.0)
    forgiving = Forgiving()
    pool.middleware(forgiving)
    started = asyncio.Event()

    @pool.iterable_job("walk", checkpoint_every=timedelta(hours=1))
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        i = cursor or 0
        while True:
            i += 1
            if i == 3:
                started.set()
            await asyncio.sleep(0.01)
            yield i

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("walk")
        assert job is not None
        await pool.start()
        await asyncio.wait_for(started.wait(), 10)
        await pool.stop()
    assert forgiving.swallowed == []
    # back at the head of its queue with its checkpoint, not acknowledged as done
    assert await redis.zscore(keys.queue("walk"), job.id) is not None
    assert not await redis.exists(keys.done(job.id))
    saved = orjson.loads(await redis.hget(keys.checkpoints, job.id))
    assert saved["done"] >= 3
    await assert_invariants(redis, namespace)
