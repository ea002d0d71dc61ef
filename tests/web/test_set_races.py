"""The dashboard's clear-queue and delete-cancelled delete a job only while it is still on the
queue / in the cancelled set (move.lua's delete from a source, atomically): a job fetched between
the listing (or the status read) and the delete runs on. No sleeps: the fetch is driven in
between."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

import errands
from errands import Client, Enqueuer, JobStatus
from errands.admin.jobinfo import JobInfo, Page
from errands.store.keys import Keys
from tests.support.dashboard import http, post
from tests.support.fetched import POOL


async def fetched(redis: Redis, keys: Keys, job_id: str, source: str) -> None:
    """Take ``job_id`` out of ``source`` as fetch.lua does (in-progress entry, count, attempt)."""
    assert await redis.zrem(source, job_id) == 1
    await redis.zadd(keys.pools, {POOL: 1})
    await redis.zadd(keys.in_progress(POOL), {f"{job_id}:work": 1})
    await redis.hincrby(keys.running, "work", 1)
    await redis.hset(keys.attempts, job_id, f"{POOL}:1")


async def still_running(redis: Redis, keys: Keys, job_id: str) -> None:
    assert await redis.hexists(keys.jobs, job_id)
    assert await redis.zscore(keys.in_progress(POOL), f"{job_id}:work") is not None
    assert await redis.hget(keys.attempts, job_id) == f"{POOL}:1".encode()
    assert not await redis.hexists(keys.cancel_requests, job_id)  # (no pool told to drop it)


async def test_clear_queue_leaves_a_job_fetched_after_the_listing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    client = Client(redis, namespace=namespace)
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    jobs = [await enqueuer.enqueue("work", {"i": i}) for i in range(3)]
    ids = [job.id for job in jobs if job is not None]
    listed = client.queued_jobs

    async def listing_then_fetch(name: str, page: int = 1) -> Page[JobInfo]:
        out = await listed(name, page)
        await fetched(redis, keys, ids[0], keys.queue("work"))  # (a pool takes the first)
        return out

    client.queued_jobs = listing_then_fetch  # type: ignore[method-assign]
    async with http(errands.dashboard(client)) as web:
        response = await post(web, "/queues/clear", {"name": "work"})
    assert response.status_code == 303
    assert await redis.zcard(keys.queue("work")) == 0
    await still_running(redis, keys, ids[0])
    assert not any([await redis.hexists(keys.jobs, i) for i in ids[1:]])


async def test_delete_cancelled_leaves_a_job_requeued_and_fetched_meanwhile(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    client = Client(redis, namespace=namespace)
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    jobs = [await enqueuer.enqueue("work", {"i": i}) for i in range(2)]
    ids = [job.id for job in jobs if job is not None]
    for job_id in ids:
        assert await client.cancel(job_id) == "cancelled"
    read, moved = client.job, []

    async def read_then_requeue_and_fetch(job_id: str, *args: Any, **kw: Any) -> JobInfo | None:
        info = await read(job_id, *args, **kw)
        if job_id == ids[0] and not moved and info and info.status == JobStatus.CANCELLED:
            moved.append(job_id)
            assert await client.reschedule(job_id, 0)  # (someone runs it again)
            await fetched(redis, keys, job_id, keys.queue("work"))
        return info

    client.job = read_then_requeue_and_fetch  # type: ignore[method-assign]
    async with http(errands.dashboard(client)) as web:
        response = await post(web, "/cancelled/delete-all")
    assert response.status_code == 303
    await still_running(redis, keys, ids[0])
    assert not await redis.hexists(keys.jobs, ids[1])
    assert await redis.zcard(keys.cancelled) == 0
