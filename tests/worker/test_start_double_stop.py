"""Two stop()s of a start under way (starting.py ``_cancel_start``): a second stop() that
comes while a first stop() is giving a start up (the start's task, cancelled, runs its give-up)
must wait for that give-up, as two stop()s of a launched pool do ("the second waits for the
first"), not cancel the start's task again: a second cancel skips the give-up step it comes in
(the shutdown hook, pairing with startup hooks that all returned; the deregister)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Job, WorkerPool
from errands.store.scripts import Scripts
from tests.support.procs import live_pools


async def _cleanup(pool: WorkerPool) -> None:
    for task in asyncio.all_tasks():
        if task.get_name().startswith("errands-"):
            task.cancel()
    if pool.heartbeater is not None:
        await asyncio.to_thread(pool.heartbeater.stop)


@pytest.mark.parametrize("second_stop_during", ["shutdown_hook", "deregister"])
async def test_a_second_stop_during_a_start_given_up_lets_the_give_up_end(
    redis_url: str,
    namespace: str,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    second_stop_during: str,
) -> None:
    """``shutdown_hook``: the startup hook returned, the start writes the caps when the first
    stop() comes: the give-up runs the shutdown hook, and a second stop() meanwhile must not
    interrupt it (before, it cancelled the start's task again: the hook is cancelled, what the
    startup hook opened is never closed). ``deregister``: the first stop() comes during a
    startup hook; the second during the give-up's deregister (Redis answering), which before
    it cancelled: the registration of a pool that never ran stays until a reaper takes it."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    events: list[str] = []
    reached, second_point, gate = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stuck(*args: Any) -> None:
        reached.set()
        await asyncio.Event().wait()

    if second_stop_during == "shutdown_hook":

        @pool.on_startup
        async def opened(context: dict[str, Any]) -> None:
            events.append("opened")

        @pool.on_shutdown
        async def closed(context: dict[str, Any]) -> None:
            second_point.set()
            await gate.wait()
            events.append("closed")

        monkeypatch.setattr("errands.worker.starting.write_caps", stuck)
        expected = ["opened", "closed"]
    else:
        pool.on_startup(stuck)
        real = Scripts.deregister

        async def slow_deregister(self: Scripts, *args: Any) -> Any:
            second_point.set()
            await gate.wait()
            return await real(self, *args)

        monkeypatch.setattr(Scripts, "deregister", slow_deregister)
        expected = []

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    starting = asyncio.create_task(pool.start())
    try:
        await asyncio.wait_for(reached.wait(), 10)
        first = asyncio.create_task(pool.stop())
        await asyncio.wait_for(second_point.wait(), 10)
        second = asyncio.create_task(pool.stop())
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, second), 10)
        with pytest.raises(asyncio.CancelledError):
            await starting
        assert events == expected, "the give-up's shutdown hook was cancelled by the 2nd stop()"
        assert await live_pools(redis, namespace) == [], "the 2nd stop() skipped the deregister"
        assert not pool.started and pool._redis is None
    finally:
        gate.set()
        await _cleanup(pool)
