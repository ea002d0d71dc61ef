"""A job fetched ahead of a free slot and given back before it started (worker/lookahead.py:
every slot held by long jobs, or the pool stopping) never started: it keeps the hold its mode
gives a waiting job. Held until started (or debounced), the fetch freed its key: the give-back
takes it again, so a duplicate meanwhile is dropped (debounce: replaces it) instead of storing a
second job (before, the duplicate was stored: two jobs ran, the debounced one with old args).
Held until finished, it keeps its key, marked started by the fetch: a rerun_latest duplicate
waits as its rerun (runs after it), as for a job stopped by a graceful shutdown."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer, Job, WorkerPool
from errands.clock import SystemClock
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.records import Settle
from errands.store.scripts import Scripts
from errands.worker.reaper import Reaper
from errands.worker.settler import Settler
from tests.support.fetched import fetch_none
from tests.support.invariants import assert_invariants


async def _fetched_and_given_back(
    redis: Redis, namespace: str, enqueuer: Enqueuer, dedup: Dedup
) -> tuple[Scripts, str]:
    """One job of "sync" enqueued with ``dedup``, fetched by pool p and given back unstarted."""
    first = await enqueuer.enqueue("sync", {"v": 1}, dedup=dedup)
    assert first is not None and first.dedup is not None and first.dedup.enqueued
    scripts = Scripts(redis, Keys(namespace))
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p", 1, 1, [("sync", 0)])
    assert [f.id for f in got] == [first.id]
    settler = Settler(scripts, "p", SystemClock(), JSONSerializer(), dead_max_jobs=10,
                      dead_max_age=60.0, history=False)  # fmt: skip
    await settler.requeue_fetched(got[0], "sync")  # held ahead, never started: back
    await assert_invariants(redis, namespace)
    return scripts, first.id


@pytest.mark.parametrize("dedup", [Dedup("k"), Dedup("k", until="finished")], ids=["s", "f"])
async def test_a_duplicate_of_a_job_given_back_is_dropped(
    redis: Redis, namespace: str, enqueuer: Enqueuer, dedup: Dedup
) -> None:
    scripts, holder = await _fetched_and_given_back(redis, namespace, enqueuer, dedup)
    again = await enqueuer.enqueue("sync", {"v": 2}, dedup=dedup)
    assert again is not None and again.dedup is not None
    assert (again.dedup.status, again.dedup.holder) == ("dropped", holder)
    assert await redis.hlen(Keys(namespace).jobs) == 1
    got = await scripts.fetch("p", 1, 1, [("sync", 0)])  # it starts again: held as before
    assert [f.id for f in got] == [holder]
    await assert_invariants(redis, namespace)


async def test_a_debounce_duplicate_of_a_job_given_back_replaces_its_envelope(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    dedup = Dedup("k", debounce=True)
    _scripts, holder = await _fetched_and_given_back(redis, namespace, enqueuer, dedup)
    again = await enqueuer.enqueue("sync", {"v": 2}, delay=30, dedup=dedup)
    assert again is not None and again.dedup is not None
    assert (again.dedup.status, again.dedup.holder, again.id) == ("replaced", holder, holder)
    keys = Keys(namespace)
    assert await redis.hlen(keys.jobs) == 1
    assert b'"v":2' in (await redis.hget(keys.jobs, holder) or b"")
    assert await redis.zscore(keys.queue("sync"), holder) is None  # pushed back: scheduled
    assert await redis.zscore(keys.scheduled("sync"), holder) is not None
    await assert_invariants(redis, namespace)


async def test_a_rerun_latest_duplicate_of_a_job_given_back_waits_as_its_rerun(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    dedup = Dedup("k", until="finished", rerun_latest=True)
    _scripts, holder = await _fetched_and_given_back(redis, namespace, enqueuer, dedup)
    again = await enqueuer.enqueue("sync", {"v": 2}, dedup=dedup)
    assert again is not None and again.dedup is not None
    assert (again.dedup.status, again.dedup.holder) == ("rerun_queued", holder)
    assert again.id != holder
    await assert_invariants(redis, namespace)


async def test_a_retry_given_back_takes_no_key(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """Held until started, a job's key is freed by its first start for good: its retry, fetched
    ahead and given back, waits without it (a duplicate is stored)."""
    first = await enqueuer.enqueue("sync", {"v": 1}, dedup=Dedup("k"))
    assert first is not None
    scripts = Scripts(redis, Keys(namespace))
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    settler = Settler(scripts, "p", SystemClock(), JSONSerializer(), dead_max_jobs=10,
                      dead_max_age=60.0, history=False)  # fmt: skip
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    later = Settle(item.id, "sync", "later", Keys(namespace).scheduled("sync"), 0, 1,
                   score_ms=1, token=item.token)  # fmt: skip
    assert await scripts.settle("p", later)  # snoozed: it waits again, after its start
    await assert_invariants(redis, namespace)
    assert await scripts.promote(["sync"], 10**13, 10) == (1, -1)
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    await settler.requeue_fetched(item, "sync")
    again = await enqueuer.enqueue("sync", {"v": 2}, dedup=Dedup("k"))
    assert again is not None and again.dedup is not None and again.dedup.enqueued
    await assert_invariants(redis, namespace)


async def test_a_job_taken_back_from_a_dead_pool_waits_without_its_key(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """Held until started: a job the reaper takes back from a dead pool may have started there,
    so it waits without its key (docs/dedup.md), its fetch mark gone with it."""
    first = await enqueuer.enqueue("sync", {"v": 1}, dedup=Dedup("k"))
    assert first is not None
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    assert [f.id for f in await scripts.fetch("dead", 0, 1, [("sync", 0)])] == [first.id]
    assert await redis.hget(keys.dedup_of_job, first.id) == b"Ssync:k"  # fetched: key freed
    await redis.zadd(keys.pools, {"dead": 1})  # its heartbeats stopped long ago
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    assert await reaper.reap_once() == 1
    assert await redis.zscore(keys.queue("sync"), first.id) is not None
    assert not await redis.hexists(keys.dedup_of_job, first.id)
    await assert_invariants(redis, namespace)
    again = await enqueuer.enqueue("sync", {"v": 2}, dedup=Dedup("k"))
    assert again is not None and again.dedup is not None and again.dedup.enqueued
    await assert_invariants(redis, namespace)


async def test_an_orphan_swept_back_takes_its_key_again(redis: Redis, namespace: str) -> None:
    """A fetch whose reply was lost (worker/orphans.py) left a job no task of the pool holds;
    it never started: the orphan sweep puts it back holding its until-started key again, so a
    duplicate is dropped (it was stored: two jobs of the key)."""
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=3600.0)

    @pool.job("sync")
    async def sync(job: Job, v: int) -> None:
        pass

    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.reclaim_interval = 3600.0
        fetch_none(worker)  # (the orphan stays one)
        async with Enqueuer(redis, namespace=namespace) as enq:
            first = await enq.enqueue("sync", {"v": 1}, dedup=Dedup("k"))
            assert first is not None
            scripts = Scripts(redis, keys)
            (orphan,) = await scripts.fetch(worker.pool_id, 0, 5, [("sync", 0)]) or []  # lost
            assert orphan.id == first.id
            await worker._reclaim_orphans()
            assert worker.reclaimed == 1
            assert await redis.zscore(keys.queue("sync"), first.id) is not None
            await assert_invariants(redis, namespace)
            again = await enq.enqueue("sync", {"v": 2}, dedup=Dedup("k"))
            assert again is not None and again.dedup is not None
            assert (again.dedup.status, again.dedup.holder) == ("dropped", first.id)
    finally:
        await pool.stop()
