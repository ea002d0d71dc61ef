"""Issue 12: every script raises only before its first write, does bounded work per call, and
acts on an attempt only: a job's outcome is written by the attempt that ran it, or not at all.

The in-progress state is written directly (as a fetch leaves it), so that each test exercises
exactly one script."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer, Job, WorkerPool
from errands.admin.records import read_done
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts, Settle
from tests.support.client_env import until
from tests.support.fetched import POOL, running_job


async def test_settle_with_an_unknown_mode_writes_nothing(redis: Redis, namespace: str) -> None:
    """It used to take the job out of the in-progress set, return its slot, and only then fail:
    the job was in no set and ran never again."""
    keys, job_id = await running_job(redis, namespace)
    scripts = Scripts(redis, keys)
    settle = Settle(job_id, "work", "bogus", keys.queue("work"), 1, 1)
    with pytest.raises(ResponseError, match="unknown settle mode"):
        await scripts.settle(POOL, settle)
    assert await redis.zscore(keys.in_progress(POOL), f"{job_id}:work") is not None
    assert await redis.hget(keys.running, "work") == b"1"
    assert await redis.hexists(keys.jobs, job_id)


async def test_move_with_an_unknown_mode_writes_nothing(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work", delay=60)
    assert job is not None
    scripts = Scripts(redis, keys)
    with pytest.raises(ResponseError, match="unknown move mode"):
        await scripts.move(job.id, "work", keys.scheduled("work"), "bogus")
    assert await redis.zscore(keys.scheduled("work"), job.id) is not None


async def test_an_outcome_is_written_by_its_own_attempt_only(redis: Redis, namespace: str) -> None:
    """A pool that lost a job and fetched it again holds two attempts of it: the outcome of the
    first (finished late) must not finish the second, which still runs."""
    keys, job_id = await running_job(redis, namespace, token="2")  # attempt 2 runs now
    scripts = Scripts(redis, keys)
    late = Acked(job_id, "work", b'"old"', 1, 60_000, 1, token="1")
    assert await scripts.ack(POOL, [late], False, 2, True) == [job_id]  # refused
    assert await redis.zscore(keys.in_progress(POOL), f"{job_id}:work") is not None
    assert await redis.hget(keys.running, "work") == b"1"
    assert await redis.get(keys.done(job_id)) is None
    stale = Settle(job_id, "work", "retry", keys.retry("work"), 2, 1, token="1")
    assert not await scripts.settle(POOL, stale)
    assert not await scripts.checkin(job_id, "work", b'{"message":"x"}', f"{POOL}:1")
    assert await redis.hget(keys.checkins, job_id) is None
    current = Acked(job_id, "work", b'"new"', 1, 60_000, 2, token="2")
    assert await scripts.ack(POOL, [current], False, 2, True) == []
    assert await redis.hget(keys.running, "work") == b"0"
    assert (await read_done(redis, keys, job_id) or {}).get("result") == "new"


async def test_a_suspect_storm_at_the_queue_head_loses_nothing(
    redis: Redis, namespace: str
) -> None:
    """Defect 1: 5,000 jobs recovered from dead pools (suspects) at the head of a queue, fetched
    by a pool that already runs a suspect. fetch.lua popped them all and pushed them back with
    ``ZADD ... unpack(skipped)``: "too many results to unpack" after the pops, and the 5,000
    jobs were in no set any more."""
    keys = Keys(namespace)
    enqueuer = Enqueuer(redis, namespace=namespace)
    jobs = await enqueuer.enqueue_many([("work", {"i": i}) for i in range(5001)])
    ids = [job.id for job in jobs]
    # each taken back from a dead pool once: with max_recoveries=2, a suspect (runs alone)
    await redis.hset(keys.recoveries, mapping=dict.fromkeys(ids, 1))  # type: ignore[arg-type]
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, max_recoveries=2)
    started: list[str] = []
    errors: list[BaseException] = []

    @pool.job("work")
    async def work(job: Job, i: int) -> None:
        started.append(job.id)
        await until(lambda: False, timeout=30)  # holds its slot (and the suspect) to the end

    async with pool:
        assert pool.worker is not None
        await until(lambda: started, timeout=5)
        for _ in range(3):  # fetches that find only suspects it may not take now
            pool.worker.wake.set()
            try:
                await pool.worker.scripts.fetch(
                    pool.id, 0, 4, [("work", 0)], 1, suspects=1, dead_timeout_ms=60_000
                )
            except ResponseError as exc:  # pragma: no cover - the defect
                errors.append(exc)
        queued = await redis.zcard(keys.queue("work"))
        running = await redis.zcard(keys.in_progress(pool.id))
        assert (errors, started, queued + running) == ([], started[:1], 5001)
        assert await redis.hget(keys.running, "work") == b"1"
        await pool.stop(grace=0)


async def test_tombstones_stay_bounded(redis: Redis, namespace: str) -> None:
    """Every ended job leaves a tombstone (a re-sent enqueue of its id stores nothing), at
    most 100,000 and for at least an hour: each call drops at least as many as it adds."""
    keys = Keys(namespace)
    now_ms = int((await redis.time())[0]) * 1000
    # 100,000 recent tombstones and 50 older than an hour
    await redis.zadd(keys.ended, {f"old{i}": now_ms - 4_000_000 for i in range(50)})
    for start in range(0, 100_000, 20_000):
        await redis.zadd(keys.ended, {f"t{i}": now_ms for i in range(start, start + 20_000)})
    for n in range(3):
        _keys, job_id = await running_job(redis, namespace, token=str(n))
        done = Acked(job_id, "work", b"null", 1, 0, 1, token=str(n))
        assert await Scripts(redis, keys).ack(POOL, [done], False, 2, False) == []
        assert await redis.zscore(keys.ended, job_id) is not None
    assert await redis.zcard(keys.ended) <= 100_000
    assert await redis.zscore(keys.ended, "old0") is None
