"""A start given up (a signal: its task cancelled) while Redis is black-holed after the pool
registered: the give-up's own calls to Redis (withdrawing the names served, deregistering) are
bounded, not left to the client's 15 s socket timeout and its retries (67 s measured: the
deregister alone took 60.8 s, four timeouts of 15 s). Real time (a real proxy, no clock)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Job, WorkerPool
from tests.faults.proxy import FaultProxy
from tests.support.procs import eventually


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("where", ["hook", "publish"])
async def test_a_start_given_up_while_redis_is_black_holed_ends_in_bounded_time(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """``hook``: a startup hook hangs; ``publish``: the hooks returned, the names served are
    being published (the give-up withdraws them). The cancel ends the start within the
    heartbeat thread's join (interval + 6 s) and one bound of max(1 s, heartbeat interval) per
    Redis step; the client is closed, the heartbeat thread ends, no task is left."""
    port = int(redis_url.rpartition(":")[2].partition("/")[0])
    with FaultProxy(port) as proxy:
        pool = WorkerPool.from_url(
            proxy.url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=2.0
        )
        reached = asyncio.Event()

        async def hang(*args: Any) -> None:
            reached.set()
            await asyncio.Event().wait()

        if where == "hook":
            pool.on_startup(hang)
        else:
            monkeypatch.setattr("errands.store.served.ServedNames.publish", hang)

        @pool.job("work")
        async def work(job: Job) -> None:
            pass

        starting = asyncio.create_task(pool.start())
        await asyncio.wait_for(reached.wait(), 10)
        proxy.blackhole(new_connections=True)
        began = time.monotonic()
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(starting), 40)
        took = time.monotonic() - began
        assert took < 0.25 + 6.0 + 2 * 1.0 + 1.5, f"the start given up after {took:.1f}s"
        assert not pool.started and pool._redis is None
        assert pool.heartbeater is not None
        thread = pool.heartbeater._thread
        await eventually(lambda: _true(not thread.is_alive()), 15, "the heartbeat thread ends")
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith("errands-")] == []
    # (its registration lapses: a reaper of any pool takes it once dead_timeout passed)
