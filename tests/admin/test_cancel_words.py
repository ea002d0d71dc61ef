"""Client.cancel of a job that left nothing but its tombstone, or its run's record, says what
became of it (it raised JobNotFoundError, "never enqueued ..."); retry_dead_job of a job
changed meanwhile says so (it returned False, and the CLI said "no dead job")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Job, JobNotFoundError, JobStatus, Workflow
from tests.support.client_env import Env, until


@pytest.fixture
async def env(redis: Redis, namespace: str) -> AsyncIterator[Env]:
    e = Env(redis, namespace, shutdown_grace=0.5)
    yield e
    await e.pool.stop()


async def test_cancel_of_a_job_that_finished_keeping_no_record_says_ended(env: Env) -> None:
    @env.pool.job("quick", result_ttl=0)
    async def quick(job: Job) -> int:
        return 1

    job = await env.enqueuer.enqueue("quick", {})
    assert job is not None
    await env.pool.drain(timeout=5)
    assert await env.client.job(job.id) is None  # no record: only its tombstone is left
    assert await env.client.cancel(job.id) == "ended"
    with pytest.raises(JobNotFoundError):  # an id of no job still says so
        await env.client.cancel(job.id + "x")


async def test_cancel_of_a_job_finishing_after_its_lookup_without_a_record_says_ended(
    env: Env,
) -> None:
    release = asyncio.Event()

    @env.pool.job("slow", result_ttl=0)
    async def slow(job: Job) -> str:
        await release.wait()
        return "done"

    job = await env.enqueuer.enqueue("slow", {})
    assert job is not None
    await env.pool.start()
    await until(lambda: env.pool.worker is not None and env.pool.worker.running)
    looked_up = env.client.job

    async def lookup_then_finish(job_id: str) -> Any:
        info = await looked_up(job_id)  # running, at the lookup
        assert info is not None and info.status == JobStatus.IN_PROGRESS
        release.set()
        await until(lambda: env.redis.zscore(env.keys.ended, job_id))
        return info

    env.client.job = lookup_then_finish  # type: ignore[method-assign]
    assert await env.client.cancel(job.id) == "ended"


async def test_cancel_of_a_member_its_run_cancelled_says_already(env: Env) -> None:
    wf = Workflow("pair")
    wf.add("work", {}, id="a")
    wf.add("merge", {}, id="b", after=["a"])
    run = await env.enqueuer.enqueue_workflow(wf)
    assert await env.client.workflow(run.id).cancel()
    assert (await env.client.workflow(run.id).status()).nodes["b"].state == "cancelled"
    assert await env.client.cancel(run.job_id("b")) == "already"
