"""A pool's stop with the grace over while a large batch runs: its jobs go back on their queue in
``settle`` script calls of up to ``SETTLE_MAX`` jobs each (they went back one call a job: a
batch of 10,000 took 10,000 round trips, and the stop could overrun its grace), each job back
on its queue once, run again by the next pool."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Sequence

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle, SettleRefused
from errands.store.settlecall import SETTLE_MAX
from tests.support.invariants import assert_invariants

N = 2 * SETTLE_MAX + 7


async def test_a_stopped_batch_goes_back_in_chunks_of_settle_calls(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []
    report = Scripts.settle_report

    async def counted(
        self: Scripts, pool_id: str, settles: Sequence[Settle]
    ) -> list[bool | SettleRefused]:
        calls.append((settles[0].mode, len(settles)))
        return await report(self, pool_id, settles)

    monkeypatch.setattr(Scripts, "settle_report", counted)
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=0.2)
    entered = asyncio.Event()

    @pool.batch_job("big", max_size=N, max_wait=60)
    async def big(jobs: list[Job]) -> None:
        entered.set()
        await asyncio.sleep(60)

    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("big", {"n": i}) for i in range(N)])
    ids = {j.id for j in jobs}
    await pool.start()
    await asyncio.wait_for(entered.wait(), 20)
    await pool.stop()
    assert [mode for mode, _n in calls] == ["requeue"] * math.ceil(N / SETTLE_MAX), calls[:5]
    assert sum(n for _mode, n in calls) == N and max(n for _m, n in calls) <= SETTLE_MAX
    waiting = [m.decode() for m in await redis.zrange(keys.queue("big"), 0, -1)]
    assert len(waiting) == N and set(waiting) == ids
    assert b"failed" not in await redis.hgetall(keys.stats)
    await assert_invariants(redis, namespace)

    await rerun_each_once(redis, namespace, ids)
    assert int(await redis.hget(keys.stats, "processed") or 0) == N
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def rerun_each_once(redis: Redis, namespace: str, ids: set[str]) -> None:
    """A second pool drains the queue of "big": each of ``ids`` runs there, once."""
    again = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=5.0)
    ran: Counter[str] = Counter()

    @again.batch_job("big", max_size=len(ids), max_wait=0.01)
    async def rerun(jobs: list[Job]) -> None:
        ran.update(j.id for j in jobs)

    await again.drain(timeout=30)
    assert set(ran) == ids and set(ran.values()) == {1}
