"""A ``stop()`` from an ``on_shutdown`` hook returns at once (docs/workers.md), also from the
shutdown hook of a start given up because it failed (nobody cancelled anything), where the
start's task is the current one: before, it raised ``asyncio.CancelledError`` there, the
shutdown hooks left were skipped, and ``start()`` raised CancelledError instead of the start's
own error (starting.py ``_cancel_start``)."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from errands import Job, WorkerPool
from tests.support.procs import live_pools


async def test_a_stop_from_the_shutdown_hook_of_a_failed_start_returns(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: Any
) -> None:
    """The start fails after its startup hooks (writing the caps raises): its give-up runs the
    shutdown hooks; the first calls ``pool.stop()`` (shared app code), which should return at
    once; the second hook runs too; ``start()`` raises the start's own error."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    events: list[str] = []

    @pool.on_startup
    async def opened(context: dict[str, Any]) -> None:
        events.append("opened")

    @pool.on_shutdown
    async def stop_too(context: dict[str, Any]) -> None:
        await pool.stop()
        events.append("stop returned")

    @pool.on_shutdown
    async def closed(context: dict[str, Any]) -> None:
        events.append("closed")

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    async def failing(*args: Any) -> None:
        raise ConnectionError("the caps could not be written")

    monkeypatch.setattr("errands.worker.starting.write_caps", failing)
    try:
        outcome = await asyncio.wait_for(asyncio.gather(pool.start(), return_exceptions=True), 10)
        assert isinstance(outcome[0], ConnectionError), repr(outcome[0])
        assert events == ["opened", "stop returned", "closed"]
        assert await live_pools(redis, namespace) == []
        assert not pool.started and pool._redis is None
    finally:
        if pool.heartbeater is not None:
            await asyncio.to_thread(pool.heartbeater.stop)


async def test_a_stop_during_the_shutdown_hook_of_a_failed_start_waits_for_it(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: Any
) -> None:
    """A ``stop()`` from another task while a failed start's give-up runs its shutdown hook
    waits for the give-up, as a second ``stop()`` does (test_start_double_stop.py): before, it
    cancelled the start's task, the hook was interrupted and ``start()`` raised CancelledError
    instead of the start's own error."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    events: list[str] = []
    in_hook, gate = asyncio.Event(), asyncio.Event()

    @pool.on_shutdown
    async def closed(context: dict[str, Any]) -> None:
        in_hook.set()
        await gate.wait()
        events.append("closed")

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    async def failing(*args: Any) -> None:
        raise ConnectionError("the caps could not be written")

    monkeypatch.setattr("errands.worker.starting.write_caps", failing)
    starting = asyncio.create_task(pool.start())
    try:
        await asyncio.wait_for(in_hook.wait(), 10)
        stopping = asyncio.create_task(pool.stop())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not stopping.done()
        gate.set()
        await asyncio.wait_for(stopping, 10)
        outcome = await asyncio.gather(starting, return_exceptions=True)
        assert isinstance(outcome[0], ConnectionError), repr(outcome[0])
        assert events == ["closed"]
        assert await live_pools(redis, namespace) == []
        assert not pool.started and pool._redis is None
    finally:
        gate.set()
        starting.cancel()
        await asyncio.wait({starting}, timeout=5)
        if pool.heartbeater is not None:
            await asyncio.to_thread(pool.heartbeater.stop)
