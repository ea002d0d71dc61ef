"""The other ways a job reaches its queue wake one idle pool serving its name, as an enqueue
does (store/lua/lib/wake.lua), not every idle pool: an admin move onto its queue (a dead job
retried), a schedule's fire, a workflow's members ready at once and a member released by its
last dependency's end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from errands import Client, Enqueuer, Workflow
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.invariants import assert_invariants
from tests.worker.test_wake import Wakeups, until

IDLE = [f"idle{i}" for i in range(4)]


async def mark_idle(redis: Redis, keys: Keys, name: str) -> None:
    """The four IDLE pools registered and marked idle for ``name`` (as their fetches mark them,
    with deadlines an hour on; idle3's the latest)."""
    scripts = Scripts(redis, keys)
    for pool in IDLE:
        now = await scripts.heartbeat(pool, b"{}", 600_000, "register")
    await redis.sadd(keys.idle, *IDLE)
    marks = {p: -(now + 3_600_000 + i) for i, p in enumerate(IDLE)}
    await redis.zadd(keys.idle_for(name), marks)  # type: ignore[arg-type]


async def woken(redis: Redis, keys: Keys, action: Callable[[], Awaitable[object]]) -> list[str]:
    """The pools woken one by one while ``action`` runs; none may be woken by a broadcast."""
    async with Wakeups(redis, keys).listening() as wakeups:
        await action()
        # pub/sub keeps the server's order: once this marker arrives, so did the action's
        await redis.publish(keys.wake_channel, "marker")
        await until(lambda: wakeups.broadcast >= 1)
    assert wakeups.broadcast == 1  # the marker alone
    return wakeups.single


async def test_a_dead_job_retried_wakes_one_idle_pool(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    job = await Enqueuer(redis, namespace=namespace, strict=None).enqueue("w", delay=3600)
    assert job is not None
    await redis.zrem(keys.scheduled("w"), job.id)
    await redis.zadd(keys.dead, {job.id: 1})
    await mark_idle(redis, keys, "w")
    scripts = Scripts(redis, keys)
    assert await woken(redis, keys, lambda: scripts.move(job.id, "w", keys.dead, "queue")) == [
        "idle3"
    ]
    assert await redis.zscore(keys.queue("w"), job.id) is not None
    assert await redis.zcard(keys.idle_for("w")) == 3


async def test_a_schedule_fired_wakes_one_idle_pool(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    client = Client(redis, namespace=namespace)
    await client.add_schedule("nightly", "tick", "0 3 * * *")
    await mark_idle(redis, keys, "tick")
    assert await woken(redis, keys, lambda: client.run_schedule_now("nightly")) == ["idle3"]
    assert await redis.zcard(keys.queue("tick")) == 1


async def test_a_workflow_wakes_one_idle_pool_per_name_at_its_start_and_release(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    wf = Workflow("chain", id="chain")
    first = wf.add("a", {}, id="first")
    wf.add("a", {}, id="again")
    wf.add("b", {}, id="then", after=[first])
    await mark_idle(redis, keys, "a")
    await mark_idle(redis, keys, "b")
    enq = Enqueuer(redis, namespace=namespace, strict=None)
    run = None

    async def start() -> None:
        nonlocal run
        run = await enq.enqueue_workflow(wf)

    assert await woken(redis, keys, start) == ["idle3"]  # one of "a" for its two members
    assert run is not None
    scripts = Scripts(redis, keys)
    now = await scripts.heartbeat("runner", b"{}", 600_000, "register")
    got = await scripts.fetch("runner", now, 2, [("a", 0)])
    assert got is not None
    fetched = {f.id: f for f in got}
    assert set(fetched) == {run.job_id("first"), run.job_id("again")}
    f = fetched[run.job_id("first")]
    done = [Acked(f.id, "a", b"null", now, 0, 1, f.token)]
    single = await woken(redis, keys, lambda: scripts.ack("runner", done, False, now, True))
    assert single == ["idle3"]  # one of "b", for the member released
    assert await redis.zcard(keys.idle_for("a")) == 3
    assert await redis.zcard(keys.idle_for("b")) == 3
    await assert_invariants(redis, namespace)
