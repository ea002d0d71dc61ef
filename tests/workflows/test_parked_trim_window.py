"""Members of a run with a key of another type, kept in the dead set by set_trim
(lib/settrim.lua) until repaired, must not hold the age trim of the other jobs: trim_set takes
the 1,000 oldest past the age bound (settle.lua's trim the 100 oldest), so 1,000 kept ones
there stop the age bound of the set for good (FAILS on main at 70222fe..ef9f646)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from tests.support.fetched import POOL, running_job


async def kept_before_plain(redis: Redis, keys: Keys, n: int) -> None:
    """`n` members of run w1 (a key of another type) the oldest of the dead set, then `plain`."""
    await redis.set(keys.workflow("w1", "in"), "x")  # run w1 cannot take an end
    ids = [f"w1.n{i}" for i in range(n)]
    await redis.zadd(keys.dead, {i: r + 1 for r, i in enumerate(ids)})
    await redis.hset(keys.workflow_of, mapping=dict.fromkeys(ids, "w1"))
    await redis.zadd(keys.dead, {"plain": 5000})
    await redis.hset(keys.jobs, "plain", "{}")


async def test_kept_members_do_not_starve_the_age_trim(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    await kept_before_plain(redis, keys, 1000)
    scripts = Scripts(redis, keys)
    for _ in range(3):
        await scripts.trim_set(keys.dead, 10_000, 100_000)  # every entry is past its age
    assert await redis.zscore(keys.dead, "plain") is None  # trimmed by age
    assert await redis.zcard(keys.dead) == 1000  # (the kept ones stay)


async def test_kept_members_do_not_starve_a_burials_age_trim(redis: Redis, namespace: str) -> None:
    """settle.lua's own trim (100 at most by age per call) pages past them the same way."""
    _keys, job_id = await running_job(redis, namespace)
    keys = Keys(namespace)
    await kept_before_plain(redis, keys, 100)
    s = Settle(job_id, "work", "dead", keys.dead, 20_000, 1, started_ms=4_000, token="1")
    s.score_ms, s.error, s.dead_min_ms = 2**52, b'{"error":"boom"}', 10_000
    assert await Scripts(redis, keys).settle(POOL, s)
    assert await redis.zscore(keys.dead, "plain") is None  # trimmed by age
    assert await redis.zscore(keys.dead, job_id) is not None  # (its own call keeps it)
    assert await redis.zcard(keys.dead) == 101
