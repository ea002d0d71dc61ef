"""Issue 14 items 3, 4 and 8: a cancel ends the attempt it was meant for, and only that one,
and the record of it stays. The invariant checker runs after every test of this module."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from errands import Job, JobCancelledError, JobStatus, WorkerPool
from tests.support.client_env import Env, until
from tests.support.invariants import assert_invariants


@pytest.fixture(autouse=True)
async def invariants(redis: Redis, namespace: str) -> AsyncIterator[None]:
    yield  # (torn down after the env fixture: its pools are stopped by then)
    await assert_invariants(redis, namespace, context="after the test:")


@pytest.fixture
async def env(redis: Redis, namespace: str) -> AsyncIterator[Env]:
    e = Env(redis, namespace, shutdown_grace=0.5)
    yield e
    await e.pool.stop()


async def test_cancel_of_a_running_plain_def_job_settles_it_as_cancelled(env: Env) -> None:
    """Its thread's result was stored and the job finished, though the docs say it settles as
    cancelled when its thread returns, its return value discarded."""
    started, release = threading.Event(), threading.Event()

    @env.pool.job("blocking")
    def blocking(job: Job) -> str:
        started.set()
        release.wait(10)
        return "done"

    job = await env.enqueuer.enqueue("blocking", {})
    assert job is not None
    await env.pool.start()
    await until(started.is_set)
    assert await env.client.cancel(job.id) == "running"
    await asyncio.sleep(0.1)  # (the pool hears the request; the thread still runs)
    release.set()
    with pytest.raises(JobCancelledError):
        await env.client.result(job.id, timeout=10)
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.CANCELLED
    assert [h.status for h in await env.client.history_job(job.id)] == ["cancelled"]
    assert (await env.client.stats()).get("processed", 0) == 0


async def test_a_cancel_heard_by_another_pool_does_not_cancel_the_rescheduled_job(
    env: Env,
) -> None:
    """Every pool hears every cancel message and remembered it for 10 s in case the job was
    about to start there: a job cancelled, then rescheduled at once by an operator, was
    cancelled again by the pool that fetched it, while reschedule() had reported success."""
    runs: list[str] = []

    async def work(job: Job) -> str:
        runs.append(job.id)
        if len(runs) == 1:
            await asyncio.Event().wait()  # the first run waits for its cancel
        await asyncio.sleep(0.2)  # (time for a wrong cancel to land)
        return "ran"

    env.pool.register("work", work)
    other = WorkerPool(env.redis, namespace=env.namespace, clock=env.clock, shutdown_grace=0.5)
    other.register("work", work)
    job = await env.enqueuer.enqueue("work", {})
    assert job is not None
    await env.pool.start()
    await until(lambda: runs)
    async with other:  # listening: it hears the cancel of a job that does not run there
        await until(lambda: _listeners(env, 2))
        assert await env.client.cancel(job.id) == "running"
        await until(lambda: _status(env, job.id, JobStatus.CANCELLED))
        await env.pool.stop()  # the rescheduled job can only run in the other pool now
        assert await env.client.reschedule(job.id, env.clock.now()) is True
        assert await env.client.result(job.id, timeout=10) == "ran"
    assert len(runs) == 2


async def _status(env: Env, job_id: str, status: str) -> bool:
    info = await env.client.job(job_id)
    return info is not None and info.status == status


async def _listeners(env: Env, n: int) -> bool:
    [(_channel, count)] = await env.redis.pubsub_numsub(env.keys.control_channel)
    return bool(count >= n)


async def test_the_run_after_cancel_and_reschedule_keeps_the_cancelled_record(env: Env) -> None:
    """The re-run reused the cancelled attempt's number: its `finished` record replaced the
    `cancelled` one."""
    first = asyncio.Event()

    @env.pool.job("work")
    async def work(job: Job) -> str:
        if not first.is_set():
            first.set()
            await asyncio.Event().wait()
        return "ran"

    job = await env.enqueuer.enqueue("work", {})
    assert job is not None
    await env.pool.start()
    await until(first.is_set)
    assert await env.client.cancel(job.id) == "running"
    await until(lambda: _status(env, job.id, JobStatus.CANCELLED))
    assert await env.client.reschedule(job.id, env.clock.now()) is True
    assert await env.client.result(job.id, timeout=10) == "ran"
    history = await env.client.history_job(job.id)
    assert [(h.attempt, h.status) for h in history] == [(1, "cancelled"), (2, "finished")]


async def test_a_waiting_job_cancelled_is_recorded_and_its_rerun_numbered_after(
    env: Env,
) -> None:
    @env.pool.job("work")
    async def work(job: Job) -> int:
        return 1

    job = await env.enqueuer.enqueue("work", {}, delay=60)
    assert job is not None
    assert await env.client.cancel(job.id) == "cancelled"
    history = await env.client.history_job(job.id)
    assert [(h.attempt, h.status) for h in history] == [(1, "cancelled")]
    assert await env.client.reschedule(job.id, env.clock.now()) is True
    await env.pool.drain(timeout=5)
    history = await env.client.history_job(job.id)
    assert [(h.attempt, h.status) for h in history] == [(1, "cancelled"), (2, "finished")]
