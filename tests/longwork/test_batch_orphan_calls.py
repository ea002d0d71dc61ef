"""The orphan sweep (worker/orphans.py ``_reclaim_orphans``) gives back the jobs of a batch
fetch whose reply was lost in ``settle`` script calls of up to ``SETTLE_MAX`` jobs, each fenced
on the attempt the sweep read (it sent one call a job: a lost reply of a batch of 1,000 cost
1,000 round trips), as a stop requeues a batch (test_batch_stop.py); a call sent again answers
as the first and settles nothing twice. (A job fetched again meanwhile is left alone:
test_sweep_refetched.py.)"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.records import Reaped
from errands.store.scripts import Scripts, Settle, SettleRefused
from errands.store.settlecall import SETTLE_MAX
from errands.worker.reaper import BATCH, Reaper
from tests.support.commandstats import command_calls
from tests.support.invariants import assert_invariants

N = 2 * SETTLE_MAX + 7


def _script_calls(calls: dict[str, int]) -> int:
    return sum(calls.get(c, 0) for c in ("evalsha", "eval", "fcall"))


async def test_the_orphans_of_a_lost_batch_fetch_go_back_in_chunks(
    own_redis: Redis,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = own_redis
    keys = Keys(namespace)
    sent: list[int] = []
    again: list[bool | SettleRefused] = []
    report = Scripts.settle_report

    async def twice(
        self: Scripts, pool_id: str, settles: Sequence[Settle]
    ) -> list[bool | SettleRefused]:
        """Each call sent twice (its first reply lost): the second answers as the first,
        writing nothing (each job is on its queue once)."""
        sent.append(len(settles))
        await report(self, pool_id, settles)
        got = await report(self, pool_id, settles)
        again.extend(got)
        return got

    pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=3600.0)

    # (N jobs never fill a batch of N + 1, nor wait an hour: the pool's own batch loop never
    # fetches them, the test's fetches take them all; with max_size N it raced them)
    @pool.batch_job("big", max_size=N + 1, max_wait=3600)
    async def big(jobs: list[Job]) -> None:
        pass

    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("big", {"n": i}) for i in range(N)])
    ids = sorted(j.id for j in jobs)
    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.reclaim_interval = 3600.0
        # a batch fetch for this pool whose reply nobody read
        got = await Scripts(redis, keys).fetch(worker.pool_id, 0, N, [("big", 0)])
        assert got is not None and len(got) == N
        await redis.config_resetstat()
        with caplog.at_level(logging.WARNING, logger="errands.worker"):
            await worker._reclaim_orphans()
        calls = _script_calls(await command_calls(redis))
        assert worker.reclaimed == N
        # one WARNING for the sweep, not one a job (N lines)
        lines = [r.getMessage() for r in caplog.records if "unbeknownst" in r.getMessage()]
        assert len(lines) == 1, len(lines)
        assert lines[0].startswith(f"{N} job(s) were in progress here unbeknownst")
        assert lines[0].endswith(f"and {N - 5} more)")
        assert sorted(m.decode() for m in await redis.zrange(keys.queue("big"), 0, -1)) == ids
        # (the pool's own loops call a script now and then meanwhile: a call a job was N more)
        print(f"script calls of the sweep of {N} orphans: {calls}")
        assert calls < math.ceil(N / SETTLE_MAX) + 50, calls

        monkeypatch.setattr(Scripts, "settle_report", twice)
        got = await Scripts(redis, keys).fetch(worker.pool_id, 0, N, [("big", 0)])
        assert got is not None and len(got) == N
        await worker._reclaim_orphans()
        assert sent == [SETTLE_MAX, SETTLE_MAX, N - 2 * SETTLE_MAX]
        assert len(again) == N and all(o is True for o in again)  # (answered as the first)
        assert worker.reclaimed == 2 * N  # (each counted once: N of the first sweep, N here)
        assert sorted(m.decode() for m in await redis.zrange(keys.queue("big"), 0, -1)) == ids
        await assert_invariants(redis, namespace)
    finally:
        await pool.stop()


async def test_the_batch_jobs_of_a_dead_pool_go_back_in_chunks_of_reap_calls(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reaper takes a dead pool's in-progress entries back BATCH (500) a reap.lua call,
    batch jobs as any (docs/long-jobs.md said one by one): 1,007 in 3 calls."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("big", {"n": i}) for i in range(N)])
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    got = await scripts.fetch("dead", 0, N, [("big", 0)])  # (as the batch loop fetches)
    assert got is not None and len(got) == N
    await redis.zadd(keys.pools, {"dead": 1})  # (its last beat long ago)
    reaps: list[int] = []
    reap = scripts.reap

    async def counted(pool_id: str, *args: Any, **kwargs: Any) -> Reaped:
        reaps.append(len(args[4]))  # (its members)
        return await reap(pool_id, *args, **kwargs)

    monkeypatch.setattr(scripts, "reap", counted)
    reaper = Reaper(scripts, SystemClock(), "me", None, 30.0, 1.0, max_recoveries=3)
    assert await reaper.reap_once() == N
    assert reaps == [BATCH, BATCH, N - 2 * BATCH]
    waiting = sorted(m.decode() for m in await redis.zrange(keys.queue("big"), 0, -1))
    assert waiting == sorted(j.id for j in jobs)
    await assert_invariants(redis, namespace)
