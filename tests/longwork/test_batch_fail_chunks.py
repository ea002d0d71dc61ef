"""A batch of 2*SETTLE_MAX+7 jobs of which half fail (some for good: max_fails 2 with one
previous failure), its failures settled in chunks of SETTLE_MAX jobs, one chunk's reply lost
after the call ran (the chunk is sent again): each failure is counted once (stats, the error
attempt, the envelope's fails), the retried jobs are on the retry set, the others dead."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest
from redis.asyncio import Redis

from errands import BatchOutcome, Enqueuer, Job, NonRetryableError, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle, SettleRefused
from errands.store.settlecall import SETTLE_MAX
from tests.support.invariants import assert_invariants

N = 2 * SETTLE_MAX + 7


async def test_a_batch_failures_settled_in_chunks_count_once_despite_a_lost_reply(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []
    report = Scripts.settle_report

    async def faulty(
        self: Scripts, pool_id: str, settles: Sequence[Settle]
    ) -> list[bool | SettleRefused]:
        calls.append((settles[0].mode, len(settles)))
        if len(calls) == 2:
            await report(self, pool_id, settles)
            raise TimeoutError("reply lost")
        return await report(self, pool_id, settles)

    monkeypatch.setattr(Scripts, "settle_report", faulty)
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=5)
    done = asyncio.Event()

    @pool.batch_job("big", max_size=N, max_wait=0.01, max_fails=3)
    async def big(jobs: list[Job]) -> BatchOutcome:
        done.set()
        failed: dict[str, Exception] = {}
        for j in jobs:
            n = j.args["n"]
            if n % 3 == 0:
                failed[j.id] = ValueError(f"v{n}")
            elif n % 3 == 1:
                failed[j.id] = NonRetryableError(f"nr{n}")
        return BatchOutcome(failed=failed)

    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("big", {"n": i}) for i in range(N)])
    by_n = {j.args["n"]: j.id for j in jobs}
    await pool.start()
    await asyncio.wait_for(done.wait(), 20)
    await asyncio.sleep(2)
    await pool.stop()
    print(calls)
    st = {k.decode(): int(v) for k, v in (await redis.hgetall(keys.stats)).items()}
    print(st)
    retry = {m.decode() for m in await redis.zrange(keys.retry("big"), 0, -1)}
    deadset = {m.decode() for m in await redis.zrange(keys.dead, 0, -1)}
    want_retry = {by_n[n] for n in range(N) if n % 3 == 0}
    want_dead = {by_n[n] for n in range(N) if n % 3 == 1}
    assert retry == want_retry and deadset == want_dead
    errs = {k.decode(): orjson.loads(v) for k, v in (await redis.hgetall(keys.errors)).items()}
    assert {i: errs[i]["attempt"] for i in want_retry} == dict.fromkeys(want_retry, 1)
    for i in want_retry:
        env = orjson.loads(await redis.hget(keys.jobs, i) or b"{}")
        assert env.get("f") == 1, env
    assert st.get("failed", 0) == len(want_retry), st
    assert st.get("dead", 0) == len(want_dead), st
    await assert_invariants(redis, namespace, stopped=True)
