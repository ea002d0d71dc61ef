"""Two start() calls at once on one pool, a start() while it stops, a start() after a stop: one
launch, one registration, nothing left over."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from tests.support.procs import live_pools


def _errands_tasks() -> list[str]:
    return sorted(
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith("errands-") and not t.done()
    )


def _heartbeat_threads() -> int:
    return sum(
        t.name.startswith("errands-heartbeat") and t.is_alive() for t in threading.enumerate()
    )


async def _cleanup(pool: WorkerPool) -> None:
    await pool.stop()
    for task in asyncio.all_tasks():
        if task.get_name().startswith("errands-"):
            task.cancel()
    if pool.heartbeater is not None:
        await asyncio.to_thread(pool.heartbeater.stop)


def _pool(redis_url: str, namespace: str) -> tuple[WorkerPool, list[str]]:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    events: list[str] = []

    @pool.on_startup
    async def opened(context: dict[str, Any]) -> None:
        events.append("opened")
        await asyncio.sleep(0.05)  # (the second start() comes meanwhile)

    @pool.on_shutdown
    async def closed(context: dict[str, Any]) -> None:
        events.append("closed")

    @pool.job("work")
    async def work(job: Job) -> None:
        events.append("job")

    return pool, events


async def test_two_concurrent_starts_launch_once(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """Both return once the pool runs; one registration, one set of tasks, the startup hooks
    once; one stop() then leaves nothing."""
    pool, events = _pool(redis_url, namespace)
    try:
        await asyncio.wait_for(asyncio.gather(pool.start(), pool.start()), 10)
        assert pool.started
        assert events == ["opened"], "the startup hooks ran once per start()"
        assert len(await live_pools(redis, namespace)) == 1, "registered twice"
        assert len(_errands_tasks()) == len(set(_errands_tasks())), _errands_tasks()
        async with Enqueuer(redis, namespace=namespace) as enq:
            await enq.enqueue("work")
        await pool.drain(10)
        await pool.stop()
        assert events == ["opened", "job", "closed"]
        assert _errands_tasks() == []
        assert await live_pools(redis, namespace) == []
        assert pool._redis is None
    finally:
        await _cleanup(pool)


async def _given_up_clean(pool: WorkerPool, redis: Redis, namespace: str) -> None:
    assert not pool.started
    assert _errands_tasks() == []
    assert await live_pools(redis, namespace) == []
    assert pool._redis is None


async def test_a_start_waiting_for_a_failing_start_raises_a_clear_error(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """The first start() fails in a startup hook: it raises the hook's error; the second, which
    waited for it, raises RuntimeError saying so (it does not start again on its own)."""
    pool, events = _pool(redis_url, namespace)
    pool.context["fail"] = True

    @pool.on_startup
    async def failing(context: dict[str, Any]) -> None:
        if context.get("fail"):
            raise ConnectionRefusedError("the database is down")

    try:
        first, second = await asyncio.wait_for(
            asyncio.gather(pool.start(), pool.start(), return_exceptions=True), 10
        )
        assert isinstance(first, ConnectionRefusedError), first
        assert isinstance(second, RuntimeError), second
        assert "start() under way" in str(second)
        assert events == ["opened"], "the startup hooks ran once per start()"
        await _given_up_clean(pool, redis, namespace)
        pool.context["fail"] = False
        await pool.start()  # (it starts again afterwards)
        assert pool.started and len(await live_pools(redis, namespace)) == 1
        await pool.stop()
        await _given_up_clean(pool, redis, namespace)
    finally:
        await _cleanup(pool)


async def test_a_stop_during_two_starts_gives_both_up(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """A stop() while two start()s are under way: the first raises CancelledError (given up),
    the second RuntimeError; nothing launched, nothing left; the stop returns."""
    pool, events = _pool(redis_url, namespace)
    in_hook = asyncio.Event()

    @pool.on_startup
    async def hang(context: dict[str, Any]) -> None:
        in_hook.set()
        await asyncio.Event().wait()

    try:
        first = asyncio.create_task(pool.start())
        second = asyncio.create_task(pool.start())
        await asyncio.wait_for(in_hook.wait(), 5)
        await asyncio.wait_for(pool.stop(), 10)
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(RuntimeError, match="start\\(\\) under way"):
            await second
        assert events == ["opened"]
        await _given_up_clean(pool, redis, namespace)
    finally:
        await _cleanup(pool)


async def test_a_start_while_the_pool_stops_raises_a_clear_error(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """start() during a stop() (its shutdown hooks run) raises RuntimeError: it would otherwise
    return with the pool about to be stopped (it was `started`), running nothing. The stop ends
    as usual; the pool starts again afterwards."""
    pool, events = _pool(redis_url, namespace)
    in_hook, gate = asyncio.Event(), asyncio.Event()

    @pool.on_shutdown
    async def slow_close(context: dict[str, Any]) -> None:
        in_hook.set()
        await gate.wait()

    try:
        await pool.start()
        stopping = asyncio.create_task(pool.stop())
        await asyncio.wait_for(in_hook.wait(), 5)
        with pytest.raises(RuntimeError, match="stop\\(\\) under way"):
            await pool.start()
        gate.set()
        await asyncio.wait_for(stopping, 10)
        await _given_up_clean(pool, redis, namespace)
        await pool.start()
        assert pool.started and len(await live_pools(redis, namespace)) == 1
        await pool.stop()
        await _given_up_clean(pool, redis, namespace)
        assert events == ["opened", "closed", "opened", "closed"]
    finally:
        gate.set()
        await _cleanup(pool)


async def test_a_start_from_a_startup_hook_returns(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """(expected to pass: unchanged) A startup hook calling start() again (shared app code):
    it returns at once (waiting for its own start would never end); the pool starts once."""
    pool, events = _pool(redis_url, namespace)

    @pool.on_startup
    async def again(context: dict[str, Any]) -> None:
        await pool.start()

    try:
        await asyncio.wait_for(pool.start(), 10)
        assert pool.started and len(await live_pools(redis, namespace)) == 1
        await pool.stop()
        await _given_up_clean(pool, redis, namespace)
        assert events == ["opened", "closed"]
    finally:
        await _cleanup(pool)
