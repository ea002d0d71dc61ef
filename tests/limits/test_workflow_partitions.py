"""Partitions of workflow members: a member with a partition is indexed and served in its
partition's turn within its limits, whether it is queued at once (wf_enqueue.lua), released when
its last dependency ends (lib/workflows.lua, in the script of that end) or added to a running
run (wf_add.lua)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer, Workflow
from errands.clock import to_ms
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.invariants import assert_invariants

SPEC = {"step": "c=1"}  # one member of each partition at a time


async def test_members_with_a_partition_are_limited_by_it(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    wf = Workflow("w", id="run1")
    wf.add("step", {}, id="a1", partition='cust "a"')  # (any character but controls)
    wf.add("step", {}, id="a2", partition='cust "a"')
    b1 = wf.add("step", {}, id="b1", partition="b")
    wf.add("step", {}, id="after", after=[b1], partition='cust "a"')
    wf.add("step", {}, id="plain", after=["b1"])
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        run = await enq.enqueue_workflow(wf)
        await run.add("step", {}, id="added", partition="c")
        now = to_ms(enq.clock.now())
    await assert_invariants(redis, namespace)  # each queued member of a partition indexed
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p", now, 10, [("step", 0)], specs=SPEC)
    # partition a's concurrency of 1 holds one of a1, a2 back; b1 and the added member run
    ids = sorted(f.id for f in got)
    assert ids[1:] == ["run1.added", "run1.b1"] and ids[0] in ("run1.a1", "run1.a2")
    other = "run1.a2" if ids[0] == "run1.a1" else "run1.a1"
    assert await redis.hget(keys.partitions, ids[0]) == b'cust "a"'
    done = [Acked(f.id, "step", b"null", now, 0, 1, f.token) for f in got]
    assert await scripts.ack("p", done, False, now, False) == []
    # b1's end released "after" into partition a and "plain" without a partition
    assert await redis.hget(keys.partitions, "run1.after") == b'cust "a"'
    assert await redis.hget(keys.partitions, "run1.plain") is None
    await assert_invariants(redis, namespace)
    got = await scripts.fetch("p", now, 10, [("step", 0)], specs=SPEC)
    assert sorted(f.id for f in got) == sorted([other, "run1.plain"])  # a: one at a time
    done = [Acked(f.id, "step", b"null", now, 0, 1, f.token) for f in got]
    assert await scripts.ack("p", done, False, now, False) == []
    got = await scripts.fetch("p", now, 10, [("step", 0)], specs=SPEC)
    assert [f.id for f in got] == ["run1.after"]
    await assert_invariants(redis, namespace)
