"""fetch.lua called with fewer keys than its 18 fixed ones (17: the scan cursor left out) and a
partitions hash holding a field: lib/fetchcheck.lua's fetch_types checks only the keys given
(as lib/types.lua's wrong_type did, up to #KEYS), no Lua error on a missing key."""

from __future__ import annotations

from redis.asyncio import Redis

from errands.store.fetchcall import FetchCall, fetch_request
from errands.store.keys import Keys
from errands.store.luasource import lua_source


async def test_seventeen_keys_partitioned(redis: Redis, namespace: str) -> None:
    k = Keys(namespace)
    sec, us = await redis.time()
    now = sec * 1000 + us // 1000
    await redis.zadd(k.pools, {"p": now})
    await redis.hset(k.partitions, "zz", "a")
    keys, args = fetch_request(k, FetchCall("p", now, 5, [], 0, 0, 60_000, {}, 30_000, None, None))
    sha = await redis.script_load(lua_source("fetch"))
    got = await redis.evalsha(sha, 17, *keys[:17], *args)
    assert got[:3] == [0, b"", -1]
