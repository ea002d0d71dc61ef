"""ack.lua on the common path (no partitions, workflows, dedup jobs, listeners or unique locks)
sends few commands besides the per-job SET of the done record: one EXISTS for the three
optional features, the counters' HMGETs in place of their HLEN type checks, and no HDEL of a
hash that is absent (70 commands for 32 jobs before, 58 now)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.commandstats import command_calls


async def test_an_ack_on_the_common_path_sends_one_exists_and_no_needless_hdel(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("work", {"i": i}) for i in range(32)])
    now = await scripts.heartbeat("p", b"{}", 60_000, "register")
    got = await scripts.fetch("p", now, 32, [("work", 0)])
    assert got is not None and len(got) == 32
    done = [Acked(f.id, "work", b"1", now, 86_400_000, 1, f.token) for f in got]
    await redis.config_resetstat()
    assert await scripts.ack("p", done, False, now, True) == []
    sent = await command_calls(redis)
    for other in ("evalsha", "eval", "script|load", "config|resetstat"):
        sent.pop(other, None)
    assert (sent["exists"], sent["hdel"], sent["set"]) == (1, 2, 32)  # (jobs and attempts)
    assert sum(sent.values()) == 58
    assert await redis.hlen(keys.jobs) == 0 and await redis.hlen(keys.attempts) == 0
    assert await redis.zcard(keys.in_progress("p")) == 0
