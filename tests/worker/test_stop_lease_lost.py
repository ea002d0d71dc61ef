"""A pool that loses its lease while it stops: its jobs go to other pools as after any lease loss,
but it does not register anew and fetch again: the stop ends with no pool left behind."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.procs import live_pools


async def test_a_lease_lost_during_the_stop_starts_no_new_pool(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    started = asyncio.Event()
    ran: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, shutdown_grace=1.0)

    @pool.job("long")
    async def long(job: Job) -> None:
        ran.append(job.id)
        started.set()
        await asyncio.sleep(30)

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        first = await enqueuer.enqueue("long")
        await pool.start()
        await asyncio.wait_for(started.wait(), 5)
        old_id = pool.id
        stopping = asyncio.create_task(pool.stop())
        await asyncio.sleep(0.2)  # in its grace
        pool._lease_lost("lost in the test")  # (what the heartbeat thread reports)
        await asyncio.wait_for(stopping, 15)
        later = await enqueuer.enqueue("long")
        await asyncio.sleep(1.0)
    assert first is not None and later is not None
    assert ran == [first.id], "a pool stopped took a job"
    # no new id registered (the old one, whose lease is given up only in this test's make-believe,
    # holds the cancelled job in progress: a reaper gives it back once its heartbeat lapses)
    assert pool.id == old_id
    assert await live_pools(redis, namespace) in ([], [old_id])
    assert [m.decode() for m in await redis.zrange(keys.queue("long"), 0, -1)] == [later.id]


async def test_a_lease_lost_at_the_end_of_the_stop_leaves_no_task_running(
    redis_url: str, namespace: str
) -> None:
    """The heartbeat thread may report a lost lease at any moment of the stop: after its last
    cancel of the pool's tasks (here while the on_shutdown hooks run), a rebirth task started
    then ran on after ``stop()`` returned, on a Redis client the stop had closed."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, shutdown_grace=1.0)

    @pool.job("noop")
    async def noop(job: Job) -> None:
        pass

    @pool.on_shutdown
    async def lose_the_lease(context: dict[str, object]) -> None:
        pool._lease_lost("lost in the test")  # (what the heartbeat thread reports)
        await asyncio.sleep(0)

    await pool.start()
    await pool.stop()
    left = [t for t in asyncio.all_tasks() if t.get_name().startswith("errands-") and not t.done()]
    assert left == [], left
    assert not pool.started
