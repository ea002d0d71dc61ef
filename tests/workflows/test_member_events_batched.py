"""The `enqueued` events of the members a run queues in one call (the roots of its enqueue, the
dependents one member's end releases) are published with one HMGET of `listening` per 1,000 of
them (lib/events.lua ev_publish_all, as ack and fetch do): lib/workflows.lua wf_enqueued sent one
per member, 50,000 for a run at the cap while someone listened."""

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


async def test_a_runs_roots_publish_with_one_hmget(own_redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    await own_redis.hset(keys.listening, "*", "1")  # someone listens to every job's events
    roots = [member(f"n{i}", True) for i in range(1500)]
    await own_redis.config_resetstat()
    assert await WorkflowScripts(own_redis, keys).enqueue("r1", "wf", 60_000, roots, [], [])
    # 2 of the run's own reads, 2 for the 1,500 events (one per member before)
    assert await hmgets(own_redis) <= 5


async def test_the_members_an_end_releases_publish_with_one_hmget(
    own_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    children = [member(f"c{i}", False) for i in range(150)]
    edges = [("a", f"c{i}") for i in range(150)]
    run = WorkflowScripts(own_redis, keys)
    assert await run.enqueue("r1", "wf", 60_000, [member("a", True), *children], edges, [])
    scripts = Scripts(own_redis, keys)
    now = await scripts.heartbeat("p", b"{}", 60_000, "register")
    got = await scripts.fetch("p", now, 1, [("work", 0)])
    assert got is not None and len(got) == 1
    await own_redis.hset(keys.listening, "*", "1")
    await own_redis.config_resetstat()
    done = [Acked(f.id, "work", b"1", now, 0, 1, f.token) for f in got]
    assert await scripts.ack("p", done, False, now, False) == []
    assert await own_redis.zcard(keys.queue("work")) == 150  # every child released
    assert await hmgets(own_redis) <= 8  # (the ack's own reads; one per child more before: 156)


async def publishes(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


async def a_fanout_acked(redis: Redis, keys: Keys, children: int) -> WorkflowScripts:
    """Run r1: a, then ``children`` members after it; a fetched and acknowledged by a pool while
    someone listens: its ack walks WF_STEP (200) of them, the rest are left on the work list."""
    waiting = [member(f"c{i}", False) for i in range(children)]
    edges = [("a", f"c{i}") for i in range(children)]
    run = WorkflowScripts(redis, keys)
    assert await run.enqueue("r1", "wf", 60_000, [member("a", True), *waiting], edges, [])
    scripts = Scripts(redis, keys)
    now = await scripts.heartbeat("p", b"{}", 60_000, "register")
    got = await scripts.fetch("p", now, 1, [("work", 0)])
    assert got is not None and len(got) == 1
    await redis.hset(keys.listening, "*", "1")
    done = [Acked(f.id, "work", b"1", now, 0, 1, f.token) for f in got]
    assert await scripts.ack("p", done, False, now, False) == []
    return run


async def test_a_cascade_call_publishes_its_releases_with_one_hmget(
    own_redis: Redis, namespace: str
) -> None:
    """wf_cascade.lua releases up to WF_STEP members a call: it sent an HMGET for each."""
    keys = Keys(namespace)
    run = await a_fanout_acked(own_redis, keys, 400)
    assert await own_redis.zcard(keys.queue("work")) == 200
    await own_redis.config_resetstat()
    assert await run.cascade() == 1
    assert await own_redis.zcard(keys.queue("work")) == 400
    assert await publishes(own_redis) == 200
    assert await hmgets(own_redis) <= 2  # (200 before)


async def test_a_cancel_publishes_the_members_it_ends_with_one_hmget(
    own_redis: Redis, namespace: str
) -> None:
    """wf_cancel.lua ends the waiting members it is given (and walks their dependents): their
    `cancelled` events go together."""
    keys = Keys(namespace)
    waiting = [member(f"c{i}", False) for i in range(300)]
    edges = [("a", f"c{i}") for i in range(300)]
    run = WorkflowScripts(own_redis, keys)
    assert await run.enqueue("r1", "wf", 60_000, [member("a", True), *waiting], edges, [])
    await own_redis.hset(keys.listening, "*", "1")
    assert await run.cancel("r1", [])
    await own_redis.config_resetstat()
    assert await run.cancel("r1", [f"c{i}" for i in range(300)])
    assert await publishes(own_redis) == 300  # (none before)
    assert await hmgets(own_redis) <= 2
