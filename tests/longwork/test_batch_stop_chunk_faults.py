"""A stopped batch goes back on its queue in chunks of settle calls (SETTLE_MAX jobs each). With
one chunk's reply lost after the call ran (the chunk is sent again) and one chunk answered with
an error reply before it ran: each job is back on the queue once, in the batch's order, and no
'not settled' warning is logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle, SettleRefused
from errands.store.settlecall import SETTLE_MAX
from tests.longwork.test_batch_stop import rerun_each_once
from tests.support.invariants import assert_invariants

N = 3 * SETTLE_MAX + 7


async def test_a_stopped_batch_requeued_in_chunks_survives_a_lost_reply_and_an_error_reply(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "errands")
    calls: list[tuple[str, int, str]] = []
    report = Scripts.settle_report

    async def faulty(
        self: Scripts, pool_id: str, settles: Sequence[Settle]
    ) -> list[bool | SettleRefused]:
        n = len(calls)
        if settles[0].mode != "requeue":
            return await report(self, pool_id, settles)
        if n == 1:
            calls.append(("lost", len(settles), settles[0].id))
            await report(self, pool_id, settles)
            raise TimeoutError("reply lost")
        if n == 3:
            calls.append(("error", len(settles), settles[0].id))
            raise ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
        calls.append(("ok", len(settles), settles[0].id))
        return await report(self, pool_id, settles)

    monkeypatch.setattr(Scripts, "settle_report", faulty)
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=0.2)
    entered = asyncio.Event()
    order: list[str] = []

    @pool.batch_job("big", max_size=N, max_wait=60)
    async def big(jobs: list[Job]) -> None:
        order.extend(j.id for j in jobs)
        entered.set()
        await asyncio.sleep(60)

    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("big", {"n": i}) for i in range(N)])
    ids = {j.id for j in jobs}
    await pool.start()
    await asyncio.wait_for(entered.wait(), 20)
    await pool.stop()
    waiting = [m.decode() for m in await redis.zrange(keys.queue("big"), 0, -1)]
    assert len(waiting) == N and set(waiting) == ids
    assert waiting == order, "queue order differs from the batch's order"
    warns = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warns if "not settled" in w], warns[:3]
    await assert_invariants(redis, namespace)

    await rerun_each_once(redis, namespace, ids)
    await assert_invariants(redis, namespace, drained=True, stopped=True)
