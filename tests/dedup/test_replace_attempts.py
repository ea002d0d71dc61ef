"""A waiting job that takes a duplicate enqueue's envelope (debounce, rerun_latest: ``replaced``,
or a waiting rerun's ``rerun_queued``) keeps the count of its attempts, as it keeps its edits
(lib/dedup.lua dedup_replace): a job run again by hand (``retry_dead_job``, ``reschedule``)
counts its earlier attempts in its envelope (``h``, and ``f`` its failures); the duplicate's
envelope, made by an enqueue, counts none, and the job's next run was numbered 1 again, its
record overwriting the first attempt's (docs/client.md, History: no attempt overwrites an
earlier one)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer, Job, WorkerPool
from tests.support.invariants import assert_invariants

from .test_rerun_by_hand import MODES, dead_job
from .test_rerun_by_hand_latest import D, _pool, _started_holder


async def _run(redis_url: str, namespace: str) -> list[int]:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    seen: list[int] = []

    @pool.job("x")
    async def run(job: Job, a: int) -> None:
        seen.append(a)

    async with pool:
        await pool.drain(timeout=10)
    return seen


async def _attempts(client: Client, job_id: str) -> list[tuple[int, str]]:
    return [(h.attempt, h.status) for h in await client.history_job(job_id)]


@pytest.mark.parametrize("mode", ["d", "r"])
@pytest.mark.parametrize("how", ["retry", "reschedule"])
async def test_a_job_run_again_by_hand_and_replaced_keeps_its_attempts(
    redis: Redis,
    redis_url: str,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    mode: str,
    how: str,
) -> None:
    d = MODES[mode]
    job_id = await dead_job(redis_url, namespace, enqueuer, d)
    first = await _attempts(client, job_id)
    assert [a for a, _status in first] == [1]
    if how == "retry":
        assert await client.retry_dead_job(job_id)
    else:
        assert await client.reschedule(job_id, 0)
    dup = await enqueuer.enqueue("x", {"a": 5}, dedup=d)
    assert dup is not None and dup.dedup is not None
    assert (dup.dedup.status, dup.id) == ("replaced", job_id)
    assert await _run(redis_url, namespace) == [5]
    assert await _attempts(client, job_id) == [*first, (2, "finished")]
    await assert_invariants(redis, namespace, drained=True)


async def test_a_rerun_run_again_by_hand_and_replaced_keeps_its_attempts(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    job_id = await dead_job(redis_url, namespace, enqueuer, D)
    first = await _attempts(client, job_id)
    pool, seen, release = _pool(redis_url, namespace)
    async with pool:
        holder = await _started_holder(enqueuer, seen)
        assert await client.retry_dead_job(job_id)  # it waits as the holder's rerun
        dup = await enqueuer.enqueue("x", {"a": 5}, dedup=D)
        assert dup is not None and dup.dedup is not None
        assert (dup.dedup.status, dup.id, dup.dedup.holder) == ("rerun_queued", job_id, holder)
        release.set()
        await pool.drain(timeout=10)
    assert seen == [3, 5]
    assert await _attempts(client, job_id) == [*first, (2, "finished")]
    await assert_invariants(redis, namespace, drained=True)


async def test_a_fresh_job_replaced_counts_no_attempt(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """(The envelope of a job that never ran is left as the enqueue made it: no "h".)"""
    job = await enqueuer.enqueue("x", {"a": 1}, delay=60, dedup=Dedup("k", debounce=True))
    dup = await enqueuer.enqueue("x", {"a": 2}, dedup=Dedup("k", debounce=True))
    assert job is not None and dup is not None and dup.id == job.id
    raw = await redis.hget(enqueuer.keys.jobs, job.id)
    assert raw is not None and b'"h"' not in raw and b'"f"' not in raw
    assert await _run(redis_url, namespace) == [2]
    assert await _attempts(client, job.id) == [(1, "finished")]
