"""What becomes of a dedup key when its job is stopped by a graceful shutdown, and when a job
whose life had ended is run again by hand while another job holds the key (docs/dedup.md,
"When the key is freed", "Run again by hand")."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer, Job, WorkerPool
from errands.errors import DedupKeyHeldError, NonRetryableError
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
async def test_a_job_run_again_by_hand_is_refused_while_another_job_holds_its_key(
    redis: Redis,
    redis_url: str,
    namespace: str,
    enqueuer: Enqueuer,
    client: Client,
    ended: Literal["dead", "cancelled"],
) -> None:
    """Client.retry_dead_job (or reschedule from the cancelled set) of a job whose life ended,
    while another job holds its key: refused (DedupKeyHeldError naming the holder), nothing
    moved; once the holder's life ended, it runs again holding the key (tests/dedup/
    test_rerun_by_hand.py for every mode). Before, it ran beside the holder, without a key."""
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
    with pytest.raises(DedupKeyHeldError) as held:
        await _run_again(client, first.id, ended)
    assert held.value.holder == holder.id and holder.id in str(held.value)
    info = await client.job(first.id)
    assert info is not None and info.status == ended  # nothing moved
    assert await redis.hget(keys.dedup, "deploy:repo:x") == holder.id.encode()
    await assert_invariants(redis, namespace)
    assert await client.cancel(holder.id) == "cancelled"  # the holder's life ends: key free
    assert await _run_again(client, first.id, ended)
    assert await redis.hget(keys.dedup, "deploy:repo:x") == first.id.encode()
    dropped = await enqueuer.enqueue("deploy", {"n": 3}, dedup=d)
    assert dropped is not None and dropped.dedup is not None
    assert (dropped.dedup.status, dropped.dedup.holder) == ("dropped", first.id)
    await assert_invariants(redis, namespace)
    async with pool:
        await pool.drain(timeout=10)
    assert runs == ([1, 1] if ended == "dead" else [1])
    info = await client.job(first.id)
    assert info is not None and info.status == "finished"
    assert await redis.hlen(keys.dedup) == 0  # its end freed the key
    await assert_invariants(redis, namespace, drained=True)


async def _run_again(client: Client, job_id: str, ended: str) -> bool:
    if ended == "dead":
        return await client.retry_dead_job(job_id)
    return await client.reschedule(job_id, 0)  # a time in the past: queued now


async def test_a_dead_holder_retried_by_hand_waits_for_the_rerun_holding_its_key(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    """rerun_latest: the holder dies, its rerun takes the key (released once) and runs; a new
    rerun waits for it. The dead holder retried by hand meanwhile is refused (the rerun holds
    its key: it would run beside it); once the reruns ran and the key is free, it runs again
    holding the key."""
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
        with pytest.raises(DedupKeyHeldError) as held:
            await client.retry_dead_job(first.id)
        assert held.value.holder == rerun.id
        assert await redis.zscore(keys.dead, first.id) is not None  # not moved
        assert await redis.hget(keys.dedup_next, "deploy:repo:x") == latest.id.encode()
        release["b"].set()
        async with asyncio.timeout(10):
            await started["c"].wait()
        release["c"].set()
        await pool.drain(timeout=10)
        assert await redis.hlen(keys.dedup) == 0
        assert await client.retry_dead_job(first.id)  # the key free: it runs again, holding it
        assert await redis.hget(keys.dedup_of_job, first.id) == b"rdeploy:repo:x"
        await until(lambda: _finished(client, first.id))
    assert seen == ["a", "b", "c", "a"]
    assert await redis.hlen(keys.dedup) == 0 and await redis.hlen(keys.dedup_next) == 0
    await assert_invariants(redis, namespace, drained=True)


async def _finished(client: Client, job_id: str) -> bool:
    info = await client.job(job_id)
    return info is not None and info.status == "finished"
