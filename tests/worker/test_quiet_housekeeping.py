"""A quiet pool takes no job but keeps its share of the namespace's upkeep (docs/workers.md,
"Quiet a pool"): it promotes due scheduled jobs to their queues, reaps a dead pool (its job back
on its queue) and fires its periodic schedules, each exactly once across the pools as always.
Unlike Sidekiq, whose quiet stops the process's scheduled poller; here a quiet pool of old code
still registers its schedules during a deploy, and the pools of the new code fire no other
definition of a name while it does (docs/periodic.md), so its firing is what keeps them running
until it stops."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.deadpool import dead_pool_row

from .test_wake import until


async def test_a_quiet_pool_promotes_reaps_and_fires_its_schedules(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    ran: list[str] = []
    pool = WorkerPool.from_url(
        redis_url,
        namespace=namespace,
        poll_interval=0.05,
        heartbeat_interval=0.1,
        dead_timeout=0.5,
    )

    @pool.job("w")
    async def w(job: Job) -> None:
        ran.append(job.name)

    @pool.job("tick")
    async def tick(job: Job) -> None:
        ran.append(job.name)

    pool.every(1, "tick", name="tick-1s")
    async with pool, Enqueuer(redis, namespace=namespace) as enq:
        await pool.quiet()
        await asyncio.sleep(0.1)  # (a fetch on its way meanwhile gave its job back)
        ran.clear()  # (the schedule's first run, fired as the pool started, may have run)
        fired_before = await redis.zcard(keys.queue("tick"))
        _member, dead_job, _name = await dead_pool_row(redis, namespace, Scripts(redis, keys))
        later = await enq.enqueue("w", delay=timedelta(seconds=0.3))

        async def upkept() -> bool:
            queued = await redis.zscore(keys.queue("w"), later.id) is not None
            fired = await redis.zcard(keys.queue("tick")) > fired_before
            reaped = await redis.zscore(keys.queue("work"), dead_job) is not None
            return queued and fired and reaped and await redis.zscore(keys.pools, "dead") is None

        await until(upkept, 5.0)  # (a fire time every second; the dead pool's timeout)
        assert ran == [] and pool.quieted  # (all of it waits in the queues)
        await pool.resume()
        await until(lambda: "w" in ran and "tick" in ran)
