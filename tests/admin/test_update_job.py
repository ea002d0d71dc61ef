"""Client.update_job: a waiting or dead job gets new args and/or priority, recorded in its
history; running, finished and cancelled jobs are refused; destroy erases the edits too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, JobNotFoundError, WorkerPool, Workflow
from errands.errors import NonRetryableError
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants


async def test_a_queued_job_takes_new_args_and_moves_by_its_new_priority(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    first = await enqueuer.enqueue("sync", {"n": 1})
    second = await enqueuer.enqueue("sync", {"n": 2})
    assert first is not None and second is not None
    info = await client.update_job(second.id, args={"n": 20}, priority=5)
    assert (info.args, info.priority, info.edits, info.status) == ({"n": 20}, 5, 1, "queued")
    queue = [m.decode() for m in await redis.zrange(Keys(namespace).queue("sync"), 0, -1)]
    assert queue == [second.id, first.id]  # higher priority first
    info = await client.update_job(second.id, priority=0)
    assert (info.args, info.priority, info.edits) == ({"n": 20}, 0, 2)
    queue = [m.decode() for m in await redis.zrange(Keys(namespace).queue("sync"), 0, -1)]
    assert queue == [first.id, second.id]  # back behind the one enqueued before it
    history = await client.history_job(second.id)
    assert [(h.status, h.args) for h in history] == [("edited", {"n": 20}), ("edited", {"n": 20})]
    await assert_invariants(redis, namespace)


async def test_a_dead_job_is_edited_then_retried_with_its_new_args(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    seen: list[int] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("charge")
    async def charge(job: Job, amount: int) -> None:
        seen.append(amount)
        if amount < 0:
            raise NonRetryableError("negative amount")

    job = await enqueuer.enqueue("charge", {"amount": -5})
    assert job is not None
    async with pool:
        await pool.drain(timeout=10)
        info = await client.update_job(job.id, args={"amount": 5})
        assert info.status == "dead" and info.args == {"amount": 5}
        assert await client.retry_dead_job(job.id)
        await pool.drain(timeout=10)
    assert seen == [-5, 5]
    history = await client.history_job(job.id)
    assert [h.status for h in history] == ["dead", "edited", "finished"]
    assert history[1].result == {"before": {"args": {"amount": -5}, "priority": 0}}
    await assert_invariants(redis, namespace, drained=True)


async def test_scheduled_and_retrying_jobs_can_be_edited(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    later = await enqueuer.enqueue("sync", {"n": 1}, delay=60)
    assert later is not None
    info = await client.update_job(later.id, args={"n": 2})
    assert info.status == "scheduled" and info.args == {"n": 2} and info.due_at is not None
    await redis.zrem(Keys(namespace).scheduled("sync"), later.id)  # as if it failed once:
    await redis.zadd(Keys(namespace).retry("sync"), {later.id: 1})
    info = await client.update_job(later.id, priority=3)
    assert info.status == "retrying" and info.priority == 3
    await assert_invariants(redis, namespace)


async def test_running_finished_and_cancelled_jobs_are_refused(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("slow")
    async def slow(job: Job) -> None:
        started.set()
        await release.wait()

    running = await enqueuer.enqueue("slow", {})
    cancelled = await enqueuer.enqueue("other", {})
    assert running is not None and cancelled is not None
    assert await client.cancel(cancelled.id) == "cancelled"
    async with pool:
        async with asyncio.timeout(10):
            await started.wait()
        with pytest.raises(ValueError, match="in_progress"):
            await client.update_job(running.id, args={"x": 1})
        release.set()
        await pool.drain(timeout=10)
    with pytest.raises(ValueError, match="finished"):
        await client.update_job(running.id, args={"x": 1})
    with pytest.raises(ValueError, match="cancelled"):
        await client.update_job(cancelled.id, priority=1)
    with pytest.raises(JobNotFoundError):
        await client.update_job("nope", priority=1)
    with pytest.raises(ValueError, match="args and/or priority"):
        await client.update_job(cancelled.id)
    with pytest.raises(ValueError):
        await client.update_job(cancelled.id, priority=5000)


async def test_destroy_erases_the_edits_too(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    job = await enqueuer.enqueue("sync", {"n": 1})
    assert job is not None
    await client.update_job(job.id, args={"n": 2})
    await client.update_job(job.id, args={"n": 3})
    assert await client.destroy(job.id)
    keys = Keys(namespace)
    assert await redis.hget(keys.history_data, f"{job.id}:e1") is None
    assert await redis.hget(keys.history_data, f"{job.id}:e2") is None
    assert await client.history_job(job.id) == [] or all(
        h.status != "edited" for h in await client.history_job(job.id)
    )
    await assert_invariants(redis, namespace)


async def test_a_workflow_member_waiting_for_its_dependencies_is_refused_in_clear_words(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """Its status is "waiting": the refusal read "is waiting: only waiting or dead jobs can be
    edited", refusing a waiting job in the words that allow one."""
    wf = Workflow("edit")
    wf.add("step", {"n": 1}, id="a")
    wf.add("step", {"n": 2}, id="b", after=["a"])
    run = await enqueuer.enqueue_workflow(wf)
    member = run.job_id("b")
    with pytest.raises(ValueError) as refused:
        await client.update_job(member, args={"n": 3})
    assert str(refused.value) == (
        f"job {member} is waiting: only queued, scheduled, retrying or dead jobs can be edited"
    )
    info = await client.job(member)
    assert info is not None and (info.args, info.edits) == ({"n": 2}, 0)
    await assert_invariants(redis, namespace)


async def test_an_edit_made_while_another_reads_keeps_its_record(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """(hunt-admin) Another operator's edit lands between this update's look-up of the job and
    its read of the envelope: this edit is numbered from the envelope it replaces (the edit
    after the other's), not from the look-up, which named its record as the other's ("<id>:e1")
    and overwrote it: one edit of two left in the history, the envelope counting one."""
    job = await enqueuer.enqueue("sync", {"n": 1})
    assert job is not None
    other = Client(redis, namespace=namespace)
    source = client._edit_source
    edited: list[int] = []

    async def late_source(info: Any) -> str:
        found = await source(info)
        if not edited:
            edited.append((await other.update_job(job.id, args={"n": 2})).edits)
        return found

    client._edit_source = late_source  # type: ignore[method-assign]
    info = await client.update_job(job.id, args={"n": 3})
    assert (edited, info.edits, info.args) == ([1], 2, {"n": 3})
    history = await client.history_job(job.id)
    assert [(h.status, h.args) for h in history] == [("edited", {"n": 2}), ("edited", {"n": 3})]
    assert history[1].result == {"before": {"args": {"n": 2}, "priority": 0}}
    await assert_invariants(redis, namespace)
