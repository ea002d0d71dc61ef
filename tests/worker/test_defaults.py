"""The registration defaults docs/jobs-and-handlers.md gives, run: a job type registered without
``max_fails`` makes 4 attempts; a plain def handler finishing after its timeout is logged."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, FakeClock, FixedBackoff, Job, WorkerPool
from errands.store.keys import Keys


async def test_default_max_fails_is_4(redis: Redis, namespace: str) -> None:
    """No ``max_fails``: the first run and 3 retries, then the dead set (never a 5th call)."""
    clock = FakeClock()
    pool = WorkerPool(redis, namespace=namespace, clock=clock, concurrency=2)
    enqueuer = Enqueuer(redis, namespace=namespace, clock=clock)
    attempts: list[int] = []

    @pool.job("flaky", backoff=FixedBackoff(10))
    async def flaky(job: Job) -> None:
        attempts.append(job.attempt)
        raise RuntimeError("always")

    job = await enqueuer.enqueue("flaky", {})
    assert job is not None
    async with pool:
        for _ in range(6):  # room for two more attempts than the default allows
            await pool.drain(timeout=5)
            clock.advance(10.001)
        await pool.drain(timeout=5)
    assert attempts == [1, 2, 3, 4]
    assert await redis.zscore(Keys(namespace).dead, job.id) is not None


async def test_sync_handler_done_after_its_timeout_is_logged(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain def handler returning after its timeout finishes the job, with a warning that
    it returned late."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=1)
    enqueuer = Enqueuer(redis, namespace=namespace)
    release = threading.Event()

    @pool.job("blocking", timeout=0.05, max_fails=1)
    def blocking(job: Job) -> str:
        release.wait(5)
        return "late but done"

    job = await enqueuer.enqueue("blocking", {})
    assert job is not None
    caplog.set_level(logging.WARNING, logger="errands.worker")
    try:
        async with pool:
            asyncio.get_running_loop().call_later(0.3, release.set)
            await pool.drain(timeout=5)
    finally:
        release.set()
    assert await job.result(timeout=2) == "late but done"
    late = [r for r in caplog.records if "returned after its timeout" in r.getMessage()]
    assert len(late) == 1 and late[0].levelno == logging.WARNING
    assert job.id in late[0].getMessage()
