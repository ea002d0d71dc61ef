"""Review probes of f60d159/3b20ae6 (starting.py ``_cancel_start``: the start's task cancelled
once, by a stop()). (1) A start cancelled by its own caller (not by a stop(): a wait_for, a
TaskGroup, a runner) while its first heartbeat registers it runs ``_unregister``; a stop() from
another task meanwhile must wait for it, not cancel it: cancelled there, ``_unregister`` skips
the heartbeater's stop and the deregister, and the pool stays registered and beating after
stop() returned. (2) A start whose startup hook swallowed the stop()'s cancel and awaits on is
no give-up: a later stop() must still be able to end it (before f60d159 a second stop()
cancelled it again; now every stop() waits forever). (3) A start failing before it
registered (closing its client, stopping its heartbeater) is a give-up too: a stop() waits."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Job, WorkerPool
from errands.errors import RedisUnavailableError
from errands.worker.heartbeat import Heartbeater
from tests.support.procs import live_pools


async def _yield(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_stop_during_the_unregister_of_a_start_its_caller_cancelled_waits_for_it(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    in_beat, gate, beat_done = threading.Event(), threading.Event(), threading.Event()
    real_start = Heartbeater.start

    def gated_start(self: Heartbeater) -> None:
        in_beat.set()
        gate.wait(10)
        try:
            real_start(self)
        finally:
            beat_done.set()

    monkeypatch.setattr(Heartbeater, "start", gated_start)

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    starting = asyncio.create_task(pool.start())
    try:
        assert await asyncio.to_thread(in_beat.wait, 10)
        starting.cancel()  # the caller's own cancel (a wait_for, a TaskGroup), not a stop()
        await _yield()  # (the start now waits in _unregister for the first beat)
        stopping = asyncio.create_task(pool.stop())
        await _yield()
        gate.set()
        await asyncio.wait_for(stopping, 20)
        await asyncio.gather(starting, return_exceptions=True)
        assert await asyncio.to_thread(beat_done.wait, 10)
        assert pool.heartbeater is not None
        assert not pool.heartbeater._thread.is_alive(), "the pool still beats after stop()"
        assert await live_pools(redis, namespace) == []
    finally:
        gate.set()
        starting.cancel()
        await asyncio.wait({starting}, timeout=5)
        if pool.heartbeater is not None:
            await asyncio.to_thread(pool.heartbeater.stop)


async def test_a_stop_ends_a_start_whose_hook_swallowed_the_first_cancel_and_awaits_on(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    entered, swallowed = asyncio.Event(), asyncio.Event()

    @pool.on_startup
    async def stubborn(context: dict[str, Any]) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # (a library swallowing one cancel)
        await asyncio.Event().wait()  # then awaiting on: a cancel would end it

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    starting = asyncio.create_task(pool.start())
    stops: list[asyncio.Task[None]] = []
    try:
        await asyncio.wait_for(entered.wait(), 10)
        first = asyncio.create_task(pool.stop())
        stops.append(first)
        await asyncio.wait_for(swallowed.wait(), 10)
        second = asyncio.create_task(pool.stop())
        stops.append(second)
        done, _ = await asyncio.wait({first, second}, timeout=10)
        assert done == {first, second}, "no stop() can end the start: it waits forever"
        await asyncio.gather(starting, return_exceptions=True)
        assert await live_pools(redis, namespace) == []
        assert not pool.started
    finally:
        for stop in stops:
            stop.cancel()
        starting.cancel()
        await asyncio.wait({starting}, timeout=5)
        starting.cancel()
        await asyncio.wait({starting}, timeout=5)
        if pool.heartbeater is not None:
            await asyncio.to_thread(pool.heartbeater.stop)


@pytest.mark.parametrize("phase", ["close_client", "heartbeat_stop"])
async def test_a_stop_during_the_undoing_of_a_start_that_failed_before_registering_waits(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch, phase: str
) -> None:
    """A start failing before it registered undoes itself: ``close_client``: Redis does not
    answer its PING, the client the pool made is closed; ``heartbeat_stop``: the first beat
    failed, the heartbeater is stopped (then the client closed). A stop() from another task
    meanwhile must wait for that, not cancel the start's task: cancelled, the step is
    interrupted (the client left set) and start() raises CancelledError, not its own error."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, heartbeat_interval=0.25)
    reached, gate, thread_gate = asyncio.Event(), asyncio.Event(), threading.Event()
    if phase == "close_client":

        async def unanswered(*args: Any) -> None:
            raise RedisUnavailableError("PING not answered (test)")

        monkeypatch.setattr("errands.worker.starting.check", unanswered)
        client_type = type(pool.redis)
        real_close = client_type.aclose

        async def gated_close(self: Any, *args: Any, **kwargs: Any) -> None:
            reached.set()
            await gate.wait()
            await real_close(self, *args, **kwargs)

        monkeypatch.setattr(client_type, "aclose", gated_close)
    else:
        loop = asyncio.get_running_loop()
        real_stop = Heartbeater.stop

        def failing_start(self: Heartbeater) -> None:
            raise ConnectionError("first beat refused (test)")

        def gated_stop(self: Heartbeater) -> None:
            loop.call_soon_threadsafe(reached.set)
            thread_gate.wait(10)
            real_stop(self)

        monkeypatch.setattr(Heartbeater, "start", failing_start)
        monkeypatch.setattr(Heartbeater, "stop", gated_stop)

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    starting = asyncio.create_task(pool.start())
    try:
        await asyncio.wait_for(reached.wait(), 10)
        stopping = asyncio.create_task(pool.stop())
        await _yield()
        gate.set()
        thread_gate.set()
        await asyncio.wait_for(stopping, 10)
        with pytest.raises(RedisUnavailableError):
            await starting
        assert pool._redis is None, "the client the pool made was left open"
        assert not pool.started
    finally:
        gate.set()
        thread_gate.set()
        starting.cancel()
        await asyncio.wait({starting}, timeout=5)
