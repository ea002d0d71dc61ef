"""Cancel requests for running jobs are stored until the job settles: they survive a missed
pub/sub message and the death of the pool running the job; ended-job sets stay bounded."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from errands import Job, JobCancelledError, JobStatus, WorkerPool
from tests.support.client_env import Env, until


async def test_a_request_missed_on_pub_sub_is_acted_on_by_the_sweep(
    redis: Redis, namespace: str
) -> None:
    env = Env(redis, namespace)
    started = asyncio.Event()
    finished: list[str] = []

    @env.pool.job("long")
    async def long(job: Job) -> None:
        started.set()
        await asyncio.sleep(10)
        finished.append(job.id)

    job = await env.enqueuer.enqueue("long")
    assert job is not None
    async with env.pool:
        await asyncio.wait_for(started.wait(), 5)
        # as if the pub/sub message had been lost: only the stored request exists
        await redis.hset(env.keys.cancel_requests, job.id, "cancel")
        info = await until(lambda: _status(env, job.id, JobStatus.CANCELLED), timeout=4.0)
    assert info and not finished
    assert await redis.hget(env.keys.cancel_requests, job.id) is None


async def _status(env: Env, job_id: str, status: str) -> bool:
    info = await env.client.job(job_id)
    return info is not None and info.status == status


async def test_a_request_outlives_the_pool_the_reaper_cancels_instead_of_requeueing(
    redis: Redis, namespace: str
) -> None:
    env = Env(redis, namespace)
    job = await env.enqueuer.enqueue("long")
    assert job is not None
    # a pool that fetched the job and then died: its heartbeat is an hour old
    k, dead_pool = env.keys, "deadpool1"
    assert await redis.zrem(k.queue("long"), job.id) == 1
    await redis.zadd(k.in_progress(dead_pool), {f"{job.id}:long": 1})
    await redis.hincrby(k.running, "long", 1)
    await redis.zadd(k.pools, {dead_pool: 1})
    await redis.hset(k.cancel_requests, job.id, "cancel")  # requested while it ran

    rescuer = WorkerPool(redis, namespace=namespace, heartbeat_interval=0.2, dead_timeout=0.6)
    ran_again: list[str] = []

    @rescuer.job("long")
    async def again(job: Job) -> None:
        ran_again.append(job.id)

    async with rescuer:
        # (its reaper runs in the background too: whichever reaps first)
        await until(lambda: _status(env, job.id, JobStatus.CANCELLED), timeout=5.0)
        await rescuer.drain(timeout=5)
    assert not ran_again
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.CANCELLED
    assert await redis.hget(k.cancel_requests, job.id) is None
    assert await redis.hget(k.running, "long") == b"0"
    assert await redis.zscore(k.pools, dead_pool) is None
    with pytest.raises(JobCancelledError):
        await env.client.result(job.id, timeout=2)


async def test_jobs_cancelled_while_waiting_are_trimmed_like_dead_jobs(
    redis: Redis, namespace: str
) -> None:
    env = Env(redis, namespace, dead_max_jobs=3)

    @env.pool.job("later")
    async def later(job: Job) -> None: ...

    jobs = [await env.enqueuer.enqueue("later", {"i": i}, delay=600) for i in range(5)]
    for j in jobs:
        assert j is not None
        assert await env.client.cancel(j.id) == "cancelled"
        env.clock.advance(1)  # distinct cancel times: the oldest is trimmed first
    assert await redis.zcard(env.keys.cancelled) == 5
    async with env.pool:
        assert env.pool.requeuer is not None
        await env.pool.requeuer.collect_garbage()
    assert await redis.zcard(env.keys.cancelled) == 3
    oldest = jobs[0]
    assert oldest is not None
    assert await redis.hget(env.keys.jobs, oldest.id) is None


async def test_a_job_failing_after_its_cancel_was_requested_is_not_retried(
    redis: Redis, namespace: str
) -> None:
    """The cancel request reaches Redis, but the handler fails before the pool acts on it (the
    pub/sub message was missed): the failure must end the job as cancelled, not retry it."""
    env = Env(redis, namespace)
    attempts: list[int] = []
    requested = asyncio.Event()

    @env.pool.job("flaky", max_fails=5)
    async def flaky(job: Job) -> None:
        attempts.append(job.attempt)
        await redis.hset(env.keys.cancel_requests, job.id, "cancel")  # as cancel() would
        requested.set()
        raise RuntimeError("failed after the cancel was requested")

    job = await env.enqueuer.enqueue("flaky")
    assert job is not None
    async with env.pool:
        await env.pool.drain(timeout=5)
        env.clock.advance(3600)
        await env.pool.drain(timeout=5)
    assert attempts == [1]
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.CANCELLED
    assert await redis.zcard(env.keys.retry("flaky")) == 0
    assert await redis.hget(env.keys.cancel_requests, job.id) is None
