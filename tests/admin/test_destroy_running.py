"""``Client.destroy`` of a running job returns once the request is stored (lua/destroy.lua): its
pool drops the job when it acts on it. What a caller sees after the return: the job still there
(``job()``, an enqueue of its id finding it) while its handler runs, a plain def handler's
thread to its end; once the attempt ends, however it ends, nothing of the job is written (no
result record, history, tombstone: tests/store/test_destroy_ending.py for each ending) and
nothing of it is left. ``destroy(job_id, wait=...)`` waits for that drop (admin/endings.py
until_dropped), TimeoutError when it has not come in time."""

from __future__ import annotations

import asyncio
import threading

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, JobNotFoundError, WorkerPool
from errands.store.keys import Keys
from tests.support.client_env import traces, until
from tests.support.invariants import assert_invariants


async def test_a_running_job_destroyed_with_wait_is_gone_when_it_returns(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """The handler swallows the cancel and checks in from its cleanup, then returns a value:
    ``destroy(wait=...)`` returns after the handler returned and its ack dropped the job."""
    pool = WorkerPool(redis, namespace=namespace)
    started, ended = asyncio.Event(), asyncio.Event()

    @pool.job("stubborn")
    async def stubborn(job: Job) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await job.checkin("cleaning up")  # (while its attempt still holds the job)
            await asyncio.sleep(0.2)
        ended.set()
        return "a result nobody keeps"

    async with pool:
        job = await enqueuer.enqueue("stubborn", {}, job_id="gone-stubborn")
        assert job is not None
        await asyncio.wait_for(started.wait(), 10)
        assert await client.destroy("gone-stubborn", wait=10) is True
        assert ended.is_set()  # the handler returned before destroy did
        assert await client.job("gone-stubborn") is None
        with pytest.raises(JobNotFoundError):
            await client.result("gone-stubborn", timeout=0)
        assert await client.history_job("gone-stubborn") == []
        again = await enqueuer.enqueue("later", {}, job_id="gone-stubborn", delay=3600)  # a new job
        assert again is not None and not again.existed
        assert await client.destroy("gone-stubborn", wait=0) is True  # (not running: gone at once)
    assert await traces(redis, namespace, "gone-stubborn") == []
    assert await redis.hget(Keys(namespace).stats, "cancelled") == b"1"
    await assert_invariants(redis, namespace, stopped=True)


async def test_destroy_returns_before_a_thread_handler_ends(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """A plain def handler cannot be interrupted: after ``destroy`` returns, the job is still
    there until its thread returns (an enqueue of its id finds it and stores nothing), and a
    ``wait`` too short raises TimeoutError; once the thread returns, nothing of it is left."""
    pool = WorkerPool(redis, namespace=namespace)
    started, release = threading.Event(), threading.Event()

    @pool.job("blocking")
    def blocking(job: Job) -> int:
        started.set()
        release.wait(30)
        return 1

    async with pool:
        job = await enqueuer.enqueue("blocking", {}, job_id="gone-blocking")
        assert job is not None
        assert await asyncio.to_thread(started.wait, 10)
        assert await client.destroy("gone-blocking") is True
        info = await client.job("gone-blocking")
        assert info is not None and info.status == "in_progress"
        same = await enqueuer.enqueue("blocking", {}, job_id="gone-blocking")
        assert same is not None and same.existed  # (nothing stored: the job is there)
        with pytest.raises(
            TimeoutError, match=r"job gone-blocking was not dropped by its pool within 0\.2s"
        ):
            await client.destroy("gone-blocking", wait=0.2)
        with pytest.raises(TimeoutError, match="within 0s"):
            await client.destroy("gone-blocking", wait=0)
        waiter = asyncio.create_task(client.destroy("gone-blocking", wait=10))  # (asked again)
        await until(lambda: client.hub.subscribers == 1)  # (its script ran: it waits)
        release.set()
        assert await waiter is True
        assert await client.job("gone-blocking") is None
        assert await client.destroy("gone-blocking", wait=10) is False  # gone: unknown now
    assert await traces(redis, namespace, "gone-blocking") == []
    await assert_invariants(redis, namespace, stopped=True)


@pytest.mark.parametrize("bad", [-1, float("nan"), "1", True])
async def test_a_bad_wait_destroys_nothing(client: Client, enqueuer: Enqueuer, bad: object) -> None:
    job = await enqueuer.enqueue("later", {}, delay=3600)
    assert job is not None
    with pytest.raises(ValueError, match="wait must be a number of seconds"):
        await client.destroy(job.id, wait=bad)  # type: ignore[arg-type]
    assert await client.job(job.id) is not None
