"""What becomes of a dedup key when its job is stopped by a graceful shutdown, and when a job
whose life had ended is run again by hand (docs/dedup.md, "When the key is freed")."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer, Job, WorkerPool
from errands.errors import NonRetryableError
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants


@pytest.mark.parametrize("mode", ["finished", "started"])
async def test_a_graceful_stop_requeues_the_job_with_its_key_only_if_held_until_finished(
    redis: Redis,
    redis_url: str,
    namespace: str,
    enqueuer: Enqueuer,
    mode: Literal["finished", "started"],
) -> None:
    keys = Keys(namespace)
    started = asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("deploy")
    async def deploy(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)  # cancelled by the stop (grace 0)

    d = Dedup("repo:x", until=mode)
    first = await enqueuer.enqueue("deploy", {}, dedup=d)
    assert first is not None
    await pool.start()
    try:
        async with asyncio.timeout(10):
            await started.wait()
    finally:
        await pool.stop(grace=0)
    assert await redis.zscore(keys.queue("deploy"), first.id) is not None  # back on its queue
    await assert_invariants(redis, namespace)
    again = await enqueuer.enqueue("deploy", {}, dedup=d)
    assert again is not None and again.dedup is not None
    if mode == "finished":
        assert await redis.hget(keys.dedup, "deploy:repo:x") == first.id.encode()
        assert (again.dedup.status, again.dedup.holder) == ("dropped", first.id)
        assert await redis.zcard(keys.queue("deploy")) == 1
    else:
        assert again.dedup.status == "enqueued" and again.id != first.id
        assert await redis.hget(keys.dedup, "deploy:repo:x") == again.id.encode()
        assert await redis.zcard(keys.queue("deploy")) == 2
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("ended", ["dead", "cancelled"])
async def test_a_job_run_again_by_hand_runs_without_the_key_another_job_took(
    redis: Redis,
    redis_url: str,
    namespace: str,
    enqueuer: Enqueuer,
    client: Client,
    ended: Literal["dead", "cancelled"],
) -> None:
    """Client.retry_dead_job (or reschedule from the cancelled set) of a job whose life ended:
    it runs, the job holding the key now keeps it, before, during and after that run."""
    keys = Keys(namespace)
    runs: list[int] = []
    failing = {1} if ended == "dead" else set()
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("deploy")
    async def deploy(job: Job, n: int) -> None:
        runs.append(n)
        if n in failing:
            failing.discard(n)
            raise NonRetryableError("broken")

    d = Dedup("repo:x", until="finished")
    first = await enqueuer.enqueue("deploy", {"n": 1}, dedup=d, delay=3600)
    assert first is not None
    if ended == "dead":
        assert await client.run_scheduled_now(first.id)
        async with pool:
            await pool.drain(timeout=10)
        assert runs == [1] and await redis.zscore(keys.dead, first.id) is not None
    else:
        assert await client.cancel(first.id) == "cancelled"
    # its life ended: the key is free, and another job takes it (scheduled, so it waits)
    holder = await enqueuer.enqueue("deploy", {"n": 2}, dedup=d, delay=3600)
    assert holder is not None and holder.dedup is not None and holder.dedup.enqueued
    if ended == "dead":
        assert await client.retry_dead_job(first.id)
    else:
        assert await client.reschedule(first.id, 0)  # a time in the past: queued now
    await assert_invariants(redis, namespace)
    assert await redis.hget(keys.dedup, "deploy:repo:x") == holder.id.encode()
    async with pool:
        await pool.drain(timeout=10)
    assert runs == ([1, 1] if ended == "dead" else [1])  # ran again; the holder still waits
    info = await client.job(first.id)
    assert info is not None and info.status == "finished"
    assert await redis.hget(keys.dedup, "deploy:repo:x") == holder.id.encode()
    dropped = await enqueuer.enqueue("deploy", {"n": 3}, dedup=d)
    assert dropped is not None and dropped.dedup is not None
    assert (dropped.dedup.status, dropped.dedup.holder) == ("dropped", holder.id)
    assert await redis.zscore(keys.scheduled("deploy"), holder.id) is not None
    await assert_invariants(redis, namespace)
