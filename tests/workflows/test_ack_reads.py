"""ack.lua reads the runs of its workflow members once per call (one HMGET of workflow_of),
and hands each to lib/workflows.lua wf_end: it read each member's run twice, with an HGET per
job for the unfit check and again in wf_end."""

from __future__ import annotations

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from errands.workflows.store import Member, WorkflowScripts


def member(node: str) -> Member:
    spec = b'{"n":"work","f":"fail","p":0,"d":[]}'
    return Member(node, "work", True, 0, b'{"id":"' + node.encode() + b'"}', spec)


async def test_an_ack_of_members_reads_their_runs_once(own_redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    nodes = ["a", "b", "c", "d", "e", "f"]
    assert await WorkflowScripts(own_redis, keys).enqueue(
        "r1", "wf", 60_000, [member(n) for n in nodes], [], []
    )
    scripts = Scripts(own_redis, keys)
    now = await scripts.heartbeat("p", b"{}", 60_000, "register")
    got = await scripts.fetch("p", now, 10, [("work", 0)])
    assert got is not None and len(got) == len(nodes)
    done = [Acked(f.id, "work", b"1", now, 0, 1, f.token) for f in got]
    await own_redis.config_resetstat()
    assert await scripts.ack("p", done[:-1], False, now, False) == []
    stats = await own_redis.info("commandstats")
    assert "cmdstat_hget" not in stats  # (the run is still open: wf_finish reads nothing)
    assert await own_redis.hlen(keys.workflow_of) == 1
    assert await scripts.ack("p", done[-1:], False, now, False) == []
    assert await own_redis.hget(keys.prefix + "wf:r1", "status") == b"succeeded"
