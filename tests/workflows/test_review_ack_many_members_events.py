"""Review probe (rev-wf): docs/workflows.md says "The events of the members one script call
releases or ends are published together, with one `HMGET` of the listeners per 1,000". An ack
of many workflow members in ONE ack.lua call ran wf_end once per member, and each wf_end made
its own W.evs and flushed it (lib/workflows.lua): one HMGET per acknowledged member that
released a dependent (106 for 100), not one per 1,000 for the call. Now wf_end keeps them in
the ack's own list of events, published with its jobs' (each dependent's `enqueued` still
before its dependency's `finished`)."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from errands.workflows.store import Member, WorkflowScripts


def member(node: str, ready: bool) -> Member:
    spec = b'{"n":"work","f":"fail","p":0,"d":[]}'
    return Member(node, "work", ready, 0, b'{"id":"' + node.encode() + b'"}', spec)


async def hmgets(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


async def test_one_ack_of_many_members_publishes_their_releases_together(
    own_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    run = WorkflowScripts(own_redis, keys)
    for r in range(100):  # 100 runs: a, then c
        assert await run.enqueue(
            f"r{r}", "wf", 60_000, [member("a", True), member("c", False)], [("a", "c")], []
        )
    scripts = Scripts(own_redis, keys)
    now = await scripts.heartbeat("p", b"{}", 60_000, "register")
    got = await scripts.fetch("p", now, 100, [("work", 0)])
    assert got is not None and len(got) == 100
    await own_redis.hset(keys.listening, "*", "1")
    pubsub = own_redis.pubsub()
    await pubsub.subscribe(keys.events_channel)
    await own_redis.config_resetstat()
    done = [Acked(f.id, "work", b"1", now, 0, 1, f.token) for f in got]
    assert await scripts.ack("p", done, False, now, False) == []  # one ack call
    assert await own_redis.zcard(keys.queue("work")) == 100  # every c released
    # the docs' "one HMGET per 1,000" for one script call's events: (the ack's own reads) + 1
    assert await hmgets(own_redis) <= 8
    seen = []
    async with asyncio.timeout(10):
        while len(seen) < 200:
            m = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if m is not None:  # (None: the subscribe's own reply)
                e = json.loads(m["data"])
                seen.append((e["event"], e["id"]))
    await pubsub.aclose()
    for r in range(100):  # every event published, a dependent's before its dependency's end
        assert seen.index(("enqueued", f"r{r}.c")) < seen.index(("finished", f"r{r}.a"))
