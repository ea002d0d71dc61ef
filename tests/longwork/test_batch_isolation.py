"""Isolation of suspects (jobs taken back from dead pools ``max_recoveries - 1`` times, see
docs/reliability.md, "Neighbours of a poison job") holds for batch job names too: a pool runs at
most one suspect at a time, in a batch or not. A batch fetch took every suspect waiting, so one
poison job in a batch took the same neighbours down with it at each crash until all were buried.
Suspects are planted as their recovery counts (the reaper's), so the runs are exact."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from redis.asyncio import Redis

from errands import BatchOutcome, Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.client_env import until
from tests.support.invariants import assert_invariants

WAIT = timedelta(milliseconds=50)


def make_pool(redis_url: str, namespace: str) -> WorkerPool:
    # max_recoveries=2: a job taken back once from a dead pool is a suspect
    return WorkerPool.from_url(
        redis_url, namespace=namespace, concurrency=4, shutdown_grace=5.0, max_recoveries=2
    )


async def _plant_suspects(redis: Redis, namespace: str, ids: list[str]) -> None:
    await redis.hset(Keys(namespace).recoveries, mapping=dict.fromkeys(ids, 1))  # type: ignore[arg-type]


async def test_a_batch_takes_at_most_one_suspect(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = make_pool(redis_url, namespace)
    batches: list[list[str]] = []

    @pool.batch_job("index", max_size=10, max_wait=WAIT)
    async def index(jobs: list[Job]) -> BatchOutcome:
        batches.append([j.id for j in jobs])
        return BatchOutcome()

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("index", {}) for _ in range(6)])
    ids = [j.id for j in jobs]
    suspects = set(ids[::2])
    await _plant_suspects(redis, namespace, sorted(suspects))
    await pool.drain(timeout=20)
    assert sorted(i for batch in batches for i in batch) == sorted(ids)
    counts = [len(suspects & set(batch)) for batch in batches]
    assert max(counts) == 1 and sum(counts) == 3
    assert pool.worker is None or not pool.worker._suspects
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_batch_takes_no_suspect_while_the_pool_runs_one(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """A suspect of a plain job name runs: the batch fetch leaves the batch name's suspect
    queued, takes the others, and takes it once the first suspect ended."""
    pool = make_pool(redis_url, namespace)
    batches: list[list[str]] = []
    release = asyncio.Event()
    holding: list[str] = []

    @pool.job("hold")
    async def hold(job: Job) -> None:
        holding.append(job.id)
        await release.wait()

    @pool.batch_job("index", max_size=10, max_wait=WAIT)
    async def index(jobs: list[Job]) -> BatchOutcome:
        batches.append([j.id for j in jobs])
        return BatchOutcome()

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        held = await enqueuer.enqueue("hold")
        assert held is not None
        await _plant_suspects(redis, namespace, [held.id])
        ids = [f"{namespace}-index-{i}" for i in range(3)]
        await _plant_suspects(redis, namespace, ids[:1])
        async with pool:
            await until(lambda: holding == [held.id], 10)
            await enqueuer.enqueue_many([("index", {}, {"job_id": i}) for i in ids])
            await until(lambda: len(batches) == 1, 10)  # (without the suspect)
            assert sorted(batches[0]) == sorted(ids[1:])
            # the batch loop fetches again at each poll (max_wait / 4): still not taken
            queue = Keys(namespace).queue("index")
            await until(lambda: redis.zcard(queue), 10)
            await asyncio.sleep(0.2)
            assert len(batches) == 1 and holding == [held.id]
            release.set()
            await until(lambda: len(batches) == 2, 10)
            assert batches[1] == [ids[0]]
            await pool.drain(timeout=10)
    await assert_invariants(redis, namespace, drained=True, stopped=True)
