"""A run of a job that ends leaves alone a later run of the same job in the same pool: a job
snoozed (or failed) with a short delay can be fetched again, and start, while its first run
still settles. The first run's end dropped the job's entry in ``running`` (by which a cancel
request reaches the run) and any cancel request for it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, RetryLater, WorkerPool
from tests.limits.support import until


async def test_the_end_of_a_run_leaves_a_later_run_of_its_job_alone(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = WorkerPool(redis, namespace=namespace, concurrency=2)
    ended: list[str] = []

    @pool.job("work")
    async def work(job: Job) -> None:
        raise RetryLater(3600)  # (not run again in this test)

    async with Enqueuer(redis, namespace=namespace) as enqueuer, pool:
        worker = pool.worker
        assert worker is not None
        later = asyncio.ensure_future(asyncio.sleep(3600))  # the later run's task
        snooze = worker.settler.snooze

        async def snoozed(job: Job, exc: RetryLater) -> bool:
            assert await snooze(job, exc)
            # the job fetched again and started while this run settled (as with a short delay)
            worker.running[job.id] = (job, later)
            worker._cancel_requests[job.id] = False  # and a cancel request for that run
            ended.append(job.id)
            return True

        monkeypatch.setattr(worker.settler, "snooze", snoozed)
        handle = await enqueuer.enqueue("work")
        assert handle is not None
        job_id = handle.id
        await until(lambda: ended == [job_id] and not worker.tasks)
        entry: Any = worker.running.get(job_id)
        assert entry is not None and entry[1] is later  # (main dropped it)
        assert worker._cancel_requests == {job_id: False}
        del worker.running[job_id], worker._cancel_requests[job_id]
        later.cancel()
