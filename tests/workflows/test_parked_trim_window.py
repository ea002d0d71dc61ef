"""Members of a run with a key of another type, kept in the dead set by set_trim
(lib/settrim.lua) until repaired, must not hold the age trim of the other jobs: trim_set takes
the 1,000 oldest past the age bound (settle.lua's trim the 100 oldest), so 1,000 kept ones
there stop the age bound of the set for good (FAILS on main at 70222fe..ef9f646)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Scripts


async def test_kept_members_do_not_starve_the_age_trim(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    await redis.set(keys.workflow("w1", "in"), "x")  # run w1 cannot take an end
    ids = [f"w1.n{i}" for i in range(1000)]
    await redis.zadd(keys.dead, {i: n + 1 for n, i in enumerate(ids)})
    await redis.hset(keys.workflow_of, mapping=dict.fromkeys(ids, "w1"))
    await redis.zadd(keys.dead, {"plain": 5000})
    await redis.hset(keys.jobs, "plain", "{}")
    scripts = Scripts(redis, keys)
    for _ in range(3):
        await scripts.trim_set(keys.dead, 10_000, 100_000)  # every entry is past its age
    assert await redis.zscore(keys.dead, "plain") is None  # trimmed by age
