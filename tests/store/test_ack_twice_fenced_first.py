"""ack.lua's fence does not depend on the order of a call's entries: the same id given twice in
one call, first with a stale token and then with its live one, is acknowledged (by the live
one) and not reported refused. (It was not acknowledged, nor refused, when every entry, passed
or not, marked its id seen: the job stayed in the in-progress set and ran again.)"""

from __future__ import annotations

import dataclasses

from redis.asyncio import Redis

from tests.store.test_ack_cap import POOL, fetched


async def test_an_id_given_stale_then_live_in_one_ack_is_acknowledged(
    redis: Redis, namespace: str
) -> None:
    scripts, done = await fetched(redis, namespace, 1)
    stale = dataclasses.replace(done[0], token=str(int(done[0].token) + 7))
    assert await scripts.ack(POOL, [stale, done[0]], False, 1, True) == []
    keys = scripts.keys
    assert await redis.zcard(keys.in_progress(POOL)) == 0
    assert int(await redis.hget(keys.stats, "processed") or 0) == 1
