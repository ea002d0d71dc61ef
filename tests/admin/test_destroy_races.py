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
