"""Admin actions on queued jobs of a partition keep its index right: a re-prioritised job is
served under its new priority, a cancelled one leaves no trace once its partition's turn came."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Client, Concurrency, Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

from .support import until


async def test_update_and_cancel_of_partitioned_jobs(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    client = Client(redis, namespace=namespace)
    order: list[int] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=1, poll_interval=0.1)

    @pool.job("step", limits=[Concurrency(1, per_partition=True)])
    async def step(job: Job, i: int) -> None:
        order.append(i)

    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        jobs = [await enq.enqueue("step", {"i": i}, partition="a") for i in range(4)]
    assert all(jobs)
    await client.update_job(jobs[3].id, priority=10)  # type: ignore[union-attr]
    assert await client.cancel(jobs[1].id) == "cancelled"  # type: ignore[union-attr]
    index = Keys(namespace).partition_queue("step")
    async with pool:
        await until(lambda: len(order) == 3, timeout=10)
        # (the edited job was indexed anew, its entry under the old priority gone with the
        # edit; the cancelled one's with the cancel)
        await until(lambda: _gone(redis, index), 10)
    assert order == [3, 0, 2]  # the edited one first, the cancelled one never
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def _gone(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)
