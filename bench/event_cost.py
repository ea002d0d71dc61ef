"""Redis commands per job while someone waits on results (issue 15): INFO commandstats deltas
(commands run by the Lua scripts included) over N no-op jobs run by one pool, in three cases:
nobody listening; one ``result()`` waiter on a job that does not run (others' waiters: the jobs
run here are nobody's); a ``result()`` waiter on every job (enqueue, then await its result, 32 at
a time). Prints commands per job and PUBLISH per job of each case.

    python bench/event_cost.py [--jobs 2000]

Run it with PYTHONPATH=src of the tree to measure (errands of that tree).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from errands.store.devserver import RedisServer


async def stats(redis: Redis) -> dict[str, int]:
    info: dict[str, Any] = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


async def case(url: str, name: str, jobs: int) -> tuple[float, float]:
    redis = Redis.from_url(url)
    namespace = f"cost-{name}"
    pool = WorkerPool.from_url(url, namespace=namespace, concurrency=32)

    @pool.job("noop")
    async def noop(job: Job, i: int = 0) -> int:
        return i

    client = Client(redis, namespace=namespace)
    async with pool, Enqueuer(redis, namespace=namespace) as enq:
        other: asyncio.Task[Any] | None = None
        if name == "other-waiter":
            later = await enq.enqueue("noop", {"i": -1}, delay=3600)
            assert later is not None
            other = asyncio.create_task(client.result(later.id, timeout=600))
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # the pool idle
        before = await stats(redis)
        if name == "waiter-per-job":

            async def one(i: int) -> None:
                job = await enq.enqueue("noop", {"i": i})
                assert job is not None
                assert await client.result(job.id, timeout=60) == i

            for s in range(0, jobs, 32):
                await asyncio.gather(*(one(i) for i in range(s, min(s + 32, jobs))))
        else:
            for s in range(0, jobs, 32):
                await asyncio.gather(*(enq.enqueue("noop", {"i": i}) for i in range(s, s + 32)))
            await pool.drain(timeout=120)
        await asyncio.sleep(0.3)  # acks flushed
        moved = delta(before, await stats(redis))
        if other is not None:
            other.cancel()
            await asyncio.gather(other, return_exceptions=True)
    await client.aclose()
    await redis.aclose()
    moved.pop("info", None)
    total = sum(moved.values())
    return total / jobs, moved.get("publish", 0) / jobs


async def run(url: str, jobs: int) -> None:
    for name in ("nobody", "other-waiter", "waiter-per-job"):
        per_job, publish = await case(url, name, jobs)
        print(f"{name:15s} {per_job:6.1f} commands/job  {publish:5.2f} PUBLISH/job")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    with RedisServer() as server:
        asyncio.run(run(server.url, args.jobs))


if __name__ == "__main__":
    main()
