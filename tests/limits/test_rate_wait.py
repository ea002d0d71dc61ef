"""A fetch that fills a type-wide rate by the jobs it takes (room before it, none after) answers
when the window frees, as one that finds the rate full does: the pool sleeps until then, not a
whole `poll_interval`."""

from __future__ import annotations

import time
from datetime import timedelta

from redis.asyncio import Redis

from errands import Enqueuer, Job, Rate, WorkerPool
from tests.support.invariants import assert_invariants

from .support import until


async def test_a_fetch_that_fills_a_rate_says_when_it_frees(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    starts: list[float] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, poll_interval=5.0)

    @pool.job("sms", limits=[Rate(2, per=timedelta(milliseconds=300))])
    async def sms(job: Job) -> None:
        starts.append(time.monotonic())

    async with Enqueuer(redis, namespace=namespace) as enqueuer, pool:
        await enqueuer.enqueue("sms", {})
        await until(lambda: len(starts) == 1)
        # one start left in the window: the fetch the enqueue wakes takes one job and fills it
        await enqueuer.enqueue_many([("sms", {}) for _ in range(3)])
        await until(lambda: len(starts) == 4, timeout=10)
    # the third start waits for the first to leave the window (300 ms), the fourth for the
    # second: well within a second, where a pool not told when sleeps its 5 s poll interval
    assert starts[2] - starts[0] >= 0.3 - 0.03
    assert starts[3] - starts[0] < 1.5, [round(t - starts[0], 3) for t in starts]
    await assert_invariants(redis, namespace, drained=True, stopped=True)
