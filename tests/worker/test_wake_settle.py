"""A settle wakes one idle pool serving the job's name (store/lua/lib/wake.lua), as an enqueue
does, not every idle pool: four pools marked idle for the name, one job settled, one pool
woken on its own channel and nothing published on the namespace's `wake` channel."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
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
