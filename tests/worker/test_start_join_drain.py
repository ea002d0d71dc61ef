"""drain() (with 9f34f71: a second start() waits for the start under way) called
while another caller's start() is under way joins that start, and then must not stop the pool
it did not start (``drain`` stops only a pool it started itself: ``was_started``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Job, WorkerPool
from errands.store.connection import check
from tests.support.procs import live_pools


async def _cleanup(pool: WorkerPool) -> None:
    await pool.stop()
    for task in asyncio.all_tasks():
        if task.get_name().startswith("errands-"):
            task.cancel()
    if pool.heartbeater is not None:
        await asyncio.to_thread(pool.heartbeater.stop)


@pytest.mark.parametrize("phase", ["connecting", "startup_hook"])
async def test_a_drain_joining_another_start_leaves_the_pool_running(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch, phase: str
) -> None:
    """Task A: ``await pool.start()`` (the app keeps the pool running). Task B: ``await
    pool.drain()`` while A's start is under way: B waits for A's start (9f34f71), drains, and
    must leave the pool running, as it does when the pool had started before. ``connecting``:
    B comes while A's start checks Redis (before it registered: ``started`` still False);
    ``startup_hook``: B comes during A's startup hook (registered: ``started`` True). Before,
    the first stops the pool A started (drain's ``was_started`` read False), the second not."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    reached, gate = asyncio.Event(), asyncio.Event()

    async def held() -> None:
        reached.set()
        await gate.wait()

    if phase == "connecting":

        async def slow_check(*args: Any) -> None:
            await held()
            await check(*args)

        monkeypatch.setattr("errands.worker.starting.check", slow_check)
    else:

        @pool.on_startup
        async def slow_hook(context: dict[str, Any]) -> None:
            await held()

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    try:
        first = asyncio.create_task(pool.start())
        await asyncio.wait_for(reached.wait(), 10)
        draining = asyncio.create_task(pool.drain(10))
        for _ in range(5):  # (drain reads `started`, then waits for A's start)
            await asyncio.sleep(0)
        assert not draining.done()
        gate.set()
        await asyncio.wait_for(first, 10)
        await asyncio.wait_for(draining, 15)
        assert pool.started, (
            f"drain() ({phase}) stopped the pool another start() started, which it only waited for"
        )
        assert len(await live_pools(redis, namespace)) == 1
    finally:
        gate.set()
        await _cleanup(pool)
