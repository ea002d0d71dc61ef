"""Review probe (rev-wf): docs/workflows.md says "The events of the members one script call
releases or ends are published together, with one `HMGET` of the listeners per 1,000". An ack
of many workflow members in ONE ack.lua call runs wf_end once per member, and each wf_end makes
its own W.evs and flushes it (lib/workflows.lua): one HMGET per acknowledged member that
releases a dependent, not one per 1,000 for the call."""

from __future__ import annotations

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
    await own_redis.config_resetstat()
    done = [Acked(f.id, "work", b"1", now, 0, 1, f.token) for f in got]
    assert await scripts.ack("p", done, False, now, False) == []  # one ack call
    assert await own_redis.zcard(keys.queue("work")) == 100  # every c released
    # the docs' "one HMGET per 1,000" for one script call's events: (the ack's own reads) + 1
    assert await hmgets(own_redis) <= 8
