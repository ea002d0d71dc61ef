"""Per-job timeout at enqueue (``timeout=``): it bounds the job's runs instead of its job type's
timeout, both ways (shorter and longer)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, SyncEnqueuer, WorkerPool
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants


async def test_a_job_timeout_overrides_its_types(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("open_ended", max_fails=1)
    async def open_ended(job: Job, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @pool.job("short", timeout=0.2, max_fails=1)
    async def short(job: Job, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    async with (
        Enqueuer(redis, namespace=namespace) as enqueuer,
        Client(redis, namespace=namespace) as client,
    ):
        cut = await enqueuer.enqueue("open_ended", {"seconds": 30}, timeout=0.2)
        longer = await enqueuer.enqueue("short", {"seconds": 0.5}, timeout=timedelta(seconds=10))
        default = await enqueuer.enqueue("short", {"seconds": 30})
        assert cut is not None and longer is not None and default is not None
        raw = await redis.hget(Keys(namespace).jobs, cut.id)
        assert raw is not None and orjson.loads(raw)["o"] == 0.2
        async with pool:
            await pool.drain(timeout=20)
        assert await longer.result(timeout=5) == "done"
        for job in (cut, default):
            info = await client.job(job.id)
            assert info is not None and info.status == "dead"
            assert info.error is not None and "timed out after 0.2s" in str(info.error)
    await assert_invariants(redis, namespace, drained=True)


async def test_a_job_timeout_is_checked(redis: Redis, namespace: str, redis_url: str) -> None:
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        for bad in (0, -1.0, timedelta(0)):
            with pytest.raises(ValueError, match=r"^timeout must be a number of seconds > 0"):
                await enqueuer.enqueue("x", {}, timeout=bad)
        jobs = await enqueuer.enqueue_many([("x", {}, {"timeout": 3})])
        assert jobs[0].timeout == 3.0
    with SyncEnqueuer(redis_url, namespace=namespace) as sync:
        job = sync.enqueue("x", {}, timeout=2.5)
        assert job is not None and job.timeout == 2.5
    assert Job.from_envelope("i", {"n": "x", "a": {}, "o": 1.5}).timeout == 1.5
    with pytest.raises(ValueError, match="timeout"):
        Job.from_envelope("i", {"n": "x", "a": {}, "o": "soon"})
