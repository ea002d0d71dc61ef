"""start() runs in its caller's task (a review of 3bfc609, which ran it in a task of its own:
a cancel of the caller as the start launched left the pool running, contextvars set by startup
hooks were lost); concurrent stops, a stop from a hook."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from tests.support.procs import live_pools

_opened: contextvars.ContextVar[str] = contextvars.ContextVar("opened")


def _errands_tasks() -> list[str]:
    return sorted(
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith("errands-") and not t.done()
    )


async def _cleanup(pool: WorkerPool) -> None:
    await pool.stop()
    for task in asyncio.all_tasks():
        if task.get_name().startswith("errands-"):
            task.cancel()
    if pool.heartbeater is not None:
        await asyncio.to_thread(pool.heartbeater.stop)


async def test_a_cancel_of_the_caller_right_as_the_start_launches_leaves_no_pool_running(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller of start() is cancelled in the same loop iteration in which the start task
    launches the pool (a timeout expiring then, a TaskGroup sibling failing): start() raises
    CancelledError, so `async with pool:` never reaches __aexit__; the pool must then not run
    on (before 3bfc609 start() returned with no await after the launch, the cancel came at the
    caller's next await, inside the `async with`). FAILS: the pool launched and runs on,
    registered, with no stop() to come."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    caller: list[asyncio.Task[None]] = []
    after_launch = pool._after_launch

    def launched(names: list[str]) -> None:
        after_launch(names)
        # queued before the caller's wake-up (the start task's completion schedules it next)
        asyncio.get_running_loop().call_soon(caller[0].cancel)

    monkeypatch.setattr(pool, "_after_launch", launched)
    body_ran = False

    async def user() -> None:
        nonlocal body_ran
        async with pool:
            body_ran = True
            await asyncio.sleep(0)

    caller.append(asyncio.create_task(user()))
    try:
        with pytest.raises(asyncio.CancelledError):
            await caller[0]
        if not body_ran:  # __aexit__ never ran: start() must not have left a pool running
            assert _errands_tasks() == [], "start() raised CancelledError, its pool runs on"
            assert await live_pools(redis, namespace) == [], "the pool stays registered"
            assert not pool.started
    finally:
        await _cleanup(pool)


async def test_a_contextvar_set_by_a_startup_hook_is_seen_by_the_shutdown_hook(
    redis_url: str, namespace: str
) -> None:
    """A startup hook sets a ContextVar (a connection, a tracer) that the shutdown hook reads to
    close it: both ran in the task of start()/stop() before 3bfc609. FAILS: the startup hook
    now runs in a task of its own, whose context the stop()'s task never sees (the shutdown
    hook of a start given up does see it: it runs in the start's task)."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    seen: list[str | None] = []

    @pool.on_startup
    async def opened(context: dict[str, Any]) -> None:
        _opened.set("conn")

    @pool.on_shutdown
    async def closed(context: dict[str, Any]) -> None:
        seen.append(_opened.get(None))

    @pool.job("work")
    async def work(job: Job) -> None:
        seen.append("job:" + str(_opened.get(None)))

    try:
        async with pool:
            after_start = _opened.get(None)
    finally:
        await _cleanup(pool)
    assert seen == ["conn"], "the shutdown hook does not see what the startup hook set"
    assert after_start == "conn", "the code after start() does not see it"


