"""Review probe: how many pages (and commands) set_trim_pick takes when one kept member lies
among the first page and ~1,000 more follow it: each page then reads one entry."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Scripts


async def calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {k: v["calls"] for k, v in stats.items()}


async def test_pages_of_one(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    await redis.set(keys.workflow("w1", "in"), "x")  # run w1 cannot take an end
    plain = [f"p{i}" for i in range(999)]
    await redis.zadd(keys.dead, {p: 1 + r for r, p in enumerate(plain)})
    await redis.hset(keys.jobs, mapping=dict.fromkeys(plain, "{}"))
    kept = [f"w1.n{i}" for i in range(1001)]
    await redis.zadd(keys.dead, {k: 5000 + r for r, k in enumerate(kept)})
    await redis.hset(keys.workflow_of, mapping=dict.fromkeys(kept, "w1"))
    before = await calls(redis)
    began = time.monotonic()
    n = await Scripts(redis, keys).trim_set(keys.dead, 100_000, 100_000)
    took = time.monotonic() - began
    after = await calls(redis)
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    print("trimmed", n, f"in {took * 1000:.0f} ms; commands:", delta)
    assert delta.get("cmdstat_zrangebyscore", 0) <= 10
