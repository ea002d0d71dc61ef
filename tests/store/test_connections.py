"""A burst of concurrent enqueues waits for a free connection instead of failing."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys


async def test_a_thousand_concurrent_enqueues_all_succeed(
    redis_url: str, redis: Redis, namespace: str
) -> None:
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await asyncio.gather(*[enqueuer.enqueue("x", {"i": i}) for i in range(1000)])
    assert all(job is not None for job in jobs)
    assert await redis.zcard(Keys(namespace).queue("x")) == 1000
