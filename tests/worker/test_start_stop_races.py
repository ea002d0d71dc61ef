"""Review probes (rev-life): a stop() that comes while a restarted pool is starting."""

from __future__ import annotations

import asyncio
import contextlib
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


@pytest.mark.parametrize("restarted", [False, True])
async def test_a_stop_during_a_start_runs_no_shutdown_hook_before_the_startup_hooks_return(
    redis_url: str, namespace: str, redis: Redis, restarted: bool
) -> None:
    """A stop() while the startup hooks run (an app shutting down while its pool starts in
    the background). On a fresh pool it returns at once (nothing launched: ``self.worker`` is
    None), the start then completes, and a later stop() stops it. On a pool that ran before,
    ``self.worker`` is the previous run's worker: stop() runs the shutdown hooks while a
    startup hook has not returned, stops the new heartbeat, deregisters and closes the client;
    the start then carries on and launches a pool that says it is not started (its tasks run
    on: a later stop() returns at once). FAILS for restarted=True."""
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
    pool.context["hold"] = True
    starting = asyncio.create_task(pool.start())
    await asyncio.wait_for(in_hook.wait(), 5)
    await asyncio.wait_for(pool.stop(), 10)
    assert "closed" not in events, "a shutdown hook ran while a startup hook had not returned"
    gate.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(starting, 10)
    await pool.stop()
    try:
        assert _errands_tasks() == [], "tasks of the pool run on after its stop()"
        assert await live_pools(redis, namespace) == []
        assert events == ["opened", "closed"]
    finally:
        for task in asyncio.all_tasks():
            if task.get_name().startswith("errands-"):
                task.cancel()
        if pool.heartbeater is not None:
            await asyncio.to_thread(pool.heartbeater.stop)


async def test_a_start_given_up_whose_shutdown_hook_is_cancelled_still_deregisters(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start is cancelled after its startup hooks returned (a signal, an asyncio.timeout),
    and cancelled again while its shutdown hook runs (an impatient second cancel): the give-up
    skips the withdrawal and the lease's release (only the client is closed, in a finally), so
    the heartbeat thread renews the registration of a pool that never started for as long as
    the process lives (admin lists it live; its sync client and thread leak). FAILS on main."""
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
    try:
        assert pool._redis is None
        assert await live_pools(redis, namespace) == [], "a start given up stays registered"
        assert pool.heartbeater is not None and not pool.heartbeater._thread.is_alive()
    finally:
        if pool.heartbeater is not None:
            await asyncio.to_thread(pool.heartbeater.stop)
