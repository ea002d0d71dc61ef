"""A pool whose namespace's stats hold a value that is not a counter in `processed` or
`failed` (written by hand, a bad restore) goes on working: its jobs are acknowledged and its
failed jobs retried, each field replaced by the count of the call that found it (its old value,
not a number, is lost). Before, ack.lua refused every call (no job of any pool was ever
acknowledged again: each ran again after its pool's death) and settle.lua every failure."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer, FakeClock, Job, WorkerPool
from errands.store.keys import Keys


async def test_a_pool_works_on_with_stats_that_are_not_counters(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await redis.hset(keys.stats, mapping={"processed": "abc", "failed": "{}", "dead": "7"})
    clock = FakeClock()
    pool = WorkerPool(redis, namespace=namespace, clock=clock, concurrency=4)
    enqueuer = Enqueuer(redis, namespace=namespace, clock=clock)
    runs: list[str] = []

    @pool.job("fine")
    async def fine(job: Job) -> int:
        runs.append(job.id)
        return 1

    @pool.job("once", max_fails=2)
    async def once(job: Job) -> None:
        runs.append(job.id)
        if job.attempt == 1:
            raise RuntimeError("first time")

    jobs = [await enqueuer.enqueue("fine", {}) for _ in range(3)]
    flaky = await enqueuer.enqueue("once", {})
    assert flaky is not None and all(jobs)
    async with pool:
        await pool.drain(timeout=5)
        clock.advance(3600)
        await pool.drain(timeout=5)
    assert sorted(runs) == sorted([j.id for j in jobs if j] + [flaky.id, flaky.id])
    assert await redis.zcard(keys.in_progress(pool.id)) == 0
    assert await redis.hgetall(keys.stats) == {b"processed": b"4", b"failed": b"1", b"dead": b"7"}
