"""Client.cancel of a job that left nothing but its tombstone, or its run's record, says what
became of it (it raised JobNotFoundError, "never enqueued ..."); retry_dead_job of a job
changed meanwhile says so (it returned False, and the CLI said "no dead job")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Client, Job, JobNotFoundError, JobStatus, Workflow
from errands.cli import main
from errands.errors import JobChangedError
from errands.store.adminscripts import AdminScripts
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


async def test_a_retry_of_a_dead_job_edited_meanwhile_says_it_changed(env: Env) -> None:
    @env.pool.job("fatal", max_fails=1)
    async def fatal(job: Job) -> None:
        raise ValueError("fatal")

    job = await env.enqueuer.enqueue("fatal", {"v": 1})
    assert job is not None
    await env.pool.drain(timeout=5)
    assert await env.client.dead_count() == 1
    move = env.client.scripts.move

    async def edited_first(*args: Any, **kwargs: Any) -> bool:
        await env.client.update_job(job.id, args={"v": 2})  # another operator edits it
        return await move(*args, **kwargs)

    env.client.scripts.move = edited_first  # type: ignore[method-assign]
    with pytest.raises(JobChangedError, match="changed while it was being retried"):
        await env.client.retry_dead_job(job.id)
    env.client.scripts.move = move  # type: ignore[method-assign]
    info = await env.client.job(job.id)  # still dead, with the edit: nothing moved
    assert info is not None and (info.status, info.args) == (JobStatus.DEAD, {"v": 2})
    assert await env.client.retry_dead_job(job.id) is True  # tried again: retried


def test_cli_dead_retry_of_a_job_edited_meanwhile_says_it_changed(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    namespace: str,
) -> None:
    """It said "no dead job" (status 1) of a job still dead."""

    async def dead_job() -> str:
        redis = Redis.from_url(redis_url)
        env = Env(redis, namespace)

        @env.pool.job("fatal", max_fails=1)
        async def fatal(job: Job) -> None:
            raise ValueError("fatal")

        job = await env.enqueuer.enqueue("fatal", {"v": 1})
        assert job is not None
        await env.pool.drain(timeout=5)
        await redis.aclose()
        return job.id

    job_id = asyncio.run(dead_job())
    move = AdminScripts.move

    async def edited_first(self: AdminScripts, *args: Any, **kwargs: Any) -> bool:
        async with Client.from_url(redis_url, namespace=namespace) as other:
            await other.update_job(job_id, args={"v": 2})  # another operator edits it
        return await move(self, *args, **kwargs)

    monkeypatch.setattr(AdminScripts, "move", edited_first)
    where = ("--redis", redis_url, "--namespace", namespace)
    assert main(["dead", "retry", job_id, *where]) == 2
    assert "changed while it was being retried" in capsys.readouterr().err
