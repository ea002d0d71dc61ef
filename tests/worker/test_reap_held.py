"""Retired pools held by an entry reap.lua leaves alone (its job name's `running` count is not
a counter) are listed again only one dead timeout after the reap that left it alone: a pass
does not re-read them, and more than dead_pools.lua lists at once cannot crowd out a pool
retired after them. (Retired pools were listed by the time they were retired, the first 100,
every pass: 101 held pools re-read every pass, and a pool retired after them, whose reaper
stopped before taking its jobs back, was never listed: its jobs never came back.)"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.records import Reaped
from errands.store.scripts import Scripts
from errands.worker.reaper import Reaper

HELD = 101  # (dead_pools.lua lists 100 retired pools at most)
GOOD = 3


async def _held_pools(redis: Redis, keys: Keys) -> None:
    """HELD retired pools, each holding one entry of job name `bad` (its count 'abc'; the
    entries' jobs are gone: taken back, they are forgotten)."""
    await redis.hset(keys.running, "bad", "abc")  # type: ignore[misc]
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(HELD):
            pipe.zadd(keys.in_progress(f"held{i}"), {f"h{i}:bad": 0})
            pipe.zadd(keys.retired, {f"held{i}": i + 1})  # (retired long ago)
        await pipe.execute()


async def _fresh_pool(redis: Redis, scripts: Scripts) -> list[str]:
    """Pool `fresh` ran GOOD jobs and died; a reaper retired it and stopped before taking its
    jobs back (its process ended: a reap call with none of its entries)."""
    async with Enqueuer(redis, namespace=scripts.keys.namespace, strict=None) as enqueuer:
        good = await enqueuer.enqueue_many([("work", {})] * GOOD)
    await scripts.heartbeat("fresh", b"{}", 60_000, mode="register")
    got = await scripts.fetch("fresh", 0, 10, [("work", 0)])
    assert got is not None and len(got) == GOOD
    await redis.zadd(scripts.keys.pools, {"fresh": 1})
    done = await scripts.reap("fresh", 1000, 3, b"{}", b"{}", [], read_to_end=False)
    assert not done.drained and await redis.zscore(scripts.keys.retired, "fresh") is not None
    return [job.id for job in good]


async def test_held_retired_pools_are_not_reread_and_crowd_out_no_later_one(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await _held_pools(redis, keys)
    good = await _fresh_pool(redis, scripts)
    calls: Counter[str] = Counter()
    reap = scripts.reap

    async def counted(pool_id: str, *args: Any, **kwargs: Any) -> Reaped:
        calls[pool_id] += 1
        return await reap(pool_id, *args, **kwargs)

    monkeypatch.setattr(scripts, "reap", counted)
    # (a dead timeout no run of this test outlasts: a held pool is not listed again by itself)
    reaper = Reaper(scripts, SystemClock(), "me", None, 30.0, 1.0, max_recoveries=3)
    with caplog.at_level(logging.ERROR, logger="errands"):
        moved = [await reaper.reap_once() for _ in range(3)]
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "dead pools held0, held1, held10," in line and "held17 and 90 more are" in line
    assert sum(moved) == GOOD, moved
    assert sorted(await redis.zrange(keys.queue("work"), 0, -1)) == sorted(g.encode() for g in good)
    assert await redis.zscore(keys.retired, "fresh") is None
    assert calls == Counter({f"held{i}": 1 for i in range(HELD)} | {"fresh": 1})  # (read once)
    assert await redis.zcard(keys.retired) == HELD  # (still held)
    await redis.hset(keys.running, "bad", str(HELD))  # type: ignore[misc]
    await redis.zadd(keys.retired, {f"held{i}": i + 1 for i in range(HELD)})  # (a timeout later)
    assert [await reaper.reap_once() for _ in range(2)] == [0, 0]  # (100, then the last one)
    assert await redis.zcard(keys.retired) == 0  # (the held pools reaped once repaired)
    assert not await redis.exists(*(keys.in_progress(f"held{i}") for i in range(HELD)))
    assert await redis.hget(keys.running, "bad") == b"0"
