"""A settle wakes one idle pool serving the job's name (store/lua/lib/wake.lua), as an enqueue
does, not every idle pool: four pools marked idle for the name, one job settled, one pool
woken on its own channel and nothing published on the namespace's `wake` channel."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, SystemClock
from errands.handlers import JobType
from errands.job import Job
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from errands.worker.settler import Settler
from tests.worker.test_wake import Wakeups, until

POOL = "p0000000000000001"
IDLE = [f"idle{i}" for i in range(4)]


async def running_job(redis: Redis, keys: Keys) -> tuple[Scripts, str, str]:
    """A job of ``w`` fetched by POOL; the four IDLE pools marked idle for ``w`` (as their
    fetches mark them, with deadlines an hour on)."""
    scripts = Scripts(redis, keys)
    job = await Enqueuer(redis, namespace=keys.namespace).enqueue("w")
    assert job is not None
    now = await scripts.heartbeat(POOL, b"{}", 600_000, "register")
    got = await scripts.fetch(POOL, now, 1, [("w", 0)])
    assert got is not None and [f.id for f in got] == [job.id]
    await redis.sadd(keys.idle, *IDLE)
    await redis.zadd(keys.idle_for("w"), {p: -(now + 3_600_000 + i) for i, p in enumerate(IDLE)})
    return scripts, job.id, got[0].token


@pytest.mark.parametrize("mode", ["retry", "requeue", "dead"])
async def test_a_settle_wakes_one_idle_pool_of_the_name(
    redis: Redis, namespace: str, mode: str
) -> None:
    keys = Keys(namespace)
    scripts, job_id, token = await running_job(redis, keys)
    target = {"retry": keys.retry("w"), "requeue": keys.queue("w"), "dead": keys.dead}[mode]
    score = 0 if mode == "requeue" else 1
    settle = Settle(job_id, "w", mode, target, 1, 1, score_ms=score, token=token)
    async with Wakeups(redis, keys).listening() as wakeups:
        assert await scripts.settle(POOL, settle)
        # pub/sub keeps the server's order: once this marker arrives, so did the settle's
        await redis.publish(keys.wake_channel, "marker")
        await until(lambda: wakeups.broadcast >= 1)
    assert wakeups.broadcast == 1  # the marker alone
    assert wakeups.single == ["idle3"]  # the latest deadline
    assert await redis.zcard(keys.idle_for("w")) == 3


async def woken_by(redis: Redis, keys: Keys, settle: Callable[[], Awaitable[object]]) -> list[str]:
    """The pools woken one by one while ``settle`` runs (none may be woken by a broadcast)."""
    async with Wakeups(redis, keys).listening() as wakeups:
        await settle()
        await redis.publish(keys.wake_channel, "marker")
        await until(lambda: wakeups.broadcast >= 1)
    assert wakeups.broadcast == 1  # the marker alone
    return wakeups.single


@pytest.mark.parametrize("mode", ["retry", "later", "dead", "drop", "requeue"])
async def test_a_settle_that_frees_nothing_wakes_no_pool(
    redis: Redis, namespace: str, mode: str
) -> None:
    """A retry, snooze, burial or drop of a name without a concurrency limit (nor a partition)
    frees no slot and queues nothing, yet popped an idle pool's mark (a hand-off mark too: an
    enqueue before that pool's next fetch was queued instead of handed off) and woke it. A
    requeue frees the job itself: one pool woken."""
    keys = Keys(namespace)
    scripts, job_id, token = await running_job(redis, keys)
    target = {"retry": keys.retry("w"), "later": keys.scheduled("w"), "dead": keys.dead}
    target |= {"drop": keys.dead, "requeue": keys.queue("w")}
    score = 0 if mode == "requeue" else 1
    s = Settle(job_id, "w", mode, target[mode], 1, 1, score_ms=score, token=token)
    s.wake = False
    expected = ["idle3"] if mode == "requeue" else []
    assert await woken_by(redis, keys, lambda: scripts.settle(POOL, s)) == expected
    assert await redis.zcard(keys.idle_for("w")) == 4 - len(expected)


@pytest.mark.parametrize("cap", [0, 2])
async def test_a_pool_wakes_another_for_the_slot_its_failure_frees(
    redis: Redis, namespace: str, cap: int
) -> None:
    """The settler tells settle.lua whether the job's name has a concurrency limit (as acks
    do): a failure of a capped name frees a slot an idle pool may take, one of a name without
    a limit frees nothing to wake a pool for."""
    keys = Keys(namespace)
    scripts, job_id, token = await running_job(redis, keys)
    jt = JobType("w", lambda: None, max_concurrency=cap)
    settler = Settler(scripts, POOL, SystemClock(), JSONSerializer(), dead_max_jobs=100,
                      dead_max_age=3600.0, history=False, job_types={"w": jt})  # fmt: skip
    job = Job("w", {}, id=job_id, enqueued_at=0.0)
    job._attempt = token
    fail = settler.fail(job, jt, RuntimeError("boom"), 0)
    assert await woken_by(redis, keys, lambda: fail) == (["idle3"] if cap else [])
    assert await redis.zscore(keys.retry("w"), job_id) is not None


async def test_a_settle_giving_a_partition_its_turn_wakes_a_pool(
    redis: Redis, namespace: str
) -> None:
    """A name without max_concurrency (the worker says wake=False) but with one job at a time
    per partition: the failure of the partition's running job gives its next job a turn, which
    an idle pool may take: one pool woken (settle.lua's `freed`)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for i in range(2):
            await enq.enqueue("w", {}, job_id=f"a{i}", partition="a")
    now = await scripts.heartbeat(POOL, b"{}", 600_000, "register")
    got = await scripts.fetch(POOL, now, 2, [("w", 0)], specs={"w": "c=1"})
    assert got is not None and [f.id for f in got] == ["a0"]  # a1 waits for its partition
    await redis.sadd(keys.idle, *IDLE)
    await redis.zadd(keys.idle_for("w"), {p: -(now + 3_600_000 + i) for i, p in enumerate(IDLE)})
    s = Settle("a0", "w", "retry", keys.retry("w"), 1, 1, score_ms=1, token=got[0].token)
    s.wake = False
    assert await woken_by(redis, keys, lambda: scripts.settle(POOL, s)) == ["idle3"]
    assert await redis.zscore(keys.partitions_ready("w"), "a") is not None
