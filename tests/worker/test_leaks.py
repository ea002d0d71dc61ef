"""Issue 12, defect 8: once a job's life ends and its retention passes, no key or field of it
remains: recovery counters, check-ins, cancel requests, attempts, unique entries. What stays is
documented: the dead or cancelled entry until trimmed, the result record and history for their
retention, and a tombstone (``ended``) for at least an hour."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, JobStatus, WorkerPool
from errands.admin.jobinfo import JobInfo
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.client_env import traces

DEAD_POOL = "deadpool00000001"


def pool(redis: Redis, namespace: str, **options: Any) -> WorkerPool:
    p = WorkerPool(redis, namespace=namespace, heartbeat_interval=0.2, dead_timeout=0.6, **options)

    @p.job("work")
    async def work(job: Job) -> None: ...

    return p


async def left_behind(redis: Redis, namespace: str, job_id: str) -> list[str]:
    """The keys still mentioning the job, but its tombstone."""
    found = await traces(redis, namespace, job_id)
    return [k for k in found if k != Keys(namespace).ended]


async def test_a_cancelled_job_trimmed_away_leaves_only_its_tombstone(
    redis: Redis, namespace: str
) -> None:
    """Cancelling a waiting job kept its recovery counter (fetches kept scanning for suspects
    because of it), and trimming the cancelled set kept it too."""
    keys = Keys(namespace)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work", delay=60)
    assert job is not None
    await redis.hset(keys.recoveries, job.id, 1)  # it had been taken back from a dead pool
    client = Client(redis, namespace=namespace)
    assert await client.cancel(job.id) == "cancelled"
    assert await redis.hget(keys.recoveries, job.id) is None
    await redis.delete(keys.done(job.id))  # (its record's TTL passed)
    p = pool(redis, namespace, dead_max_jobs=0)
    async with p:
        assert p.requeuer is not None
        await p.requeuer.collect_garbage()
    # and its history record (a cancel is recorded since issue 14, kept like any attempt's)
    history = {keys.history_data, keys.history_of("work")}  # (no global index: issue 15)
    assert set(await left_behind(redis, namespace, job.id)) == history
    assert await redis.zscore(keys.ended, job.id) is not None


async def test_a_job_taken_back_or_buried_by_a_reaper_keeps_no_check_in(
    redis: Redis, namespace: str
) -> None:
    """The reaper left the check-in (and cancel request) of the jobs it requeued, buried as
    poison or cancelled; a poison burial did not trim the dead set either."""
    keys = Keys(namespace)
    jobs = await Enqueuer(redis, namespace=namespace).enqueue_many([("work", {})] * 3)
    await redis.zadd(keys.pools, {DEAD_POOL: 1})
    for i, job in enumerate(jobs):
        assert await redis.zrem(keys.queue("work"), job.id) == 1
        await redis.zadd(keys.in_progress(DEAD_POOL), {f"{job.id}:work": 1})
        await redis.hincrby(keys.running, "work", 1)
        await redis.hset(keys.checkins, job.id, b'{"message":"half way"}')
        await redis.hset(keys.recoveries, job.id, 2 if i < 2 else 0)  # 2 of 3: poison now
    p = pool(redis, namespace, max_recoveries=3, dead_max_jobs=1)
    async with p:
        assert p.reaper is not None and p.requeuer is not None
        await p.reaper.reap_pool(DEAD_POOL)
        await p.requeuer.collect_garbage()
        await p.drain(timeout=5)
    assert await redis.hlen(keys.checkins) == 0
    assert await redis.zcard(keys.dead) == 1  # trimmed to dead_max_jobs
    trimmed = [j for j in jobs[:2] if await redis.zscore(keys.dead, j.id) is None]
    assert len(trimmed) == 1  # (jobs[2] was requeued and ran)
    # its history stays (a burial is recorded since issue 14, kept like any attempt's record)
    history = {keys.history_data, keys.history_of("work")}  # (no global index: issue 15)
    assert set(await left_behind(redis, namespace, trimmed[0].id)) == history
    assert await redis.hget(keys.running, "work") == b"0"


async def test_destroying_a_job_that_just_ended_leaves_no_cancel_request(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Client.destroy read "running" and then stored the request in a second command: when the
    job ended in between, the request stayed for ever."""
    keys = Keys(namespace)
    p = pool(redis, namespace)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work")
    assert job is not None
    async with p:
        await p.drain(timeout=5)  # it ran and ended
    client = Client(redis, namespace=namespace)
    stale = JobInfo(id=job.id, name="work", status=JobStatus.IN_PROGRESS, pool_id=p.id)
    reads = iter([stale, stale, None])  # what destroy read, as the job was still running

    async def job_info(self: Client, job_id: str) -> JobInfo | None:
        return next(reads)

    monkeypatch.setattr(Client, "job", job_info)
    assert await client.destroy(job.id)
    assert await redis.hget(keys.cancel_requests, job.id) is None


async def test_a_cancel_request_is_stored_only_for_a_running_attempt(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work", delay=60)
    assert job is not None
    scripts = Scripts(redis, keys)
    assert not await scripts.request_cancel(job.id, "destroy")
    assert await redis.hlen(keys.cancel_requests) == 0
