"""A cancel request (admin) for a job of a running batch: the batch is not interrupted; the job,
if the batch then fails it, is cancelled rather than retried; if it succeeds, it is finished."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from errands import BatchOutcome, Enqueuer, Job, WorkerPool
from errands.admin.client import Client
from errands.store.keys import Keys
from tests.longwork.test_batch_outcomes import dead, stats
from tests.support.invariants import assert_invariants


async def test_a_cancel_request_for_a_job_of_a_running_batch(redis: Redis, namespace: str) -> None:
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=5.0)
    started, go = asyncio.Event(), asyncio.Event()
    ended: list[int] = []

    @pool.batch_job("b", max_size=4, max_wait=0.01, max_fails=3)
    async def b(jobs: list[Job]) -> BatchOutcome:
        started.set()
        await go.wait()
        ended.append(len(jobs))
        return BatchOutcome(failed={"fails": ValueError("no"), "other": ValueError("no")})

    enqueuer = Enqueuer(redis, namespace=namespace)
    for job_id in ("fails", "other", "succeeds"):
        await enqueuer.enqueue("b", {}, job_id=job_id)
    admin = Client(redis, namespace=namespace)
    async with pool:
        await asyncio.wait_for(started.wait(), 10)
        assert await admin.cancel("fails") == "running"
        assert await admin.cancel("succeeds") == "running"
        await asyncio.sleep(1.5)  # (the pool's sweep of stored cancel requests: every second)
        assert not ended  # not interrupted
        go.set()
        await pool.drain(timeout=10)
    assert ended == [3]
    keys = Keys(namespace)
    cancelled = {m.decode() for m in await redis.zrange(keys.cancelled, 0, -1)}
    assert cancelled == {"fails"}
    retrying = {m.decode() for m in await redis.zrange(keys.retry("b"), 0, -1)}
    assert retrying == {"other"}
    assert await dead(redis, namespace) == set()
    info = await admin.job("succeeds")
    assert info is not None and info.status == "finished"
    assert (await stats(redis, namespace)).get("processed") == 1
    await assert_invariants(redis, namespace, stopped=True)


async def test_a_destroy_request_for_jobs_of_a_running_batch(redis: Redis, namespace: str) -> None:
    """``Client.destroy`` of jobs of a running batch: not interrupted either; each is dropped
    with every trace when the batch ends, succeeded or failed (no result, no dead or retry
    entry, counted cancelled), and its id may be enqueued again."""
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=5.0)
    started, go = asyncio.Event(), asyncio.Event()
    ended: list[int] = []

    @pool.batch_job("b", max_size=4, max_wait=0.01, max_fails=3)
    async def b(jobs: list[Job]) -> BatchOutcome:
        started.set()
        await go.wait()
        ended.append(len(jobs))
        ids = {j.id for j in jobs}
        return BatchOutcome(failed={"fails": ValueError("no")} if "fails" in ids else {})

    enqueuer = Enqueuer(redis, namespace=namespace)
    for job_id in ("fails", "succeeds", "kept"):
        await enqueuer.enqueue("b", {}, job_id=job_id)
    admin = Client(redis, namespace=namespace)
    async with pool:
        await asyncio.wait_for(started.wait(), 10)
        assert await admin.destroy("fails")
        assert await admin.destroy("succeeds")
        go.set()
        await pool.drain(timeout=10)
        assert ended == [3]
        for job_id in ("fails", "succeeds"):
            assert await admin.job(job_id) is None, job_id
            assert not await redis.exists(keys.done(job_id))
        assert await admin.result("kept", timeout=5) is None
        assert (await stats(redis, namespace)).get("cancelled") == 2
        assert await dead(redis, namespace) == set()
        assert await redis.zcard(keys.retry("b")) == 0
        again = await enqueuer.enqueue("b", {}, job_id="succeeds")  # (no tombstone)
        assert again is not None and not again.existed
        assert await again.result(timeout=10) is None
        await pool.drain(timeout=10)
    await assert_invariants(redis, namespace, drained=True, stopped=True)
