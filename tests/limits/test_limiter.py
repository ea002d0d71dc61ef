"""In-handler limiters: over the limit the job is snoozed (no failure counted) until the limiter
frees, at most max_snoozes times; never more starts than the rate in any window."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, Rate, WorkerPool
from errands.errors import RegistrationError
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

from .support import max_in_window, until


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        yield enq


async def test_over_the_limit_the_job_is_snoozed_not_failed(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    calls: list[float] = []
    attempts: list[tuple[int, int]] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=8, poll_interval=0.2)
    api = pool.limiter("api", Rate(3, per=timedelta(milliseconds=500)))

    @pool.job("call")
    async def call(job: Job) -> None:
        async with api.acquire():
            calls.append(time.monotonic())
            attempts.append((job.attempt, job.fails))

    await enqueuer.enqueue_many([("call", {}) for _ in range(9)])
    async with pool:
        await until(lambda: len(calls) == 9, timeout=15)
    assert max_in_window(calls, 0.5 - 0.03) <= 3
    assert all(fails == 0 for _a, fails in attempts)  # no failure counted
    assert await redis.hget(Keys(namespace).stats, "failed") is None
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_past_max_snoozes_acquiring_fails_the_job(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    outcomes: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=2, poll_interval=0.2)
    api = pool.limiter("scarce", Rate(1, per=timedelta(hours=1)), max_snoozes=0)

    @pool.job("call", max_fails=1)
    async def call(job: Job) -> None:
        async with api.acquire():
            outcomes.append("ran")

    assert await api.try_acquire() == 0.0  # outside a handler: the one start of the hour
    job = await enqueuer.enqueue("call", {})
    assert job is not None
    async with pool:
        await until(lambda: redis.zscore(Keys(namespace).dead, job.id))
        assert 3500 < await api.try_acquire() <= 3600  # (on the pool's client, while open)
    assert outcomes == []
    await assert_invariants(redis, namespace, drained=True, stopped=True)


def test_limiters_take_rates() -> None:
    pool = WorkerPool.from_url("redis://localhost:1", namespace="x")
    with pytest.raises(RegistrationError):
        pool.limiter("x")
    with pytest.raises(RegistrationError):
        pool.limiter("x", Rate(1, per_partition=True))
    with pytest.raises(RegistrationError):
        pool.limiter("a b", Rate(1))


def test_a_rate_window_is_at_most_366_days() -> None:
    """A longer window failed in Redis (PEXPIRE of its log) after the fetch took the job."""
    assert Rate(1, per=timedelta(days=366)).per_ms == 366 * 86_400_000
    for per in (timedelta(days=366, milliseconds=1), timedelta(days=10**6)):
        with pytest.raises(ValueError, match="at most 366 days"):
            Rate(1, per=per)


def test_a_limiter_snoozes_a_job_at_most_100_times_by_default() -> None:
    """docs/limits.md: ``pool.limiter(..., max_snoozes=100)``, the default."""
    pool = WorkerPool.from_url("redis://localhost:1", namespace="x")
    assert pool.limiter("api", Rate(1)).max_snoozes == 100
    assert pool.limiter("other", Rate(1), max_snoozes=0).max_snoozes == 0
