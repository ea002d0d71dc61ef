"""Crash recovery: the jobs of a worker process killed with SIGKILL are given back exactly once
by the reapers of the live pools and finish there; a job that keeps killing its worker ends in
the dead set after ``max_recoveries``."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.apps import timed
from tests.support.procs import Procs, eventually, live_pools, records, running_counts, wait_ready

DEAD_TIMEOUT = 1.0  # as in tests/support/apps/timed.py
JOB_SECONDS = 2.0


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


def live_pool(redis_url: str, namespace: str, **options: int) -> WorkerPool:
    """An in-process pool with the same short failure-detection timings as the test apps."""
    pool = WorkerPool.from_url(
        redis_url,
        namespace=namespace,
        heartbeat_interval=0.25,
        dead_timeout=DEAD_TIMEOUT,
        shutdown_grace=0.5,
        **options,
    )

    @pool.job("work")
    async def work(job: Job, seconds: float = 0.05) -> None:
        await timed(pool, job, seconds)

    return pool


async def test_kill_9_mid_job_requeues_each_job_once_onto_the_live_pools(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    proc = procs.worker("timed:pool", redis_url, namespace)
    await wait_ready(redis, namespace, 1)
    [doomed] = await live_pools(redis, namespace)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("work", {"seconds": JOB_SECONDS})] * 4)
    ids = {job.id for job in jobs}

    async def all_started() -> bool:
        return {r["id"] for r in await records(redis, namespace, "starts")} == ids

    await eventually(all_started, 10, "the worker process to start all 4 jobs")
    in_flight = {
        m.decode().partition(":")[0] for m in await redis.zrange(keys.in_progress(doomed), 0, -1)
    }
    assert in_flight == ids

    # two live pools, so two reapers race for the dead pool's jobs
    pools = [live_pool(redis_url, namespace, concurrency=4) for _ in range(2)]
    for pool in pools:
        await pool.start()
    try:
        killed_at = time.time()
        proc.send(signal.SIGKILL)
        assert await proc.wait(5) == -signal.SIGKILL

        async def all_finished() -> list[dict[str, float]] | None:
            found = await records(redis, namespace, "intervals")
            return found if len(found) == 4 else None

        intervals = await eventually(
            all_finished, DEAD_TIMEOUT + JOB_SECONDS + 5, "the 4 jobs to finish on the live pools"
        )
        assert sorted(r["id"] for r in intervals) == sorted(ids)
        assert {r["pid"] for r in intervals} == {os.getpid()}

        starts = await records(redis, namespace, "starts")
        assert Counter(r["id"] for r in starts) == dict.fromkeys(ids, 2), starts
        restarts = [r["t"] - killed_at for r in starts if r["pid"] == os.getpid()]
        assert max(restarts) < DEAD_TIMEOUT + 2, f"jobs restarted {restarts} s after the kill"
        print(f"restarted {min(restarts):.2f}..{max(restarts):.2f}s after kill -9")
        assert sum(pool.reaper.requeued for pool in pools if pool.reaper) == 4
        assert sum(pool.reaper.buried for pool in pools if pool.reaper) == 0

        async def settled() -> bool:
            return (await running_counts(redis, namespace)).get("work") == 0 and (
                await redis.hget(keys.stats, "processed") == b"4"
            )

        await eventually(settled, 5, "running back to 0 and 4 jobs acknowledged")
        assert sorted(await live_pools(redis, namespace)) == sorted(p.id for p in pools)
        assert not await redis.exists(keys.in_progress(doomed), keys.pool_info(doomed))
        assert await redis.zcard(keys.dead) == 0
        assert await redis.hlen(keys.errors) == 0
        assert await redis.hlen(keys.recoveries) == 0
        assert await redis.hlen(keys.jobs) == 0
    finally:
        for pool in pools:
            await pool.stop()


async def test_job_that_kills_its_worker_is_buried_after_max_recoveries(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    # the reaping pool must not run "die" itself: it would kill the test process
    reaper_pool = live_pool(redis_url, namespace, max_recoveries=2)
    await reaper_pool.start()
    try:
        async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
            job = await enqueuer.enqueue("die")
        assert job is not None

        async def back_on_queue() -> bool:
            return await redis.zscore(keys.queue("die"), job.id) is not None

        async def buried() -> bool:
            return await redis.zscore(keys.dead, job.id) is not None

        for attempt in (1, 2):
            proc = procs.worker("timed:pool", redis_url, namespace)
            assert await proc.wait(15) == -signal.SIGKILL, proc.output()
            starts = await records(redis, namespace, "starts")
            assert [r["id"] for r in starts] == [job.id] * attempt
            if attempt == 1:
                await eventually(back_on_queue, DEAD_TIMEOUT + 4, "the job to be requeued")
                assert await redis.hget(keys.recoveries, job.id) == b"1"
        await eventually(buried, DEAD_TIMEOUT + 4, "the job to reach the dead set")

        error = orjson.loads(await redis.hget(keys.errors, job.id))
        assert "worker died" in error["error"], error
        assert await redis.zcard(keys.queue("die")) == 0
        assert await redis.hget(keys.recoveries, job.id) is None
        assert (await running_counts(redis, namespace)).get("die") == 0
        assert await redis.hget(keys.stats, "dead") == b"1"
        assert await redis.hexists(keys.jobs, job.id)  # kept for inspection and retry
        assert await live_pools(redis, namespace) == [reaper_pool.id]
        assert reaper_pool.reaper is not None
        assert (reaper_pool.reaper.requeued, reaper_pool.reaper.buried) == (1, 1)
    finally:
        await reaper_pool.stop()
