"""Debounce on the injectable clock: each enqueue moves the waiting job to its own due time (the
Enqueuer's clock plus its delay), also back off the queue once it was promoted there, and the
promoter (driven at chosen times, no sleeping) queues it only then, with the latest args."""

from __future__ import annotations

import time

import orjson
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer, FakeClock
from errands.clock import to_ms
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

D = Dedup("u", debounce=True)


async def test_each_enqueue_moves_the_run_to_its_own_due_time(
    redis: Redis, namespace: str, client: Client
) -> None:
    keys = Keys(namespace)
    start = time.time()
    clock = FakeClock(start)
    async with Enqueuer(redis, namespace=namespace, clock=clock) as enqueuer:

        async def add(i: int, delay: float | None) -> str:
            job = await enqueuer.enqueue("n", {"i": i}, delay=delay, dedup=D)
            assert job is not None and job.dedup is not None
            return job.dedup.status

        async def promoted(at: float) -> int:
            moved, _earliest = await client.scripts.promote(["n"], to_ms(start + at), 100)
            return moved

        assert await add(1, 10) == "enqueued"  # due at +10
        clock.advance(5)
        assert await add(2, 10) == "replaced"  # due at +15
        assert await promoted(12) == 0
        assert await promoted(15) == 1
        (job_id,) = await redis.zrange(keys.queue("n"), 0, -1)
        clock.advance(11)  # +16: queued, not started: pushed back off the queue, to +26
        assert await add(3, 10) == "replaced"
        assert await redis.zcard(keys.queue("n")) == 0
        assert await redis.zscore(keys.scheduled("n"), job_id) == to_ms(start + 26)
        assert await promoted(25) == 0
        assert await add(4, None) == "replaced"  # no delay: onto the queue now
        assert await redis.zcard(keys.scheduled("n")) == 0
        assert await redis.zrange(keys.queue("n"), 0, -1) == [job_id]
        raw = await redis.hget(keys.jobs, job_id)
        assert raw is not None and orjson.loads(raw)["a"] == {"i": 4}
        assert await redis.hlen(keys.jobs) == 1
    await assert_invariants(redis, namespace)
