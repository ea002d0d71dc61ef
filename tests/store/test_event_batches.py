"""The events of a call's jobs are published after one read of the listeners per 1,000 jobs
(lib/events.lua's ev_publish_all), not one HMGET per job: enqueue and ack. Every event still
goes out."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts

POOL = "p0000000000000001"


async def calls(redis: Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {"calls": 0})["calls"])


async def test_enqueue_and_ack_read_the_listeners_once_per_call(
    own_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(own_redis, keys)
    await own_redis.hset(keys.listening, "*", "9999999999999")
    enq = Enqueuer(own_redis, namespace=namespace, strict=None)
    await enq.enqueue_many([("work", {}, {})])  # type: ignore[arg-type]  # (scripts loaded)
    now = await scripts.heartbeat(POOL, b"{}", 600_000, "register")
    got = await scripts.fetch(POOL, now, 1, [("work", 0)])
    assert got is not None
    await scripts.ack(
        POOL, [Acked(f.id, "work", b"1", now, 0, 1, f.token) for f in got], False, 1, True
    )
    seen = []
    for n in (2, 40):
        await own_redis.config_resetstat()
        await enq.enqueue_many([("work", {}, {}) for _ in range(n)])  # type: ignore[arg-type]
        enqueued = (await calls(own_redis, "hmget"), await calls(own_redis, "publish"))
        got = await scripts.fetch(POOL, now, n, [("work", 0)])
        assert got is not None and len(got) == n
        await own_redis.config_resetstat()
        done = [Acked(f.id, "work", b"1", now, 0, 1, f.token) for f in got]
        assert await scripts.ack(POOL, done, False, 1, True) == []
        acked = (await calls(own_redis, "hmget"), await calls(own_redis, "publish"))
        assert enqueued[1] == acked[1] == n  # every event published
        seen.append((enqueued[0], acked[0]))
    assert seen[0] == seen[1]  # as many reads for 40 jobs as for 2
