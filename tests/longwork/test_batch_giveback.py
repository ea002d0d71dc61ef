"""A batch name's jobs at a pool's stop. Jobs a batch fetch brought in after the stop began
(worker/batching.py ``_batch_start``: never handed to the handler) go back as a job fetched
ahead does (``_give_back``: settle.lua's 'unstarted' flag), so each takes its enqueue_unique
lock and its Dedup key held until started again: a duplicate meanwhile is refused. Jobs whose
handler started (a batch cancelled with the grace over) go back without them, as a plain job
stopped by a shutdown does: a duplicate is stored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import FetchResult, Scripts


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def _enqueue_two(enqueuer: Enqueuer) -> set[str]:
    """One enqueue_unique job and one held until started (Dedup) of the batch name "bulk"."""
    unique = await enqueuer.enqueue_unique("bulk", {"v": 1})
    keyed = await enqueuer.enqueue("bulk", {"v": 2}, dedup=Dedup("k"))
    assert unique is not None and keyed is not None
    assert keyed.dedup is not None and keyed.dedup.enqueued
    return {unique.id, keyed.id}


async def _duplicates_stored(enqueuer: Enqueuer) -> list[bool]:
    unique = await enqueuer.enqueue_unique("bulk", {"v": 1})
    keyed = await enqueuer.enqueue("bulk", {"v": 2}, dedup=Dedup("k"))
    assert keyed is not None and keyed.dedup is not None
    return [unique is not None, keyed.dedup.enqueued]


async def test_a_batch_fetched_as_the_pool_stops_goes_back_holding_its_lock_and_key(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(namespace)
    fetched, go = asyncio.Event(), asyncio.Event()
    real = Scripts.fetch

    async def held(self: Scripts, *args: Any, **kwargs: Any) -> FetchResult | None:
        got = await real(self, *args, **kwargs)
        if got and args[3] == [("bulk", 0)]:  # a batch fetch: its reply read once stopping
            fetched.set()
            await go.wait()
        return got

    monkeypatch.setattr(Scripts, "fetch", held)
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=0.1)
    ran: list[str] = []

    @pool.batch_job("bulk", max_size=2, max_wait=60)
    async def bulk(jobs: list[Job]) -> None:
        ran.extend(job.id for job in jobs)

    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        ids = await _enqueue_two(enqueuer)
        await pool.start()
        await asyncio.wait_for(fetched.wait(), 10)
        assert await redis.hlen(keys.unique) == 0  # fetched: lock and key freed
        assert await redis.hlen(keys.dedup) == 0
        worker = pool.worker
        assert worker is not None
        stop = asyncio.ensure_future(pool.stop())
        await _until(lambda: worker._stopping)
        go.set()
        await stop
        assert ran == []  # never handed to the handler
        waiting = {m.decode() for m in await redis.zrange(keys.queue("bulk"), 0, -1)}
        assert waiting == ids
        assert await redis.hlen(keys.unique) == 1  # given back unstarted: taken again
        assert await redis.hlen(keys.dedup) == 1
        assert await _duplicates_stored(enqueuer) == [False, False]
    assert await redis.zcard(keys.queue("bulk")) == 2


async def test_a_batch_whose_handler_started_goes_back_without_them(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=0.1)
    entered = asyncio.Event()

    @pool.batch_job("bulk", max_size=2, max_wait=60)
    async def bulk(jobs: list[Job]) -> None:
        entered.set()
        await asyncio.sleep(60)

    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        ids = await _enqueue_two(enqueuer)
        await pool.start()
        await asyncio.wait_for(entered.wait(), 10)
        await pool.stop()  # the grace over: cancelled, back on their queue
        waiting = {m.decode() for m in await redis.zrange(keys.queue("bulk"), 0, -1)}
        assert waiting == ids
        assert await redis.hlen(keys.unique) == 0  # they started: no lock, no key
        assert await redis.hlen(keys.dedup) == 0
        assert await _duplicates_stored(enqueuer) == [True, True]
    assert await redis.zcard(keys.queue("bulk")) == 4
