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

from .conftest import until


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


async def test_a_dead_holder_retried_by_hand_releases_no_rerun(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    """rerun_latest: the holder dies, its rerun takes the key (released once) and runs; a new
    rerun waits for it. The dead holder retried by hand meanwhile runs without the key, at the
    same time as the rerun, and its end hands nothing over: the new rerun still waits."""
    keys = Keys(namespace)
    seen: list[str] = []
    started = {sha: asyncio.Event() for sha in "abc"}
    release = {sha: asyncio.Event() for sha in "abc"}
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("deploy")
    async def deploy(job: Job, sha: str) -> None:
        seen.append(sha)
        started[sha].set()
        await release[sha].wait()
        if seen.count(sha) == 1 and sha == "a":
            raise NonRetryableError("broken")

    d = Dedup("repo:x", until="finished", rerun_latest=True)
    first = await enqueuer.enqueue("deploy", {"sha": "a"}, dedup=d)
    assert first is not None
    async with pool:
        async with asyncio.timeout(10):
            await started["a"].wait()
        rerun = await enqueuer.enqueue("deploy", {"sha": "b"}, dedup=d)
        assert rerun is not None and rerun.dedup is not None
        release["a"].set()  # dies: the rerun holds the key and starts
        async with asyncio.timeout(10):
            await started["b"].wait()
        latest = await enqueuer.enqueue("deploy", {"sha": "c"}, dedup=d)
        assert latest is not None and latest.dedup is not None
        assert (latest.dedup.status, latest.dedup.holder) == ("rerun_queued", rerun.id)
        assert await client.retry_dead_job(first.id)
        await until(lambda: seen.count("a") == 2)  # runs beside the holder, without the key
        assert await redis.hget(keys.dedup, "deploy:repo:x") == rerun.id.encode()
        await until(lambda: _finished(client, first.id))
        # its end handed nothing over: the latest rerun still waits for the holder
        assert await redis.hget(keys.dedup_next, "deploy:repo:x") == latest.id.encode()
        assert await redis.zscore(keys.dedup_reruns, latest.id) is not None
        assert "c" not in seen
        release["b"].set()
        async with asyncio.timeout(10):
            await started["c"].wait()
        release["c"].set()
        await pool.drain(timeout=10)
    assert sorted(seen) == ["a", "a", "b", "c"] and seen.index("c") == 3
    assert await redis.hlen(keys.dedup) == 0 and await redis.hlen(keys.dedup_next) == 0
    await assert_invariants(redis, namespace, drained=True)


async def _finished(client: Client, job_id: str) -> bool:
    info = await client.job(job_id)
    return info is not None and info.status == "finished"
