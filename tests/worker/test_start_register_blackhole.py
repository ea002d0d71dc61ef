"""A start cancelled while it registers (its first heartbeat in flight, which then succeeds:
the pool is registered), Redis black-holed right after, deregisters through ``_unregister``
within max(1 s, heartbeat_interval), as a044bfa bounds a give-up's other calls to Redis (else
four 15 s socket timeouts of the pool's client). Real time (a real proxy, no clock)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from redis.asyncio import Redis

from errands import Job, WorkerPool
from errands.worker.heartbeat import Heartbeater
from tests.faults.proxy import FaultProxy


async def test_a_start_cancelled_while_it_registers_ends_in_bounded_time_when_redis_goes_silent(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first beat registers the pool; the start is cancelled (a signal) before it returned
    to the start; Redis then goes silent. The give-up should end within the heartbeat thread's
    join (interval + 6 s) and a bound of max(1 s, heartbeat interval) for the deregister, as
    a give-up after the registration does (test_start_given_up_blackhole.py)."""
    registered, release = threading.Event(), threading.Event()
    real_start = Heartbeater.start

    def start_then_hold(self: Heartbeater) -> None:
        real_start(self)  # (registered: the beat succeeded)
        registered.set()
        release.wait(30)

    monkeypatch.setattr(Heartbeater, "start", start_then_hold)
    port = int(redis_url.rpartition(":")[2].partition("/")[0])
    with FaultProxy(port) as proxy:
        pool = WorkerPool.from_url(
            proxy.url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=2.0
        )

        @pool.job("work")
        async def work(job: Job) -> None:
            pass

        starting = asyncio.create_task(pool.start())
        try:
            assert await asyncio.to_thread(registered.wait, 10)
            starting.cancel()
            for _ in range(5):  # (the start's task takes the cancel: _register -> _unregister)
                await asyncio.sleep(0)
            proxy.blackhole(new_connections=True)
            began = time.monotonic()
            release.set()
            done, _ = await asyncio.wait({starting}, timeout=30)
            took = time.monotonic() - began
            assert done, "the start given up has not ended within 30 s (its deregister unbounded)"
            assert took < 0.25 + 6.0 + 1.0 + 1.5, f"the start given up after {took:.1f}s"
            with pytest.raises(asyncio.CancelledError):
                starting.result()
            assert not pool.started and pool._redis is None
        finally:
            release.set()
            starting.cancel()
            await asyncio.wait({starting}, timeout=5)
            if pool.heartbeater is not None:
                await asyncio.to_thread(pool.heartbeater.stop)
