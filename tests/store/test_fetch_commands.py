"""fetch.lua on the common path (no partitions, dedup jobs, listeners or unique locks; one job
name, not paused, without limits) sends few commands a call: one EXISTS for the four optional
features, the reads of running and paused in place of their type checks, the attempt counter
read once, and no SREM or ZREM of idle marks where the type checks found none (29 commands for
a batch of 32 jobs before, 20 now)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.commandstats import command_calls


async def test_a_fetch_on_the_common_path_sends_one_exists_and_no_needless_reads(
    own_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(own_redis, keys)
    async with Enqueuer(own_redis, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("work", {"i": i}) for i in range(40)])
    now = await scripts.heartbeat("p", b"{}", 60_000, "register")
    await own_redis.config_resetstat()
    got = await scripts.fetch("p", now, 32, [("work", 0)])
    assert got is not None and len(got) == 32
    sent = await command_calls(own_redis)
    for other in ("evalsha", "eval", "script|load", "config|resetstat"):
        sent.pop(other, None)
    assert (sent["exists"], sent["hlen"], sent["get"]) == (1, 2, 1)  # (hlen: jobs, attempts)
    assert (sent["scard"], sent["zrem"], sent.get("srem", 0)) == (1, 1, 0)  # (zrem: the queue)
    assert sum(sent.values()) == 20
    assert (
        await own_redis.zcard(keys.in_progress("p")) == 32
        and await own_redis.zcard(keys.queue("work")) == 8
    )
