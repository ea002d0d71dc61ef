"""destroy() racing other admin actions: it looks the job up, then runs its script
(lua/destroy.lua), which must erase every trace whatever changed in between."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer
from errands.admin.jobinfo import JobInfo
from tests.support.client_env import traces
from tests.support.invariants import assert_invariants


async def test_destroy_erases_an_edit_made_after_its_lookup(
    redis: Redis,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another admin's update_job between destroy()'s lookup (no edits then) and its script
    left the edit's history record (``<id>:e1``) and its index entries behind: the script
    erased only the edits the lookup counted."""
    job = await enqueuer.enqueue("work", {"n": 1}, delay=60)
    assert job is not None
    lookup = client.job

    async def lookup_then_edit(job_id: str) -> JobInfo | None:
        info = await lookup(job_id)
        async with Client(redis, namespace=namespace) as other:
            await other.update_job(job_id, args={"n": 2})
            await other.update_job(job_id, priority=3)
        return info

    monkeypatch.setattr(client, "job", lookup_then_edit)
    assert await client.destroy(job.id) is True
    assert await traces(redis, namespace, job.id) == []
    assert await client.history_job(job.id) == []
    await assert_invariants(redis, namespace)


async def test_jobs_of_a_partition_destroyed_or_deleted_leave_no_index_entry(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """The partition index (lib/limits.lua) kept the entry "<partition>\\0<score>\\0<id>" of a
    queued job destroyed, deleted or cancelled (and of one given another priority, under its
    old score) until a fetch of its name reached it: with no pool serving the name, for ever,
    although destroy() removes every trace of the job and a deleted job is forgotten."""
    jobs = [await enqueuer.enqueue("work", {"i": i}, partition=f"p{i % 2}") for i in range(5)]
    ids = [j.id for j in jobs if j is not None]
    destroyed, deleted, edited, cancelled, kept = ids
    await client.update_job(edited, priority=5)
    assert await client.destroy(destroyed) is True
    assert await client.delete_queued_job(deleted) is True
    assert await client.destroy(edited) is True
    assert await client.cancel(cancelled) == "cancelled"
    assert await client.delete_cancelled_job(cancelled) is True
    for job_id in (destroyed, edited):
        assert await traces(redis, namespace, job_id) == [], job_id
    index = await redis.zrange(client.keys.partition_queue("work"), 0, -1)
    assert [e.split(b"\0")[-1].decode() for e in index] == [kept]
    await assert_invariants(redis, namespace)
