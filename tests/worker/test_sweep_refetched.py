"""The orphan sweep (worker/orphans.py ``_reclaim_orphans``) and a batch job fetched again
while it sweeps (found by review, hunt-long): the sweep read the pool's in-progress set once,
decided what its tasks held, then awaited one requeue after another, each fenced by the pool
alone (token '*': any attempt of this pool). A batch job whose batch ended (failed, retried at
once) after the read, fetched again by its batch loop (beside the sweep) while the sweep
requeued an earlier orphan, was put back on its queue while its second batch ran it: twice at
once. The sweep now reads the jobs' attempts with the set and requeues each fenced by the
attempt it read (settle.lua, token '*<attempt>'), and checks again right before each call
(of up to SETTLE_MAX requeues; here one job a call) that no task holds its jobs. The steps are
driven one by one: the read, the batch ending, the job fetched again, the requeues."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.records import Acked, Fetched, Settle
from errands.store.scripts import Scripts
from errands.worker import orphans
from errands.worker.batching import _Batch
from tests.support.fetched import fetch_none


def _ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.parametrize("second", ["held", "in flight"])
async def test_a_batch_job_fetched_again_during_the_sweep_is_not_requeued(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch, second: str
) -> None:
    """``second``: the job's second batch holds it when the sweep reaches it ("held": the
    sweep's check right before the requeue sees it), or the second fetch's reply is still on
    its way ("in flight": only the attempt fence in settle.lua tells)."""
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=3600.0)

    @pool.job("plain")
    async def plain(job: Job) -> None:
        pass

    # (never due by itself: the test fetches its batches)
    @pool.batch_job("bx", max_size=100, max_wait=timedelta(hours=1))
    async def bx(jobs: list[Job]) -> None:
        pass

    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.reclaim_interval = 3600.0
        fetch_none(worker)  # (the orphan stays one)
        pid, scripts = worker.pool_id, Scripts(redis, keys)
        async with Enqueuer(redis, namespace=namespace) as enq:
            await enq.enqueue("plain", {}, job_id="a-orphan")  # (swept first: its member sorts
            await enq.enqueue("bx", {}, job_id="b-batch")  # first at the same score)
        (orphan,) = await scripts.fetch(pid, 0, 5, [("plain", 0)]) or []  # its reply lost
        (first,) = await scripts.fetch(pid, 0, 5, [("bx", 0)]) or []
        batch = _Batch()  # the job's first batch holds it
        batch.ids.add(first.id)
        worker._batches.append(batch)

        read = orphans.in_progress_and_handoffs

        async def read_then_batch_fails(*args: Any) -> Any:
            got = await read(*args)
            # the first batch ends (failed: retried at once) before the sweep looks at holders
            retry = Settle(first.id, "bx", "retry", keys.retry("bx"), _ms(), 1, history=False)
            retry.token = first.token
            assert await scripts.settle_report(pid, [retry]) == [True]
            worker._batches.remove(batch)
            return got

        monkeypatch.setattr(orphans, "in_progress_and_handoffs", read_then_batch_fails)
        monkeypatch.setattr(orphans, "settle_chunks", lambda _k, _p, ss: [[s] for s in ss])
        settle = worker.scripts.settle_report
        sent: list[str] = []

        async def refetched_during_the_first(pool_id: str, settles: list[Settle]) -> Any:
            sent.extend(s.id for s in settles)
            if settles[0].id == orphan.id:  # meanwhile the batch loop fetches the job again
                await scripts.promote(["bx"], _ms(), 100)
                (again,) = await scripts.fetch(pid, 0, 5, [("bx", 0)]) or []
                assert again.id == first.id and again.token != first.token
                if second == "held":
                    worker._batches.append(_Batch())
                    worker._batches[-1].ids.add(again.id)
            return await settle(pool_id, settles)

        worker.scripts.settle_report = refetched_during_the_first  # type: ignore[method-assign]
        await worker._reclaim_orphans()

        assert worker.reclaimed == 1  # the orphan only
        assert await redis.zscore(keys.queue("plain"), orphan.id) is not None
        assert await redis.zscore(keys.queue("bx"), first.id) is None  # not requeued
        assert await redis.zscore(keys.in_progress(pid), f"{first.id}:bx") is not None
        att = await redis.hget(keys.attempts, first.id)
        assert att is not None and att.decode() != f"{pid}:{first.token}"
        assert sent == ([orphan.id] if second == "held" else [orphan.id, first.id])
        worker._batches.clear()
    finally:
        await pool.stop()


async def _one_fetched(redis: Redis, namespace: str) -> tuple[Keys, Scripts, Fetched]:
    """Pool p1 registered, job "j" of name "w" enqueued and fetched by it (the fetched job)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace) as enq:
        await enq.enqueue("w", {}, job_id="j")
    (got,) = await scripts.fetch("p1", 0, 1, [("w", 0)]) or []
    return keys, scripts, got


