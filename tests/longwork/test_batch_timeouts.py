"""A batch handler's ``timeout``: one call of the handler (the whole batch), its jobs failing with
the error a plain job's timeout records; a job's own ``timeout`` (given at enqueue) does not
bound a batch."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from tests.longwork.test_batch_outcomes import dead, errors, stats
from tests.support.invariants import assert_invariants


async def test_a_batch_over_its_timeout_fails_each_job_saying_so(
    redis: Redis, namespace: str
) -> None:
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=5.0)
    calls: list[int] = []

    @pool.batch_job("b", max_size=2, max_wait=0.01, max_fails=1, timeout=0.2)
    async def b(jobs: list[Job]) -> None:
        calls.append(len(jobs))
        await asyncio.Event().wait()  # (never set: only the timeout ends it)

    @pool.job("p", max_fails=1, timeout=0.2)
    async def p(job: Job) -> None:
        await asyncio.Event().wait()

    enqueuer = Enqueuer(redis, namespace=namespace)
    for job_id in ("j0", "j1"):
        await enqueuer.enqueue("b", {}, job_id=job_id)
    await enqueuer.enqueue("p", {}, job_id="plain")
    async with pool:
        await pool.drain(timeout=10)
    assert calls == [2]
    assert await dead(redis, namespace) == {"j0", "j1", "plain"}
    expected = "TimeoutError: timed out after 0.2s"
    assert await errors(redis, namespace) == {"j0": expected, "j1": expected, "plain": expected}
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_jobs_own_timeout_does_not_bound_its_batch(redis: Redis, namespace: str) -> None:
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=5.0)
    ended: list[int] = []

    @pool.batch_job("b", max_size=2, max_wait=0.01, max_fails=1)
    async def b(jobs: list[Job]) -> None:
        await asyncio.sleep(0.3)
        ended.append(len(jobs))

    enqueuer = Enqueuer(redis, namespace=namespace)
    await enqueuer.enqueue("b", {}, job_id="j0", timeout=0.05)
    await enqueuer.enqueue("b", {}, job_id="j1")
    async with pool:
        await pool.drain(timeout=10)
    assert ended == [2]
    assert await stats(redis, namespace) == {"processed": 2}
    await assert_invariants(redis, namespace, drained=True, stopped=True)
