"""Review probes (rev-batch) of bb1ed18: a batch loop with ``max_wait=0`` now waits for the
wake-up of an enqueue (up to ``poll_interval``) instead of looking every 50 ms. An enqueue wakes
ONE idle pool of the name (lib/wake.lua: the latest mark). A pool whose batch name's mark stays
while its batch loop does not wait for a wake-up takes that wake-up, and the pool that waits for
one is left to its ``poll_interval``:

- a batch loop whose fetch took fewer than ``max_size`` jobs is marked idle for the name (as any
  short fetch), yet it runs that batch before it looks again;
- a quiet pool keeps its batch names' marks (its fetch loop's empty fetch takes away its plain
  names' only), though docs/workers.md says a quiet pool's marks go ("enqueues neither hand it
  jobs nor wake it ... the wake-ups go to the other idle pools").

Here ``poll_interval`` is an hour: only a wake-up starts a job in time. Both tests pass on
213412a (the loops looked every 50 ms)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from tests.support.procs import eventually


def _pools(
    redis: Redis, namespace: str, ran: dict[str, str], hold: asyncio.Event
) -> list[WorkerPool]:
    pools = []
    for _ in range(2):
        pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=3600.0)

        def register(pool: WorkerPool) -> None:
            @pool.batch_job("b", max_size=10, max_wait=0)
            async def b(jobs: list[Job]) -> None:
                for job in jobs:
                    ran[job.id] = pool.id
                if any(job.id == "first" for job in jobs):
                    await hold.wait()

        register(pool)
        pools.append(pool)
    return pools


async def _settled(redis: Redis, pools: list[WorkerPool]) -> None:
    """Until both pools' batch loops are marked idle for b (their empty fetches), 3 s at most
    (none is on 213412a, whose loops looked every 50 ms without a fetch)."""
    key = pools[0].keys.idle_for("b")
    for _ in range(150):
        members = {m.decode() for m in await redis.zrange(key, 0, -1)}
        if members == {p.id for p in pools}:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # (the subscriptions' first wake-ups looked at)


async def test_a_pool_running_its_batch_takes_not_the_wake_up_the_idle_pool_waits_for(
    redis: Redis, namespace: str
) -> None:
    ran: dict[str, str] = {}
    hold = asyncio.Event()
    a, b = _pools(redis, namespace, ran, hold)
    async with a, b:
        await _settled(redis, [a, b])
        async with Enqueuer(redis, namespace=namespace) as enqueuer:
            await enqueuer.enqueue("b", {}, job_id="first")

            async def first() -> bool:
                return "first" in ran

            await eventually(first, 5, "the first job's batch started")
            busy = ran["first"]
            # (with bb1ed18 its short fetch (1 of 10) marked it idle for b, the latest mark:
            # the one an enqueue wakes; its top place is not asserted, the loops of today
            # mark no pool idle for a batch name, which pool is on top is chance)
            await enqueuer.enqueue("b", {}, job_id="second")

            async def second() -> bool:
                return "second" in ran

            try:
                # the other pool waits idle for a wake-up of b; the busy one runs its batch
                await eventually(second, 5, f"the second job started (pool {busy} is busy)")
                assert ran["second"] != busy
            finally:
                hold.set()


async def test_a_quiet_pool_takes_not_the_wake_up_of_its_batch_name(
    redis: Redis, namespace: str
) -> None:
    ran: dict[str, str] = {}
    hold = asyncio.Event()
    hold.set()
    a, b = _pools(redis, namespace, ran, hold)
    async with a, b:
        await _settled(redis, [a, b])
        key = a.keys.idle_for("b")
        top = [m.decode() for m in await redis.zrange(key, 0, 0)]  # (the one an enqueue wakes)
        quiet = b if top == [b.id] else a
        await quiet.quiet()
        marks = {m.decode() for m in await redis.zrange(key, 0, -1)}
        async with Enqueuer(redis, namespace=namespace) as enqueuer:
            await enqueuer.enqueue("b", {}, job_id="j")

        async def started() -> bool:
            return "j" in ran

        await eventually(started, 5, "the job started by the pool that is not quiet")
        assert quiet.id not in marks, "the quiet pool's idle mark of its batch name stayed"