async def test_an_orphan_requeue_is_fenced_by_the_attempt_it_names(
    redis: Redis, namespace: str
) -> None:
    """settle.lua, token '*<attempt>': the job fetched again by its pool (another attempt) is
    left alone; at the attempt named it is requeued, and the re-send answers 1, writing
    nothing."""
    keys, scripts, first = await _one_fetched(redis, namespace)
    retry = Settle("j", "w", "retry", keys.retry("w"), _ms(), 1, history=False, token=first.token)
    assert await scripts.settle_report("p1", [retry]) == [True]
    await scripts.promote(["w"], _ms(), 100)
    (again,) = await scripts.fetch("p1", 0, 1, [("w", 0)]) or []
    stale = Settle("j", "w", "requeue", keys.queue("w"), _ms(), 1, history=False)
    stale.token = "*" + first.token
    assert await scripts.settle_report("p1", [stale]) == [False]
    assert await redis.zscore(keys.in_progress("p1"), "j:w") is not None
    assert await redis.zscore(keys.queue("w"), "j") is None
    current = Settle("j", "w", "requeue", keys.queue("w"), _ms(), 1, history=False)
    current.token = "*" + again.token
    assert await scripts.settle_report("p1", [current]) == [True]
    assert await redis.zscore(keys.in_progress("p1"), "j:w") is None
    assert await redis.zscore(keys.queue("w"), "j") is not None
    assert await redis.hget(keys.attempts, "j") is None
    before = await redis.zrange(keys.queue("w"), 0, -1, withscores=True)
    assert await scripts.settle_report("p1", [current]) == [True]  # a re-send
    assert await redis.zrange(keys.queue("w"), 0, -1, withscores=True) == before


async def test_an_orphan_with_no_attempt_recorded_is_requeued_only_while_none_is(
    redis: Redis, namespace: str
) -> None:
    """An entry whose job has no attempt record (no script leaves one: lost data) was skipped
    by the sweep, its slot taken until the pool died. Token '*-': requeued while no attempt is
    recorded; a job fetched again since (an attempt) is left alone; a re-send writes nothing."""
    keys, scripts, _ = await _one_fetched(redis, namespace)
    await redis.hdel(keys.attempts, "j")
    raw, _, tokens = await orphans.in_progress_and_handoffs(redis, keys, "p1")
    assert raw == [b"j:w"] and tokens == {"j": "-"}
    orphan = Settle("j", "w", "requeue", keys.queue("w"), _ms(), 1, history=False)
    orphan.token = "*-"
    await redis.hset(keys.attempts, "j", "p1:99")  # as if fetched again meanwhile
    assert await scripts.settle_report("p1", [orphan]) == [False]
    assert await redis.zscore(keys.in_progress("p1"), "j:w") is not None
    await redis.hdel(keys.attempts, "j")
    assert await scripts.settle_report("p1", [orphan]) == [True]
    assert await redis.zscore(keys.in_progress("p1"), "j:w") is None
    assert await redis.zscore(keys.queue("w"), "j") is not None
    assert await redis.hget(keys.running, "w") == b"0"
    before = await redis.zrange(keys.queue("w"), 0, -1, withscores=True)
    assert await scripts.settle_report("p1", [orphan]) == [True]  # a re-send
    assert await redis.zrange(keys.queue("w"), 0, -1, withscores=True) == before


@pytest.mark.parametrize("ttl_ms", [0, 60_000, 86_400_000])
async def test_an_orphan_acked_meanwhile_is_not_reported_requeued(
    redis: Redis, namespace: str, ttl_ms: int
) -> None:
    """The sweep read an orphan's attempt, then its ack went through (a reply that was late,
    not lost): the requeue, fenced by that attempt, answers 0 (nothing requeued), whether the
    ack left a tombstone (no result record, or one shorter than a tombstone) or only its result
    record (kept at least as long: no tombstone). The third answered 1, so the sweep logged and
    counted a requeue that did not happen."""
    keys, scripts, got = await _one_fetched(redis, namespace)
    done = Acked("j", "w", b"null", _ms(), ttl_ms, 1, got.token)
    assert await scripts.ack("p1", [done], False, _ms(), history=True) == []
    tombstone = await redis.zscore(keys.ended, "j")
    assert (tombstone is None) == (ttl_ms >= 3_600_000)  # (lib/jobstate.lua's TOMB_MS)
    sweep = Settle("j", "w", "requeue", keys.queue("w"), _ms(), 1, history=False)
    sweep.token = "*" + got.token
    assert await scripts.settle_report("p1", [sweep]) == [False]
    assert await redis.zscore(keys.queue("w"), "j") is None
    assert await redis.hget(keys.jobs, "j") is None
