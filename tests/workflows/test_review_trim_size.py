"""Review probe: kept members (a run with a key of another type) read by the age trim are
'not counted' (trim_set.lua's header), yet the size trim then takes entries among the newest
`most` (it counts them): the result depends on whether the age bound reached them."""

from __future__ import annotations

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Scripts


async def setup(redis: Redis, keys: Keys) -> None:
    await redis.set(keys.workflow("w1", "in"), "x")  # run w1 cannot take an end
    kept = [f"w1.n{i}" for i in range(3)]
    await redis.zadd(keys.dead, {k: r + 1 for r, k in enumerate(kept)})
    await redis.hset(keys.workflow_of, mapping=dict.fromkeys(kept, "w1"))
    plain = [f"p{i}" for i in range(10)]
    await redis.zadd(keys.dead, {p: 100 + r for r, p in enumerate(plain)})
    await redis.hset(keys.jobs, mapping=dict.fromkeys(plain, "{}"))


async def left(redis: Redis, keys: Keys) -> list[str]:
    return [m.decode() for m in await redis.zrange(keys.dead, 0, -1)]


async def test_size_trim_without_age(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    await setup(redis, keys)
    await Scripts(redis, keys).trim_set(keys.dead, 0, 5)  # nothing past its age
    got = await left(redis, keys)
    print("no age trim:", got)
    assert got == ["w1.n0", "w1.n1", "w1.n2", "p5", "p6", "p7", "p8", "p9"]


async def test_size_trim_with_age_keeps_the_newest_most(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    await setup(redis, keys)
    await Scripts(redis, keys).trim_set(keys.dead, 101, 5)  # kept ones and p0 past their age
    got = await left(redis, keys)
    print("age trim reaching the kept:", got)
    assert got == ["w1.n0", "w1.n1", "w1.n2", "p5", "p6", "p7", "p8", "p9"]
