"""The activity counters (store/metrics.py, the dashboard's Activity page) count the jobs of
batch handlers as they count plain jobs: each job's start and wait, each attempt done, failed
(retried) or dead; a snooze is no end. They were not counted at all."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import BatchOutcome, Enqueuer, FixedBackoff, Job, WorkerPool
from errands.admin.client import Client
from errands.errors import NonRetryableError, RetryLater


async def test_batch_jobs_are_counted_in_the_activity(redis: Redis, namespace: str) -> None:
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=5.0)
    runs: list[int] = []

    @pool.batch_job("b", max_size=4, max_wait=0.01, max_fails=2, backoff=FixedBackoff(3600))
    async def b(jobs: list[Job]) -> BatchOutcome:
        runs.append(len(jobs))
        if len(runs) > 1:  # the second batch: the one that snoozed, raising
            raise ValueError("all at once")
        by = {job.args["n"]: job.id for job in jobs}
        failed = {by[0]: ValueError("retried"), by[1]: RetryLater(0), by[2]: NonRetryableError()}
        return BatchOutcome(failed=failed)

    enqueuer = Enqueuer(redis, namespace=namespace)
    for n in range(4):
        await enqueuer.enqueue("b", {"n": n})
    async with pool:
        await pool.drain(timeout=10)
    # first batch: 0 failed (retry in an hour), 1 snoozed 0 s, 2 dead, 3 done; then 1 alone,
    # failed (retried) by the handler's raise
    assert runs == [4, 1]
    buckets = await Client(redis, namespace=namespace).activity("hour")
    assert sum(bucket.done for bucket in buckets) == 1
    assert sum(bucket.failed for bucket in buckets) == 2
    assert sum(bucket.dead for bucket in buckets) == 1
    assert sum(bucket.waits["b"][1] for bucket in buckets if "b" in bucket.waits) == 5
