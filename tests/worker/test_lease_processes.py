"""Issue 12, defects 11 and 6, with real worker processes (``tests.support.apps.timed``: heartbeat
every 0.25 s, dead after 1 s): a pool frozen (SIGSTOP) or stalled by a handler holding the GIL
for longer than the dead timeout has its lease and jobs taken by a live pool; when it resumes
it notices within moments, cancels its async handler at its next await, writes no check-in,
ack or settle for it, logs it, and carries on under a new pool id. A GIL hold shorter than
``dead_timeout - 1.5 * heartbeat_interval`` costs nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.procs import Procs, eventually, live_pools, records, wait_ready

HB, DEAD = 0.25, 1.0  # as in tests/support/apps/timed.py


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


def rescuer(
    redis_url: str,
    namespace: str,
    ran: list[tuple[str, float]],
    names: tuple[str, ...] = ("progress", "gil"),
) -> WorkerPool:
    """The live pool of the test process: runs the jobs it takes back, quickly."""
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=HB, dead_timeout=DEAD
    )

    async def quick(job: Job, **_: Any) -> None:
        ran.append((job.id, time.time()))

    for name in names:
        pool.register(name, quick)
    return pool


async def pools_of(redis: Redis, namespace: str, pid: int) -> list[str]:
    """The registered pool ids of process ``pid``."""
    keys = Keys(namespace)
    found = []
    for pool_id in await live_pools(redis, namespace):
        info = await redis.get(keys.pool_info(pool_id))
        if info is not None and orjson.loads(info)["pid"] == pid:
            found.append(pool_id)
    return found


async def test_a_frozen_pool_notices_on_resume_and_stops_its_handler_at_once(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    proc = procs.worker("timed:pool", redis_url, namespace)
    await wait_ready(redis, namespace, 1)
    [frozen_id] = await live_pools(redis, namespace)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("progress", {"seconds": 8.0})
    assert job is not None

    async def progressing() -> bool:
        return len(await records(redis, namespace, "progress")) >= 3

    await eventually(progressing, 10, "the job to make progress in the worker")
    ran: list[tuple[str, float]] = []
    live = rescuer(redis_url, namespace, ran)
    async with live:
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = time.time()
        await eventually(lambda: asyncio.sleep(0, ran), DEAD + 8, "the job to run elsewhere")
        resumed = time.time()
        os.kill(proc.pid, signal.SIGCONT)

        async def anew() -> list[str]:
            return [p for p in await pools_of(redis, namespace, proc.pid) if p != frozen_id]

        [new_id] = await eventually(anew, 5, "the resumed process to register anew")
        await asyncio.sleep(1.0)
    steps = await records(redis, namespace, "progress")
    after = [s for s in steps if s["t"] > resumed]
    # at once: at most a step or two before the loss is noticed, none accepted
    assert len(after) <= 3, after
    assert all(not s["accepted"] for s in after), after
    assert not await records(redis, namespace, "intervals")  # it never ran to its end
    assert [r[0] for r in ran] == [job.id] and ran[0][1] > stopped
    keys = Keys(namespace)
    assert await redis.zscore(keys.pools, frozen_id) is None
    assert await redis.hget(keys.stats, "processed") == b"1"
    assert await redis.hget(keys.running, "progress") == b"0"
    output = proc.output()
    assert f"pool {frozen_id} lost its lease" in output
    assert f"pool {frozen_id} is now pool {new_id}" in output
    assert "done in" not in output


async def test_a_handler_holding_the_gil_within_the_bound_costs_nothing(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    """A hold shorter than ``dead_timeout - 1.5 * heartbeat_interval`` (0.625 s here), while a live
    pool's reaper is armed: the pool keeps its lease, the job runs once."""
    proc = procs.worker("timed:pool", redis_url, namespace)
    await wait_ready(redis, namespace, 1)
    [stalled_id] = await live_pools(redis, namespace)
    ran: list[tuple[str, float]] = []
    live = rescuer(redis_url, namespace, ran, names=("progress",))
    async with live:
        await asyncio.sleep(DEAD + 2 * HB)  # its reaper is armed
        async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
            job = await enqueuer.enqueue("gil", {"seconds": 0.5, "after": 0.5})
        assert job is not None

        async def finished() -> bool:
            return len(await records(redis, namespace, "intervals")) == 1

        await eventually(finished, 10, "the job to finish")
        assert sorted(await live_pools(redis, namespace)) == sorted([stalled_id, live.id])
        assert live.reaper is not None and live.reaper.requeued == 0
    assert len(await records(redis, namespace, "starts")) == 1
    assert await redis.hget(Keys(namespace).stats, "processed") == b"1"
    assert "lost its lease" not in proc.output()


async def test_a_handler_holding_the_gil_past_the_bound_is_dropped_on_resume(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    """A 3 s hold: the pool is taken for dead and the job runs on the live pool meanwhile (the
    documented limit); when the C call returns, the stalled pool finds its lease gone, cancels
    the handler at its next await, acknowledges nothing and carries on under a new id."""
    proc = procs.worker("timed:pool", redis_url, namespace)
    await wait_ready(redis, namespace, 1)
    [stalled_id] = await live_pools(redis, namespace)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("gil", {"seconds": 3.0, "after": 1.0})
    assert job is not None

    async def started() -> bool:
        return bool(await records(redis, namespace, "starts"))

    await eventually(started, 10, "the worker to start the job")
    ran: list[tuple[str, float]] = []
    live = rescuer(redis_url, namespace, ran)
    async with live:
        await eventually(lambda: asyncio.sleep(0, ran), 10, "the job to run on the live pool")

        async def anew() -> list[str]:
            return [p for p in await pools_of(redis, namespace, proc.pid) if p != stalled_id]

        await eventually(anew, 10, "the stalled process to register anew")
        await asyncio.sleep(1.5)  # its handler would have ended by now
    assert [r[0] for r in ran] == [job.id]
    assert await records(redis, namespace, "resumed")  # the C call ended ...
    assert not await records(redis, namespace, "intervals")  # ... and it went no further
    assert stalled_id not in await live_pools(redis, namespace)
    output = proc.output()
    assert "held the GIL" in output and f"pool {stalled_id} lost its lease" in output
    assert "done in" not in output
    keys = Keys(namespace)
    assert await redis.hget(keys.stats, "processed") == b"1"
    assert await redis.hget(keys.running, "gil") == b"0"
