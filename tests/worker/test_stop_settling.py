"""A stop whose grace ends while a job settles (its handler ended, its outcome is being written):
the settle is not cancelled with the jobs still running, the outcome reaches Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.procs import live_pools


async def test_a_settle_in_flight_when_the_grace_ends_is_not_cancelled(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    failed = asyncio.Event()
    settling = asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace, shutdown_grace=0.2)

    @pool.job("flaky")
    async def flaky(job: Job) -> None:
        failed.set()
        raise ValueError("boom")

    await pool.start()
    assert pool.worker is not None
    scripts = pool.worker.settler.scripts
    original = scripts.settle_report

    async def slow_settle(*args: Any, **kwargs: Any) -> Any:
        settling.set()
        await asyncio.sleep(0.6)  # a slow Redis: the grace (0.2 s) ends meanwhile
        return await original(*args, **kwargs)

    scripts.settle_report = slow_settle  # type: ignore[method-assign]
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("flaky")
        assert job is not None
        await asyncio.wait_for(settling.wait(), 5)
        await pool.stop()
    # the failure was recorded (a retry scheduled), not left in progress for a reaper to
    # recover as if the process had died
    assert [m.decode() for m in await redis.zrange(keys.retry("flaky"), 0, -1)] == [job.id]
    assert await redis.zcard(keys.in_progress(pool.id)) == 0
    assert await live_pools(redis, namespace) == []


async def test_a_requeue_redis_does_not_take_is_given_up_after_the_cancel_wait(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: Any
) -> None:
    """A job cancelled at the end of the grace whose requeue does not get through (Redis does not
    answer) is not left retrying after stop() returned: given up after the cancel wait, the job
    stays in progress (a reaper gives it back once the pool is gone)."""
    monkeypatch.setattr("errands.worker.shutdown.CANCEL_WAIT", 0.5)
    keys = Keys(namespace)
    started = asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace, shutdown_grace=0.2)

    @pool.job("long")
    async def long(job: Job) -> None:
        started.set()
        await asyncio.sleep(30)

    await pool.start()
    worker = pool.worker
    assert worker is not None

    async def hung(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(30)  # a Redis that does not answer

    worker.settler.scripts.settle_report = hung  # type: ignore[method-assign]
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("long")
        assert job is not None
        await asyncio.wait_for(started.wait(), 5)
        tasks = set(worker.tasks)
        await asyncio.wait_for(pool.stop(), 5)
    await asyncio.sleep(0)
    assert all(t.done() for t in tasks), "a job task still runs after stop()"
    members = await redis.zrange(keys.in_progress(pool.id), 0, -1)
    assert [m.decode().partition(":")[0] for m in members] == [job.id]
