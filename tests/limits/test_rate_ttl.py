"""The rate log of a job name and its expiry index (lib/ratelog.lua lim_tidy) live a window and
1 to 2 s past their last start, whatever their state before: a fetch renews their TTL when it
ran below a window and 1 s, to 1 s past that. It renewed it on nearly every fetch: a TTL set to
the least ran below it by the next ms, and each renewal is a write (PEXPIRE, replicated)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands.store.keys import Keys
from tests.support.ready import ready_to_fetch

SPEC = {"sms": "r=100/60000"}
LEAST = 60_000 + 1000  # a window and 1 s


async def _pexpires(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_pexpire", {}).get("calls", 0))


async def _ttls(redis: Redis, keys: Keys) -> list[int]:
    return [await redis.pttl(keys.rate_log("sms")), await redis.pttl(keys.rate_expiry("sms"))]


async def test_a_fetch_renews_the_ttl_of_the_rate_keys_only_when_it_runs_low(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = await ready_to_fetch(redis, namespace, [("sms", {})] * 4)
    assert len(await scripts.fetch("p", 1, 1, [("sms", 0)], specs=SPEC)) == 1
    assert all(LEAST < ttl <= LEAST + 1000 for ttl in await _ttls(redis, keys))
    before = await _pexpires(redis)
    for _ in range(3):
        assert len(await scripts.fetch("p", 1, 1, [("sms", 0)], specs=SPEC)) == 1
    assert await _pexpires(redis) == before  # (main: 2 a fetch, but in the ms of the last)
    assert all(LEAST - 1000 < ttl <= LEAST + 1000 for ttl in await _ttls(redis, keys))


async def test_a_rate_key_with_a_short_ttl_or_none_gets_one_past_the_least(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = await ready_to_fetch(redis, namespace, [("sms", {})] * 4)
    assert len(await scripts.fetch("p", 1, 1, [("sms", 0)], specs=SPEC)) == 1
    await redis.pexpire(keys.rate_log("sms"), 500)
    await redis.persist(keys.rate_expiry("sms"))
    assert len(await scripts.fetch("p", 1, 1, [("sms", 0)], specs=SPEC)) == 1
    assert all(LEAST < ttl <= LEAST + 1000 for ttl in await _ttls(redis, keys))
    await redis.persist(keys.rate_log("sms"))
    await redis.pexpire(keys.rate_expiry("sms"), 500)
    assert len(await scripts.fetch("p", 1, 1, [("sms", 0)], specs=SPEC)) == 1
    assert all(LEAST < ttl <= LEAST + 1000 for ttl in await _ttls(redis, keys))
