"""An iterable job's checkpoint through the admin actions (docs/long-jobs.md: kept while the job
is stored, deleted with it): a running job cancelled keeps it in the cancelled set and resumes
from it when rescheduled, or loses it when trimmed from that set; a running job destroyed loses
it with every trace, so that its id enqueued again starts over; new args given to a dead job
(``update_job``) do not reset it: the retry resumes from the cursor, with the new args; a dead
job deleted loses it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.longwork.test_iterable import make_pool
from tests.support.invariants import assert_invariants
from tests.support.procs import eventually


async def cursor_of(redis: Redis, keys: Keys, job_id: str) -> object:
    raw = await redis.hget(keys.checkpoints, job_id)
    return None if raw is None else orjson.loads(raw)["cursor"]


async def test_a_cancelled_job_keeps_its_checkpoint_until_rescheduled_or_trimmed(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)
    starts: dict[str, list[int | None]] = {"kept": [], "trimmed": []}

    @pool.iterable_job("walk", checkpoint_every=0)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        starts[job.id].append(cursor)
        for i in range((cursor or 0) + 1, 11):
            if i == 5 and len(starts[job.id]) == 1:
                await asyncio.Event().wait()  # (until cancelled)
            yield i

    async with (
        Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
        pool,
    ):
        for job_id in starts:
            await enqueuer.enqueue("walk", job_id=job_id)
        for job_id in starts:
            await eventually(lambda i=job_id: cursor_of(redis, keys, i), 10, "item 4 checkpointed")
            assert await client.cancel(job_id) == "running"
            await eventually(lambda i=job_id: redis.zscore(keys.cancelled, i), 10, "cancelled")
            assert await cursor_of(redis, keys, job_id) == 4
        info = await client.job("kept")
        assert info is not None and info.status == "cancelled"
        assert info.progress is not None and info.progress["done"] == 4
        await assert_invariants(redis, namespace)
        assert await client.reschedule("kept", 0)  # (a time past: queued now)
        result = await client.result("kept", timeout=10)
        assert result == {"done": 10, "cursor": 10}
        # the other one ages out of the cancelled set: its checkpoint goes with it
        assert await Scripts(redis, keys).trim_set(keys.cancelled, 2**50, 10_000) == 1
        await pool.drain(timeout=10)
    assert starts == {"kept": [None, 4], "trimmed": [None]}
    assert await redis.hlen(keys.checkpoints) == 0
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_running_job_destroyed_loses_its_checkpoint_and_its_id_starts_over(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)
    starts: list[int | None] = []
    stuck = asyncio.Event()

    @pool.iterable_job("walk", checkpoint_every=0)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        starts.append(cursor)
        for i in range((cursor or 0) + 1, 11):
            if i == 5 and len(starts) == 1:
                stuck.set()
                await asyncio.Event().wait()  # (until cancelled)
            yield i

    async with (
        Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
        pool,
    ):
        job = await enqueuer.enqueue("walk", job_id="walk-1")
        assert job is not None
        await asyncio.wait_for(stuck.wait(), 10)
        assert await cursor_of(redis, keys, job.id) == 4
        assert await client.destroy(job.id)

        async def gone() -> bool:
            return not await redis.hexists(keys.jobs, job.id)

        await eventually(gone, 10, "the job dropped by its pool")
        assert await redis.hget(keys.checkpoints, job.id) is None
        again = await enqueuer.enqueue("walk", job_id="walk-1")  # (no tombstone: stored)
        assert again is not None and not again.existed
        assert await again.result(timeout=10) == {"done": 10, "cursor": 10}
        await pool.drain(timeout=10)
    assert starts == [None, None], "the new job with the old id starts over"
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_new_args_for_a_dead_job_keep_its_checkpoint_and_a_delete_drops_it(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)
    runs: list[tuple[int | None, str]] = []

    @pool.iterable_job("walk", checkpoint_every=0, max_fails=1)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        runs.append((cursor, job.args["table"]))
        for i in range((cursor or 0) + 1, 11):
            if i == 6 and job.args["table"] == "bad":
                raise RuntimeError("no such table")
            yield i

    async with (
        Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
    ):
        job = await enqueuer.enqueue("walk", {"table": "bad"})
        other = await enqueuer.enqueue("walk", {"table": "bad"})
        assert job is not None and other is not None
        await pool.drain(timeout=10)
        for dead in (job, other):
            assert await redis.zscore(keys.dead, dead.id) is not None
            assert await cursor_of(redis, keys, dead.id) == 5
        info = await client.update_job(job.id, args={"table": "good"})
        assert info.progress is not None and info.progress["cursor"] == 5  # not reset
        assert await client.retry_dead_job(job.id)
        assert await client.delete_dead_job(other.id)
        assert await redis.hget(keys.checkpoints, other.id) is None
        await pool.drain(timeout=10)
        assert await job.result(timeout=5) == {"done": 10, "cursor": 10}
    assert sorted(runs, key=str) == sorted([(None, "bad"), (None, "bad"), (5, "good")], key=str)
    await assert_invariants(redis, namespace, drained=True, stopped=True)
