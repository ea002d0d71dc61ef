"""A reap of a dead pool's many workflow members publishes the events of the members their ends
release or end together at its end, one HMGET of the listeners per 1,000, as an ack does: each
wf_end published its own (an HMGET per member ended, besides the job's own event's)."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.workflows.store import Member, WorkflowScripts


def member(node: str, ready: bool) -> Member:
    spec = b'{"n":"work","f":"fail","p":0,"d":[]}'
    return Member(node, "work", ready, 0, b'{"id":"' + node.encode() + b'"}', spec)


async def hmgets(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


async def test_one_reap_of_many_members_publishes_their_dependents_together(
    own_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    run = WorkflowScripts(own_redis, keys)
    for r in range(100):  # 100 runs: a, then c (policy "fail")
        assert await run.enqueue(
            f"r{r}", "wf", 60_000, [member("a", True), member("c", False)], [("a", "c")], []
        )
    scripts = Scripts(own_redis, keys)
    now = await scripts.heartbeat("ghost", b"{}", 60_000, "register")
    got = await scripts.fetch("ghost", now, 100, [("work", 0)])
    assert got is not None and len(got) == 100
    await own_redis.zadd(keys.pools, {"ghost": 0})  # its last beat long ago: dead
    await own_redis.hset(keys.listening, "*", "1")
    pubsub = own_redis.pubsub()
    await pubsub.subscribe(keys.events_channel)
    await own_redis.config_resetstat()
    entries = [(f"{f.id}:work".encode(), f.id, "work") for f in got]
    reaped = await scripts.reap("ghost", 1000, 1, b'{"error":"poison"}', b"{}", entries)
    assert reaped.buried == 100  # one reap call: each a dead, each c cancelled ("fail")
    # each buried job's own `dead` event (one HMGET each, record_end), then its members': 1
    assert await hmgets(own_redis) <= 100 + 8
    seen = []
    async with asyncio.timeout(10):
        while len(seen) < 200:
            m = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if m is not None:  # (None: the subscribe's own reply)
                e = json.loads(m["data"])
                seen.append((e["event"], e["id"]))
    await pubsub.aclose()
    for r in range(100):  # every event published, a dependent's after its dependency's end
        assert seen.index(("dead", f"r{r}.a")) < seen.index(("cancelled", f"r{r}.c"))
