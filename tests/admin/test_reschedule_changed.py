"""``Client.reschedule`` of a dead or cancelled job that changed between its read and its move
(edited by ``update_job``, or run again by another call and ended again) moves nothing, and
says so as ``retry_dead_job`` does: JobChangedError (a ValueError), the job still where it
was, as changed. ``False`` said "not in a state to reschedule any more", which was untrue."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, NonRetryableError, WorkerPool
from errands.errors import JobChangedError, UniqueLockHeldError
from errands.store.keys import Keys
from tests.admin.test_unique_rerun import DIGEST, dead_unique
from tests.admin.test_update_unique import locks
from tests.support.client_env import until
from tests.support.invariants import assert_invariants


def meanwhile(client: Client, change: Any) -> None:
    """``change()`` runs between the reschedule's read and its move."""
    move = client.scripts.move

    async def late_move(*args: Any, **kwargs: Any) -> bool:
        await change()
        return bool(await move(*args, **kwargs))

    client.scripts.move = late_move  # type: ignore[method-assign]


@pytest.mark.parametrize("at", [0.0, 600.0])
async def test_a_dead_unique_job_edited_meanwhile_is_not_rescheduled_and_that_is_said(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer, at: float
) -> None:
    keys = Keys(namespace)
    job_id = await dead_unique(redis_url, namespace, enqueuer)
    other = Client(redis, namespace=namespace)

    async def edit() -> None:
        await other.update_job(job_id, priority=5)

    meanwhile(client, edit)
    with pytest.raises(JobChangedError, match="changed while it was being rescheduled"):
        await client.reschedule(job_id, time.time() + at if at else 0)
    info = await client.job(job_id)
    assert info is not None and info.status == "dead" and info.priority == 5
    assert await locks(redis, keys) == ({}, {}, [])  # (no lock taken: nothing moved)
    del client.scripts.move  # (its own move again)
    assert await client.reschedule(job_id, 0)  # looked at again: moved, taking its lock
    assert await locks(redis, keys) == ({DIGEST: job_id}, {job_id: DIGEST}, [DIGEST])
    await assert_invariants(redis, namespace)


async def test_a_cancelled_job_run_and_cancelled_again_meanwhile_is_not_rescheduled(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """A plain job (no lock): a cancel records the attempt it would run next, so reschedule
    renumbers it from the envelope read and checks it; another call moved it and it was
    cancelled again meanwhile."""
    job = await enqueuer.enqueue("x", {"a": 1}, delay=60)
    assert job is not None
    assert await client.cancel(job.id) == "cancelled"
    other = Client(redis, namespace=namespace)

    async def again() -> None:
        assert await other.reschedule(job.id, time.time() + 60)
        assert await other.cancel(job.id) == "cancelled"

    meanwhile(client, again)
    with pytest.raises(JobChangedError, match="changed while it was being rescheduled"):
        await client.reschedule(job.id, 0)
    info = await client.job(job.id)
    assert info is not None and info.status == "cancelled"
    await assert_invariants(redis, namespace)


async def test_a_job_moved_meanwhile_still_answers_false(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """Not a change: the job left its set (run again by another call): False, as before."""
    job = await enqueuer.enqueue_unique("x", {"a": 1}, delay=60)
    assert job is not None
    assert await client.cancel(job.id) == "cancelled"
    other = Client(redis, namespace=namespace)

    async def moved() -> None:
        assert await other.reschedule(job.id, 0)

    meanwhile(client, moved)
    assert await client.reschedule(job.id, time.time() + 60) is False
    info = await client.job(job.id)
    assert info is not None and info.status == "queued"
    await assert_invariants(redis, namespace)


async def test_the_refusal_of_a_lock_held_by_key_does_not_say_args(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """A lock of enqueue_unique(key=...) is held by a job of other args: the refusal says the
    holder holds its lock, not that it "waits with its args" (untrue here)."""
    job = await enqueuer.enqueue_unique("x", {"a": 1}, key="k", delay=60)
    assert job is not None
    assert await client.cancel(job.id) == "cancelled"
    holder = await enqueuer.enqueue_unique("x", {"a": 2}, key="k", delay=60)
    assert holder is not None
    with pytest.raises(UniqueLockHeldError) as held:
        await client.reschedule(job.id, 0)
    message = str(held.value)
    assert holder.id in message and "args" not in message
    assert "holds its enqueue_unique lock" in message


async def plain_job_in(redis: Redis, enqueuer: Enqueuer, status: str) -> str:
    """A job of ``x`` (no lock, no Dedup key, no record at its next attempt) in the set of
    ``status``: as the read-only reschedule (no renumbering, no lock) saw it."""
    keys = enqueuer.keys
    job = await enqueuer.enqueue("x", {"a": 1}, delay=60)
    assert job is not None
    if status != "scheduled":
        assert await redis.zrem(keys.scheduled("x"), job.id) == 1
        await redis.zadd(keys.dead if status == "dead" else keys.retry("x"), {job.id: 1})
    return job.id


@pytest.mark.parametrize("status", ["dead", "scheduled", "retrying"])
@pytest.mark.parametrize("at", [0.0, 600.0])
async def test_a_plain_job_edited_meanwhile_is_not_rescheduled_and_that_is_said(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer, status: str, at: float
) -> None:
    """(hunt-admin) A job of no lock nor Dedup key, no record at its next attempt: the move was
    sent without the envelope read, so a job edited meanwhile was moved anyway (its edit with
    it), where docs/admin.md promises JobChangedError, nothing moved."""
    job_id = await plain_job_in(redis, enqueuer, status)
    other = Client(redis, namespace=namespace)

    async def edit() -> None:
        await other.update_job(job_id, args={"a": 2})

    meanwhile(client, edit)
    with pytest.raises(JobChangedError, match="changed while it was being rescheduled"):
        await client.reschedule(job_id, time.time() + at if at else 0)
    info = await client.job(job_id)
    assert info is not None and (info.status, info.args) == (status, {"a": 2})
    del client.scripts.move  # (its own move again)
    assert await client.reschedule(job_id, time.time() + at if at else 0)  # looked at again
    await assert_invariants(redis, namespace)


async def test_a_dead_job_run_again_and_dead_again_meanwhile_is_not_run_a_third_time(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """(hunt-admin) With a running pool: another operator retries the dead job, it runs and
    dies again while this reschedule is on its way: the job ran twice, not three times."""
    runs: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("y")
    async def fail(job: Job) -> None:
        runs.append(job.id)
        raise NonRetryableError("broken")

    job = await enqueuer.enqueue("y", {})
    assert job is not None
    other = Client(redis, namespace=namespace)
    keys = Keys(namespace)
    async with pool:
        await pool.drain(timeout=10)
        assert await redis.zscore(keys.dead, job.id) is not None

        async def again() -> None:
            assert await other.retry_dead_job(job.id)
            await until(lambda: len(runs) == 2)
            await pool.drain(timeout=10)

        meanwhile(client, again)
        with pytest.raises(JobChangedError):
            await client.reschedule(job.id, 0)
        await pool.drain(timeout=10)
    assert runs == [job.id, job.id]
    info = await client.job(job.id)
    assert info is not None and info.status == "dead"
    await assert_invariants(redis, namespace, drained=True)
