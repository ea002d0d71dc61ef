"""An iterable job under limits (docs/limits.md): a name with a ``Rate`` has fetch tokens of
another form ("<n>@<ms>", lua/fetch.lua), which the checkpoint's attempt fence must match; a
stop puts the job back at the head of its queue, and of its partition's: the next pool resumes
it before the job of its partition that waited behind it (``Concurrency(1, per_partition)``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

from redis.asyncio import Redis

from errands import Concurrency, Enqueuer, Job, Rate, WorkerPool
from errands.store.keys import Keys
from tests.longwork.test_iterable import _true, make_pool
from tests.support.invariants import assert_invariants
from tests.support.procs import eventually

LIMITS = [Rate(1000, per=timedelta(minutes=1)), Concurrency(1, per_partition=True)]


async def test_a_rated_partitioned_iterable_job_stops_and_resumes_first(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    seen: list[tuple[str, str, int]] = []  # (pool, job id, item)
    in_item, release = asyncio.Event(), asyncio.Event()

    def register(pool: WorkerPool, tag: str) -> None:
        @pool.iterable_job("walk", checkpoint_every=0, limits=LIMITS)
        async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
            for i in range((cursor or 0) + 1, 7):
                if (tag, job.id, i) == ("first", "a", 4):
                    in_item.set()
                    await release.wait()  # the stop comes in the middle of item 4
                seen.append((tag, job.id, i))
                yield i

    first = make_pool(redis_url, namespace, concurrency=1)
    register(first, "first")
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        for job_id in ("a", "b"):  # b waits for a's partition slot
            await enqueuer.enqueue("walk", job_id=job_id, partition="p")
        await first.start()
        await asyncio.wait_for(in_item.wait(), 10)
        stopping = asyncio.ensure_future(first.stop())
        await eventually(lambda: _true(first.worker is None or first.worker.stopping), 5, "stop")
        release.set()
        await stopping
        assert await redis.hget(keys.checkpoints, "a") is not None
        second = make_pool(redis_url, namespace, concurrency=1)
        register(second, "second")
        async with second:
            await second.drain(timeout=10)
    assert seen[:4] == [("first", "a", i) for i in range(1, 5)], seen
    # resumed after its checkpoint, before b (its partition's head), each item once
    assert seen[4:] == [("second", "a", 5), ("second", "a", 6)] + [
        ("second", "b", i) for i in range(1, 7)
    ], seen
    stats = await redis.hgetall(keys.stats)
    assert b"failed" not in stats and int(stats[b"processed"]) == 2, stats
    await assert_invariants(redis, namespace, drained=True, stopped=True)
