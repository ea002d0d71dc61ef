"""A job removed by an admin action (``Client.destroy``, the ``delete_*`` methods) is forgotten:
its id may be enqueued again (docs/enqueueing.md, "Idempotent enqueue"; docs/reliability.md),
where the same id is refused while the job is stored or ended recently."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from errands import FixedBackoff, Job, JobStatus
from tests.support.client_env import Env
from tests.support.invariants import assert_invariants

ID = "order-17"


@pytest.fixture
async def env(redis: Redis, namespace: str) -> AsyncIterator[Env]:
    e = Env(redis, namespace, shutdown_grace=0.5)
    yield e
    await e.pool.stop()


def charge_jobs(env: Env) -> list[int]:
    """``charge`` fails its attempts while ``env.pool.context['broken']`` (two tries, 60 s
    apart); returns the list of the ``n`` of each run."""
    runs: list[int] = []
    env.pool.context["broken"] = False

    @env.pool.job("charge", max_fails=2, backoff=FixedBackoff(60))
    async def charge(job: Job, n: int) -> int:
        runs.append(n)
        if job.context["broken"]:
            raise RuntimeError("card declined")
        return n

    return runs


async def job_in(env: Env, status: JobStatus) -> None:
    """Job ``ID`` (``n`` = 1) brought to ``status``."""
    delay = 600 if status in (JobStatus.SCHEDULED, JobStatus.CANCELLED) else None
    job = await env.enqueuer.enqueue("charge", {"n": 1}, job_id=ID, delay=delay)
    assert job is not None and not job.existed
    if status == JobStatus.CANCELLED:
        assert await env.client.cancel(ID) == "cancelled"
    elif status != JobStatus.SCHEDULED and status != JobStatus.QUEUED:
        env.pool.context["broken"] = status != JobStatus.FINISHED
        await env.pool.drain(timeout=5)  # finished, or retrying after its first failure
        if status == JobStatus.DEAD:
            await env.advance(60)  # the second try fails too
        env.pool.context["broken"] = False
    info = await env.client.job(ID)
    assert info is not None and info.status == status


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (JobStatus.QUEUED, "destroy"),
        (JobStatus.SCHEDULED, "destroy"),
        (JobStatus.RETRYING, "destroy"),
        (JobStatus.DEAD, "destroy"),
        (JobStatus.CANCELLED, "destroy"),
        (JobStatus.FINISHED, "destroy"),
        (JobStatus.SCHEDULED, "delete_scheduled_job"),
        (JobStatus.RETRYING, "delete_retry_job"),
        (JobStatus.DEAD, "delete_dead_job"),
        (JobStatus.DEAD, "delete_all_dead_jobs"),
    ],
)
async def test_a_removed_jobs_id_can_be_enqueued_again(
    env: Env, status: JobStatus, action: str
) -> None:
    runs = charge_jobs(env)
    await job_in(env, status)
    refused = await env.enqueuer.enqueue("charge", {"n": 2}, job_id=ID)
    assert refused is not None and refused.existed  # stored, or ended recently
    if action == "delete_all_dead_jobs":
        assert await env.client.delete_all_dead_jobs() == 1
    else:
        assert await getattr(env.client, action)(ID) is True
    assert await env.client.job(ID) is None
    again = await env.enqueuer.enqueue("charge", {"n": 3}, job_id=ID)
    assert again is not None and not again.existed  # forgotten: stored anew
    before = len(runs)
    await env.pool.drain(timeout=5)
    assert runs[before:] == [3]
    assert await env.client.result(ID, timeout=1) == 3
    await assert_invariants(env.redis, env.namespace, drained=True)
