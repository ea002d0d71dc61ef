"""An iterable job's checkpoint interval across a step of the pool's clock (an NTP step, a VM
resumed): a step back is no reason to stop checkpointing. The interval was measured as ``now -
the last checkpoint's time``, negative after a step back, so no checkpoint was written until
the clock caught up again (an hour for a step of an hour): a crash then replayed every item done
meanwhile, where docs/long-jobs.md promises at most ``checkpoint_every`` worth of them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.clock import FakeClock
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

EVERY = 10.0


async def test_a_step_back_of_the_clock_does_not_stop_the_checkpoints(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    clock = FakeClock()
    start = clock.now()
    pool = WorkerPool(redis, namespace=namespace, clock=clock, concurrency=1)
    # the pool's time as each item ends: a checkpoint after item 3 (EVERY passed), then the
    # clock steps back an hour, and the items go on, EVERY apart from then on
    times = {1: 1.0, 2: 2.0, 3: EVERY, 4: EVERY - 3600}
    times |= {i: times[4] + (i - 4) * EVERY for i in range(5, 9)}
    stored: list[int] = []  # the cursor stored as each item begins

    @pool.iterable_job("walk", checkpoint_every=EVERY)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        for i in range((cursor or 0) + 1, 9):
            raw = await redis.hget(keys.checkpoints, job.id)
            stored.append(orjson.loads(raw)["cursor"] if raw else 0)
            clock.set(start + times[i])
            yield i

    async with Enqueuer(redis, namespace=namespace, clock=clock) as enqueuer:
        job = await enqueuer.enqueue("walk")
        assert job is not None
        async with pool:
            assert await job.result(timeout=10) == {"done": 8, "cursor": 8}
            await pool.drain(timeout=10)
    # written after item 3; after the step back at once (item 4), then after each item
    assert stored == [0, 0, 0, 3, 4, 5, 6, 7], stored
    await assert_invariants(redis, namespace, drained=True, stopped=True)
