"""(hunt-admin probes) An admin action on a job whose pool died holding it (kill -9: registered,
its heartbeat long past, the job in its in-progress set with its attempt): ``cancel`` answers
``running``, ``destroy`` too; the reaper of a live pool then ends the job as asked (cancelled;
dropped, leaving nothing) and never runs it again, and ``destroy(wait=...)`` returns once that
drop came. The invariant checker finds nothing, the namespace drained."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from errands import Client, Job, WorkerPool
from errands.store.scripts import Scripts
from tests.support.client_env import traces, until
from tests.support.deadpool import dead_pool_row
from tests.support.invariants import assert_invariants


@pytest.mark.parametrize("action", ["cancel", "destroy"])
async def test_a_job_of_a_dead_pool_is_ended_as_asked_and_never_run_again(
    redis: Redis, redis_url: str, namespace: str, client: Client, action: str
) -> None:
    _member, job_id, _name = await dead_pool_row(redis, namespace, Scripts(redis, client.keys))
    runs: list[str] = []
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.1, dead_timeout=0.5
    )

    @pool.job("work")
    async def work(job: Job) -> None:
        runs.append(job.id)

    destroyed = None
    if action == "cancel":
        assert await client.cancel(job_id) == "running"
    else:  # (asked before the reaper runs: it waits for the drop)
        destroyed = asyncio.create_task(client.destroy(job_id, wait=10))
        await until(lambda: redis.hget(client.keys.cancel_requests, job_id))
    async with pool:
        if destroyed is not None:
            assert await destroyed is True
            assert await traces(redis, namespace, job_id) == []
        else:
            await until(lambda: client.redis.zscore(client.keys.cancelled, job_id), 10)
        await pool.drain(timeout=10)
    assert runs == []
    info = await client.job(job_id)
    assert (info and info.status) == ("cancelled" if action == "cancel" else None)
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_job_buried_by_the_reaper_then_retried_keeps_its_dead_record(
    redis: Redis, redis_url: str, namespace: str, client: Client
) -> None:
    """A job taken back from dead pools too often is buried with a ``dead`` record at the
    attempt it would have run next (no failure counted: its envelope unchanged). Retried
    (retry_dead_job), its next run is numbered after that record: the run's record overwrote
    it, the burial gone from its history, as a cancel's would be without the renumbering that
    reschedule and the deletes do (Client._renumbered)."""
    _member, job_id, _name = await dead_pool_row(redis, namespace, Scripts(redis, client.keys))
    await redis.hset(client.keys.recoveries, job_id, 5)  # (taken back too often: buried next)
    runs: list[str] = []
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.1, dead_timeout=0.5
    )

    @pool.job("work")
    async def work(job: Job) -> None:
        runs.append(job.id)

    async with pool:
        await until(lambda: redis.zscore(client.keys.dead, job_id), 10)
        assert [(h.attempt, h.status) for h in await client.history_job(job_id)] == [(1, "dead")]
        assert await client.retry_dead_job(job_id)
        await pool.drain(timeout=10)
    assert runs == [job_id]
    history = await client.history_job(job_id)
    assert [(h.attempt, h.status) for h in history] == [(1, "dead"), (2, "finished")]
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_job_cancelled_by_the_reaper_then_rescheduled_keeps_its_record(
    redis: Redis, redis_url: str, namespace: str, client: Client
) -> None:
    """The reaper's cancel of a job whose pool died is recorded at the attempt it ran; the job
    rescheduled runs once more, numbered after it (its records both kept)."""
    _member, job_id, _name = await dead_pool_row(redis, namespace, Scripts(redis, client.keys))
    assert await client.cancel(job_id) == "running"
    runs: list[str] = []
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.1, dead_timeout=0.5
    )

    @pool.job("work")
    async def work(job: Job) -> None:
        runs.append(job.id)

    async with pool:
        await until(lambda: redis.zscore(client.keys.cancelled, job_id), 10)
        assert await client.reschedule(job_id, 0)
        await pool.drain(timeout=10)
    assert runs == [job_id]
    history = await client.history_job(job_id)
    assert [(h.attempt, h.status) for h in history] == [(1, "cancelled"), (2, "finished")]
    await assert_invariants(redis, namespace, drained=True, stopped=True)
