"""Members of a run with a key of another type, kept in the dead set by set_trim
(lib/settrim.lua) until repaired, must not hold the age trim of the other jobs: trim_set takes
the 1,000 oldest past the age bound (settle.lua's trim the 100 oldest), so 1,000 kept ones
there stop the age bound of the set for good (FAILS on main at 70222fe..ef9f646). Nor may they
make the size trim reach into the newest `most` entries, or the age trim read them one entry
a page (FAIL at dc987b4)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from tests.support.commandstats import command_calls
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


async def kept_then_plain(redis: Redis, keys: Keys, kept: int, plain: int) -> None:
    """`kept` members of run w1 (a key of another type) the oldest, then `plain` jobs p0..."""
    await redis.set(keys.workflow("w1", "in"), "x")  # run w1 cannot take an end
    ids = [f"w1.n{i}" for i in range(kept)]
    if ids:
        await redis.zadd(keys.dead, {i: r + 1 for r, i in enumerate(ids)})
        await redis.hset(keys.workflow_of, mapping=dict.fromkeys(ids, "w1"))
    plain_ids = [f"p{i}" for i in range(plain)]
    await redis.zadd(keys.dead, {p: 10_000 + r for r, p in enumerate(plain_ids)})
    await redis.hset(keys.jobs, mapping=dict.fromkeys(plain_ids, "{}"))


@pytest.mark.parametrize("before", [0, 10_001])  # none past the age bound; the kept ones and p0
async def test_size_trim_keeps_the_newest_most(redis: Redis, namespace: str, before: int) -> None:
    """The size trim takes only ranks below ZCARD - most: kept members read by the age trim
    do not make it reach into the newest `most` (it took p5..p7 when the age bound reached them:
    FAILS at dc987b4)."""
    keys = Keys(namespace)
    await kept_then_plain(redis, keys, 3, 10)
    await Scripts(redis, keys).trim_set(keys.dead, before, 5)
    left = [m.decode() for m in await redis.zrange(keys.dead, 0, -1)]
    assert left == ["w1.n0", "w1.n1", "w1.n2", "p5", "p6", "p7", "p8", "p9"]


async def test_age_trim_reads_kept_ones_in_full_pages(own_redis: Redis, namespace: str) -> None:
    """One kept member in the first page, 1,001 more after it: two pages by age, run w1 checked
    once for both (it read one entry a page: 1,002 ZRANGEBYSCORE, wf_unfit per page: FAILS at
    dc987b4)."""
    keys = Keys(namespace)
    await kept_then_plain(own_redis, keys, 0, 999)
    ids = [f"w1.n{i}" for i in range(1001)]
    await own_redis.zadd(keys.dead, {i: 20_000 + r for r, i in enumerate(ids)})
    await own_redis.hset(keys.workflow_of, mapping=dict.fromkeys(ids, "w1"))
    await own_redis.config_resetstat()
    assert await Scripts(own_redis, keys).trim_set(keys.dead, 100_000, 100_000) == 999
    calls = await command_calls(own_redis)
    assert calls["zrangebyscore"] == 2 + 1  # (two pages; one of the tombstones' own trim)
    assert calls["get"] == 1  # (wf_unfit reads `seq` once: its verdict kept across pages)
    assert await own_redis.zcard(keys.dead) == 1001


async def test_age_trim_stops_at_its_limit_and_size_goes_on(redis: Redis, namespace: str) -> None:
    """A second page with more stale entries than the age limit has room for: 1,000 by age,
    the size trim then from the first rank past them (100 more here), the newest 400 left."""
    keys = Keys(namespace)
    await kept_then_plain(redis, keys, 1, 1500)
    assert await Scripts(redis, keys).trim_set(keys.dead, 100_000, 400) == 1100
    left = [m.decode() for m in await redis.zrange(keys.dead, 0, -1)]
    assert left == ["w1.n0"] + [f"p{i}" for i in range(1100, 1500)]