async def test_a_cancel_of_the_caller_during_a_startup_hook_cancels_the_start_task(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """(expected to pass) Cancelling the task that awaits start() cancels the start's own task:
    the hook is cancelled, the start given up, nothing left."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    in_hook = asyncio.Event()
    cancelled: list[bool] = []

    @pool.on_startup
    async def opened(context: dict[str, Any]) -> None:
        in_hook.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    task = asyncio.create_task(pool.start())
    try:
        await asyncio.wait_for(in_hook.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cancelled == [True]
        assert pool._starting is None
        assert _errands_tasks() == []
        assert await live_pools(redis, namespace) == []
        assert not pool.started
    finally:
        await _cleanup(pool)


async def test_start_keeps_the_type_and_traceback_of_a_hook_error(
    redis_url: str, namespace: str
) -> None:
    """(expected to pass) A startup hook's error comes out of start() as is, its traceback
    naming the hook."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)

    @pool.on_startup
    async def broken_hook(context: dict[str, Any]) -> None:
        raise KeyError("boom")

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    try:
        with pytest.raises(KeyError) as info:
            await pool.start()
        names = [entry.name for entry in info.traceback]
        assert "broken_hook" in names
        assert not pool.started
    finally:
        await _cleanup(pool)


async def test_two_concurrent_stops_during_a_start(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """(expected to pass) Two stop() calls during a startup hook both return once the start is
    given up; nothing left."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    in_hook = asyncio.Event()

    @pool.on_startup
    async def opened(context: dict[str, Any]) -> None:
        in_hook.set()
        await asyncio.Event().wait()

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    task = asyncio.create_task(pool.start())
    try:
        await asyncio.wait_for(in_hook.wait(), 5)
        await asyncio.wait_for(asyncio.gather(pool.stop(), pool.stop()), 10)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _errands_tasks() == []
        assert await live_pools(redis, namespace) == []
    finally:
        await _cleanup(pool)


async def test_a_stop_from_inside_a_startup_hook(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """(probe) A startup hook that calls pool.stop() (it decides the app should not run): the
    start is given up, start() raises CancelledError, nothing left, no hang."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)

    @pool.on_startup
    async def opened(context: dict[str, Any]) -> None:
        await pool.stop()

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    try:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(pool.start(), 10)
        assert _errands_tasks() == []
        assert await live_pools(redis, namespace) == []
    finally:
        await _cleanup(pool)


async def test_a_stop_from_inside_a_job(redis_url: str, namespace: str, redis: Redis) -> None:
    """(probe) A job calling pool.stop() in a task of its own: the pool stops."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    stopping: list[asyncio.Task[None]] = []

    @pool.job("work")
    async def work(job: Job) -> None:
        stopping.append(asyncio.create_task(pool.stop()))

    try:
        await pool.start()
        async with Enqueuer(redis, namespace=namespace) as enq:
            await enq.enqueue("work")
        for _ in range(200):
            if stopping:
                break
            await asyncio.sleep(0.02)
        await asyncio.wait_for(stopping[0], 10)
        assert not pool.started
        assert await live_pools(redis, namespace) == []
    finally:
        await _cleanup(pool)


async def test_two_concurrent_stops_of_a_launched_pool_run_the_shutdown_hooks_once(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """Two stop() calls of a running pool at once (an app's shutdown path and a signal, say):
    the shutdown hooks run once. FAILS, before 3bfc609 too (pre-existing): both stops pass
    the `started and launched` check and each runs the whole stop, the shutdown hooks twice
    (closing what they opened twice), deregistering twice."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    closed: list[int] = []

    @pool.on_shutdown
    async def close(context: dict[str, Any]) -> None:
        closed.append(1)
        await asyncio.sleep(0.05)

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    try:
        await pool.start()
        gathered = asyncio.gather(pool.stop(), pool.stop(), return_exceptions=True)
        assert await asyncio.wait_for(gathered, 10) == [None, None]
        assert closed == [1], "the shutdown hooks ran once per concurrent stop()"
        assert await live_pools(redis, namespace) == []
    finally:
        await _cleanup(pool)


async def test_a_stop_from_a_shutdown_hook_does_not_stop_again(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """A shutdown hook that calls pool.stop() (shared app teardown code): the stop under way
    is not run again. FAILS, before 3bfc609 too (pre-existing): the nested stop() passes the
    `started and launched` check (both still true while the shutdown hooks run) and runs the
    shutdown hooks again, recursing without end (capped at 5 here)."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    closed: list[int] = []

    @pool.on_shutdown
    async def close(context: dict[str, Any]) -> None:
        closed.append(1)
        if len(closed) < 5:
            await pool.stop()

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    try:
        await pool.start()
        await asyncio.wait_for(pool.stop(), 10)
        assert closed == [1], "a stop() from a shutdown hook ran the stop again"
        assert await live_pools(redis, namespace) == []
    finally:
        await _cleanup(pool)
