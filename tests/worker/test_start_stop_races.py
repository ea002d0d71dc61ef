"""A pool's start and stop meeting: a stop() during a start, a second cancel of a start given up
or of a stop while a shutdown hook runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Job, WorkerPool
from tests.support.procs import live_pools


def _errands_tasks() -> list[str]:
    return sorted(
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith("errands-") and not t.done()
    )


async def _stopped_clean(pool: WorkerPool, redis: Redis, namespace: str) -> None:
    """Nothing of the pool left: no task, no registration, no heartbeat, no names served."""
    try:
        assert _errands_tasks() == [], "tasks of the pool run on after its stop()"
        assert await live_pools(redis, namespace) == [], "the pool stays registered"
        assert pool.heartbeater is not None and not pool.heartbeater._thread.is_alive()
        assert await redis.exists(pool.keys.serves(pool.id)) == 0
        assert pool._redis is None and not pool.started
    finally:
        for task in asyncio.all_tasks():
            if task.get_name().startswith("errands-"):
                task.cancel()
        if pool.heartbeater is not None:
            await asyncio.to_thread(pool.heartbeater.stop)


@pytest.mark.parametrize("restarted", [False, True])
async def test_a_stop_during_a_startup_hook_gives_the_start_up(
    redis_url: str, namespace: str, redis: Redis, restarted: bool
) -> None:
    """A stop() while a startup hook runs (an app shutting down while its pool starts in the
    background) gives the start up as a signal does: the hook is cancelled, no shutdown hook
    runs (a startup hook did not return), start() raises CancelledError (the task running it is
    cancelled: the start runs in it), nothing is launched or left registered, and the stop
    returns once the start
    is undone. A pool that ran before
    too: its previous run's worker let stop() run the shutdown hooks, stop the heartbeat and
    deregister while the hook ran, and the start then launched a pool no stop() could see
    (FAILED for restarted=True). The pool starts again afterwards."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    events: list[str] = []
    gate = asyncio.Event()
    in_hook = asyncio.Event()

    @pool.on_startup
    async def opened(context: dict[str, Any]) -> None:
        if context.get("hold"):
            in_hook.set()
            await gate.wait()
        events.append("opened")

    @pool.on_shutdown
    async def closed(context: dict[str, Any]) -> None:
        events.append("closed")

    @pool.job("work")
    async def work(job: Job) -> None:
        events.append("job")

    if restarted:
        await pool.start()
        await pool.stop()
        events.clear()

    async def start() -> int:
        with pytest.raises(asyncio.CancelledError):
            await pool.start()
        caller = asyncio.current_task()
        assert caller is not None
        return caller.cancelling()

    pool.context["hold"] = True
    starting = asyncio.create_task(start())
    await asyncio.wait_for(in_hook.wait(), 5)
    await asyncio.wait_for(pool.stop(), 10)
    assert starting.done(), "stop() returned before the start was undone"
    assert await starting == 1, "the task that called start() is cancelled, as by a signal"
    assert events == [], "a shutdown hook ran while a startup hook had not returned"
    await _stopped_clean(pool, redis, namespace)
    gate.set()
    await pool.stop()  # (no-op: stopped already)
    pool.context["hold"] = False
    await pool.start()
    assert await live_pools(redis, namespace) == [pool.id]
    await pool.stop()
    assert events == ["opened", "closed"]
    await _stopped_clean(pool, redis, namespace)


async def test_a_stop_after_the_startup_hooks_returned_runs_the_shutdown_hooks(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop() during a start whose startup hooks all returned (it writes the caps): the
    start is given up, the shutdown hooks run (they pair with the startup hooks), nothing is
    launched or left registered."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    events: list[str] = []
    reached = asyncio.Event()

    @pool.on_startup
    async def opened(context: dict[str, Any]) -> None:
        events.append("opened")

    @pool.on_shutdown
    async def closed(context: dict[str, Any]) -> None:
        events.append("closed")

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    async def stuck(*args: Any) -> None:
        reached.set()
        await asyncio.Event().wait()

    monkeypatch.setattr("errands.worker.starting.write_caps", stuck)
    starting = asyncio.create_task(pool.start())
    await asyncio.wait_for(reached.wait(), 5)
    await asyncio.wait_for(pool.stop(), 10)
    assert events == ["opened", "closed"]
    with pytest.raises(asyncio.CancelledError):
        await starting
    await _stopped_clean(pool, redis, namespace)


async def test_a_start_given_up_whose_shutdown_hook_is_cancelled_still_deregisters(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start is cancelled after its startup hooks returned (a signal, an asyncio.timeout),
    and cancelled again while its shutdown hook runs (an impatient second cancel): the give-up
    skips the withdrawal and the lease's release (only the client is closed, in a finally), so
    the heartbeat thread renews the registration of a pool that never started for as long as
    the process lives (admin lists it live; its sync client and thread leak): FAILED without
    the give-up's finally."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    reached, in_shutdown = asyncio.Event(), asyncio.Event()

    @pool.on_shutdown
    async def slow(context: dict[str, Any]) -> None:
        in_shutdown.set()
        await asyncio.sleep(3600)

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    async def stuck(*args: Any) -> None:
        reached.set()
        await asyncio.Event().wait()

    monkeypatch.setattr("errands.worker.starting.write_caps", stuck)
    starting = asyncio.create_task(pool.start())
    await asyncio.wait_for(reached.wait(), 5)
    starting.cancel()
    await asyncio.wait_for(in_shutdown.wait(), 5)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    await _stopped_clean(pool, redis, namespace)


async def test_a_stop_cancelled_in_its_shutdown_hook_still_deregisters(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """A stop() cancelled while its shutdown hook runs (an impatient caller, a timeout) still
    stops the heartbeat, withdraws the names, deregisters and closes the client; the pool is
    stopped. It skipped all of that: the pool stayed registered, beating, and said it was
    started (FAILED without the finally)."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    in_shutdown = asyncio.Event()

    @pool.on_shutdown
    async def slow(context: dict[str, Any]) -> None:
        in_shutdown.set()
        await asyncio.sleep(3600)

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    await pool.start()
    assert await live_pools(redis, namespace) == [pool.id]
    stopping = asyncio.create_task(pool.stop())
    await asyncio.wait_for(in_shutdown.wait(), 5)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    await _stopped_clean(pool, redis, namespace)
