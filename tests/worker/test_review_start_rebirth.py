"""Review probe: a lease lost while start() runs its startup hooks (after the registration,
_started already True) starts a rebirth task; the start is then cancelled (a signal) and gives
up its lease, but nothing cancels the rebirth: does a pool run on after the abandoned start?"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from tests.support.procs import live_pools


@pytest.mark.parametrize("pause", [0.05, 0.0])
async def test_a_rebirth_begun_during_the_startup_hooks_dies_with_a_cancelled_start(
    redis_url: str, namespace: str, redis: Redis, pause: float
) -> None:
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=1.0
    )
    ran: list[str] = []
    hold = asyncio.Event()
    in_hook = asyncio.Event()

    @pool.job("work")
    async def work(job: Job) -> None:
        ran.append(job.id)

    @pool.on_startup
    async def hook(ctx: dict) -> None:
        in_hook.set()
        await hold.wait()

    hold.set()
    await pool.start()  # a first run of the pool object
    await pool.stop()
    hold.clear()
    in_hook.clear()
    starting = asyncio.create_task(pool.start())
    await asyncio.wait_for(in_hook.wait(), 5)
    pool._lease_lost("lost in the test")  # (what the heartbeat thread reports)
    await asyncio.sleep(pause)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert not pool.started
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("work")
        await asyncio.sleep(2.0)
    rebirth = pool._rebirth_task
    print("rebirth:", rebirth, "live pools:", await live_pools(redis, namespace), "ran:", ran)
    running = [t.get_name() for t in [*pool._tasks, pool._notifier_task] if not t.done()]
    beating = pool.heartbeater is not None and pool.heartbeater._thread.is_alive()
    print("tasks running:", running, "heartbeat thread alive:", beating)
    try:
        assert running == [], "tasks of the abandoned start run on"
        assert not beating, "the heartbeat thread runs on"
        assert ran == [], "a job ran after the start was given up"
        assert await live_pools(redis, namespace) == [], "a pool registered after the start"
    finally:
        if rebirth is not None:
            rebirth.cancel()
        for t in [*pool._tasks, pool._notifier_task, getattr(pool, "_fetch_task", None)]:
            if t is not None:
                t.cancel()
        if pool.heartbeater is not None:
            await asyncio.to_thread(pool.heartbeater.stop)
    assert job is not None


async def test_a_lease_lost_during_the_startup_hooks_of_a_fresh_pool(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """A fresh pool object (no _fetch_task yet): the rebirth raises AttributeError after its
    deregister; does the start carry on with a pool that works?"""
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=1.0
    )
    ran: list[str] = []
    hold = asyncio.Event()
    in_hook = asyncio.Event()

    @pool.job("work")
    async def work(job: Job) -> None:
        ran.append(job.id)

    @pool.on_startup
    async def hook(ctx: dict) -> None:
        in_hook.set()
        await hold.wait()

    starting = asyncio.create_task(pool.start())
    await asyncio.wait_for(in_hook.wait(), 5)
    pool._lease_lost("lost in the test")
    await asyncio.sleep(0.3)
    rebirth = pool._rebirth_task
    hold.set()
    await starting
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("work")
        await asyncio.sleep(2.0)
    print("rebirth:", rebirth, "live:", await live_pools(redis, namespace), pool.id, "ran:", ran)
    await pool.stop()
    assert rebirth is not None and rebirth.done() and rebirth.exception() is None
    assert job is not None and ran == [job.id]
