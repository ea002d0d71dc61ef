"""The checkpoint's attempt fence through a real take-back (checkpoint.lua, reap.lua, fetch.lua):
a pool frozen past the dead timeout, its job taken back by a reaper and fetched by another pool,
writes nothing once it thaws: not between the take-back and the new fetch (no attempt is
recorded then), not after it (the new attempt is), and its late ack and settle are refused. The
new attempt's checkpoints stand, and a re-send of one (redis-py, after a lost reply) writes the
same again."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from errands import Enqueuer
from errands.clock import to_ms
from errands.longwork.store import LongworkScripts
from errands.store.keys import Keys
from errands.store.records import Acked, Settle
from errands.store.scripts import Scripts
from tests.support.invariants import assert_invariants


def point(cursor: int) -> bytes:
    return orjson.dumps({"cursor": cursor, "done": cursor, "runtime": 0.1, "at": 1.0})


async def test_a_frozen_pool_writes_nothing_once_its_job_is_taken_back(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    lw = LongworkScripts(scripts)
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("walk")
        now = to_ms(enqueuer.clock.now())
    assert job is not None
    await scripts.heartbeat("frozen", b"{}", 60_000, mode="register")
    [old] = await scripts.fetch("frozen", now, 1, [("walk", 0)]) or []
    stale = f"frozen:{old.token}"
    assert await lw.checkpoint(job.id, "walk", stale, point(3)) == ""

    # frozen past the dead timeout: a reaper retires it and takes its job back
    await redis.zadd(keys.pools, {"frozen": 0})
    reaped = await scripts.reap(
        "frozen", 1000, 10, b"{}", b"{}", [(f"{job.id}:walk", job.id, "walk")]
    )
    assert reaped.requeued == 1
    # thawed before anyone fetched the job: its checkpoint is refused, the cursor stays
    assert await lw.checkpoint(job.id, "walk", stale, point(7)) is None
    assert await redis.hget(keys.checkpoints, job.id) == point(3)

    await scripts.heartbeat("live", b"{}", 60_000, mode="register")
    [new] = await scripts.fetch("live", now, 1, [("walk", 0)]) or []
    assert new.id == job.id
    fresh = f"live:{new.token}"
    assert await lw.checkpoint(job.id, "walk", fresh, point(5)) == ""
    assert await lw.checkpoint(job.id, "walk", fresh, point(5)) == ""  # a re-send: the same
    # the zombie once the job runs elsewhere: its checkpoint, ack and settle are all refused,
    # the new attempt's progress untouched
    assert await lw.checkpoint(job.id, "walk", stale, point(9)) is None
    late = Acked(job.id, "walk", b"null", now, 0, 1, old.token)
    assert await scripts.ack("frozen", [late], False, now, False) == [job.id]
    retry = Settle(job.id, "walk", "retry", keys.retry("walk"), now, 1, token=old.token)
    assert await scripts.settle("frozen", retry) is False
    assert await redis.hget(keys.checkpoints, job.id) == point(5)
    assert await redis.zscore(keys.in_progress("live"), f"{job.id}:walk") is not None
    assert await redis.hget(keys.attempts, job.id) == fresh.encode()

    # the new attempt finishes: its checkpoint goes with the job
    done = Acked(job.id, "walk", b"null", now, 0, 2, new.token)
    assert await scripts.ack("live", [done], False, now, False) == []
    assert await redis.hget(keys.checkpoints, job.id) is None
    assert await lw.checkpoint(job.id, "walk", fresh, point(6)) is None  # ended: refused too
    await assert_invariants(redis, namespace)
