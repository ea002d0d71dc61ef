"""Issue 14 item 1 (server side): every ending of a job publishes its event and writes its
history, also those outside a pool's settle: a poison burial and a cancel by the reaper of a
dead pool, and the trimming of the dead set. The invariant checker runs after every test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, JobCancelledError, JobFailedError
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.admin.test_atomic_jobs import Events
from tests.support.client_env import until
from tests.support.invariants import assert_invariants

POOL = "p0000000000000001"


@pytest.fixture(autouse=True)
async def invariants(redis: Redis, namespace: str) -> AsyncIterator[None]:
    yield
    await assert_invariants(redis, namespace, context="after the test:")


async def running_in_a_dead_pool(redis: Redis, keys: Keys) -> str:
    """A job of ``work`` fetched by POOL, whose last heartbeat is long past."""
    job = await Enqueuer(redis, namespace=keys.namespace).enqueue("work", {"x": 1})
    assert job is not None
    await redis.zadd(keys.pools, {POOL: 1})
    assert await redis.zrem(keys.queue("work"), job.id) == 1
    await redis.zadd(keys.in_progress(POOL), {f"{job.id}:work": 1})
    await redis.hincrby(keys.running, "work", 1)
    await redis.hset(keys.attempts, job.id, f"{POOL}:1")
    return job.id


async def reap(scripts: Scripts, job_id: str) -> None:
    done = await scripts.reap(
        POOL, 10_000, 3, b'{"error": "worker died"}', b'{"error": "malformed"}',
        [(f"{job_id}:work", job_id, "work")],
    )  # fmt: skip
    assert done.drained


@pytest.mark.parametrize("outcome", ["poison", "cancelled"])
async def test_the_reaper_publishes_and_records_what_it_ends(
    redis: Redis, namespace: str, outcome: str
) -> None:
    keys = Keys(namespace)
    client = Client(redis, namespace=namespace)
    job_id = await running_in_a_dead_pool(redis, keys)
    if outcome == "poison":  # taken back from dead pools twice before: the third time buries it
        await redis.hset(keys.recoveries, job_id, 2)
    else:
        await redis.hset(keys.cancel_requests, job_id, "cancel")
    events = Events(client)
    async with events:
        await reap(Scripts(redis, keys), job_id)
        await until(lambda: events.of(job_id))
    status = "dead" if outcome == "poison" else "cancelled"
    assert events.of(job_id) == [status]
    history = await client.history_job(job_id)
    assert [(h.attempt, h.status) for h in history] == [(1, status)]
    expected = JobFailedError if outcome == "poison" else JobCancelledError
    with pytest.raises(expected):
        await client.result(job_id, timeout=5)


async def test_the_reaper_publishes_a_destroyed_job_as_dropped(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    client = Client(redis, namespace=namespace)
    job_id = await running_in_a_dead_pool(redis, keys)
    await redis.hset(keys.cancel_requests, job_id, "destroy")
    events = Events(client)
    async with events:
        await reap(Scripts(redis, keys), job_id)
        await until(lambda: events.of(job_id))
    assert events.of(job_id) == ["dropped"]
    assert await client.history_job(job_id) == []
    assert await redis.hget(keys.stats, "cancelled") == b"1"  # (as settle.lua and ack.lua count it)


async def test_trimming_the_dead_set_publishes_each_job(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    client = Client(redis, namespace=namespace)
    enqueuer = Enqueuer(redis, namespace=namespace)
    ids = []
    for i in range(3):  # (dead: as settle leaves a job that failed for good)
        job = await enqueuer.enqueue("work", {"i": i}, delay=60)
        assert job is not None
        await redis.zrem(keys.scheduled("work"), job.id)
        await redis.zadd(keys.dead, {job.id: i + 1})
        ids.append(job.id)
    events = Events(client)
    async with events:
        assert await Scripts(redis, keys).trim_set(keys.dead, 0, 1) == 2
        await until(lambda: len(events.seen) >= 2)
    trimmed = {e["id"]: (e["event"], e["name"], e["reason"]) for e in events.seen}
    assert trimmed == dict.fromkeys(ids[:2], ("deleted", "work", "trimmed"))
