"""A settle that buries a job trims the dead set and publishes each trimmed job's `deleted`
event while someone listens: the trimmed jobs' envelopes and listeners are read with one HMGET
each per call (lib/jobstate.lua's publish_trimmed), not an HGET and an HMGET per trimmed job
(counted on a private server's commandstats)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from tests.store.test_scripts_args import running_job

TRIMMED = 50


async def _reads(redis: Redis) -> int:
    stats: Any = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("hget", "hmget"))


async def test_the_trimmed_jobs_events_are_read_in_one_call(
    own_redis: Redis, namespace: str
) -> None:
    redis = own_redis
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    acked = await running_job(redis, keys, scripts)
    for i in range(TRIMMED):
        await redis.hset(keys.jobs, f"d{i}", b'{"n":"work","a":{}}')  # type: ignore[misc]
    await redis.zadd(keys.dead, {f"d{i}": 1 for i in range(TRIMMED)})
    await redis.hset(keys.listening, "*", 1)  # type: ignore[misc]
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.events_channel)
    s = Settle(acked.id, "work", "dead", keys.dead, 5_000, 1, token=acked.token)
    s.score_ms, s.error, s.counter, s.dead_min_ms = 5_000, b'{"error":"boom"}', "dead", 1_000
    before = await _reads(redis)
    assert await scripts.settle("p1", s) is True
    reads = await _reads(redis) - before
    assert await redis.zrange(keys.dead, 0, -1) == [acked.id.encode()]
    heard = []
    while (m := await pubsub.get_message(timeout=1)) is not None:
        if m["type"] == "message":
            heard.append(m["data"])
    await pubsub.aclose()
    deleted = [m for m in heard if b'"event":"deleted"' in m]
    assert len(deleted) == TRIMMED and all(b'"name":"work"' in m for m in deleted)
    assert reads < 20, reads  # (an HGET and an HMGET a trimmed job: over 100)
