"""A dead pool's in-progress set holds jobs of `work` and a job of `bad`, one of whose own keys
(its queue, its history) holds another type (written by hand, a bad restore). The reaper gives
the `work` jobs back to their queue (a live pool runs them) and leaves bad's entry alone: it
stays in the dead pool's set, nothing of it written, logged once naming the name, the key, its
type and its repair; once the key is repaired, a later pass reaps it (run once, never twice).
(reap.lua refused the whole reap: every job of the dead pool waited for the repair.)"""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker import reaper as reaper_module
from errands.worker.reaper import Reaper
from tests.support.procs import eventually

GOOD = 5


async def _dead_pool(redis: Redis, keys: Keys, family: str) -> tuple[str, list[str], str]:
    """Pool `dead` ran one job of `bad` (its entry first in the set) and GOOD jobs of `work`,
    and died; then bad's key ``family`` was SET to a string. Returns the ids and that key."""
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enqueuer:
        bad = await enqueuer.enqueue("bad")
        good = await enqueuer.enqueue_many([("work", {})] * GOOD)
    assert bad is not None
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    got = await scripts.fetch("dead", 0, 10, [("bad", 0), ("work", 0)])
    assert got is not None and len(got) == GOOD + 1
    entries = {f"{bad.id}:bad": 0} | {f"{job.id}:work": 1 for job in good}
    await redis.zadd(keys.in_progress("dead"), entries)  # (the bad one read first)
    key = getattr(keys, family)("bad")
    await redis.set(key, "x")
    await redis.zadd(keys.pools, {"dead": 1})
    return bad.id, [job.id for job in good], key


def _lines(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


@pytest.mark.parametrize("family", ["queue", "history_of", "partitions_running"])
async def test_the_reaper_reaps_the_other_names_and_logs_the_key_once(
    redis: Redis,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    family: str,
) -> None:
    monkeypatch.setattr(reaper_module, "BATCH", 2)  # (the bad entry alone in each first read)
    keys = Keys(namespace)
    bad, good, key = await _dead_pool(redis, keys, family)
    reaper = Reaper(Scripts(redis, keys), SystemClock(), "me", None, 60.0, 1.0, max_recoveries=3)
    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == GOOD
        await redis.zadd(keys.retired, {"dead": 1})  # (listed again: still left alone)
        assert await reaper.reap_once() == 0
    assert sorted(await redis.zrange(keys.queue("work"), 0, -1)) == sorted(g.encode() for g in good)
    assert await redis.zrange(keys.in_progress("dead"), 0, -1) == [f"{bad}:bad".encode()]
    assert await redis.hget(keys.running, "bad") == b"1"  # (nothing written for it)
    assert await redis.hget(keys.attempts, bad) is not None
    assert await redis.get(key) == b"x"
    assert await redis.zscore(keys.retired, "dead") is not None  # (not forgotten)
    [line] = _lines(caplog, logging.ERROR, "reaper")  # (once per name, not once per pass)
    want = "hash" if family == "partitions_running" else "zset"
    assert "job name bad" in line and f"{key} is a string, not a {want}" in line
    assert f"DEL {key}" in line and "dead" in line
    await redis.delete(key)  # repaired
    await redis.zadd(keys.retired, {"dead": 1})  # (the dead timeout it was held for, over)
    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == 1
    assert _lines(caplog, logging.WARNING, "job name bad: its keys are of their types again")
    assert await redis.zrange(keys.queue("bad"), 0, -1) == [bad.encode()]
    assert await redis.hget(keys.running, "bad") == b"0"
    assert not await redis.exists(keys.in_progress("dead"))
    assert await redis.zscore(keys.retired, "dead") is None


async def test_the_good_jobs_of_the_dead_pool_run_on_a_live_pool_the_bad_one_once_repaired(
    redis: Redis, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reaper_module, "BATCH", 2)
    keys = Keys(namespace)
    bad, good, key = await _dead_pool(redis, keys, "queue")
    done: list[str] = []
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=1.0
    )

    @pool.job("work")
    @pool.job("bad")
    async def work(job: Job) -> None:
        done.append(job.id)

    await pool.start()
    try:

        async def ran(ids: list[str]) -> bool:
            return sorted(done) == sorted(ids)

        await eventually(lambda: ran(good), 10, "the dead pool's good jobs to run on the live pool")
        assert await redis.zrange(keys.in_progress("dead"), 0, -1) == [f"{bad}:bad".encode()]
        await redis.delete(key)  # repaired: reaped one dead timeout after its last reap
        await eventually(lambda: ran([*good, bad]), 10, "the bad job once its key is repaired")
    finally:
        await pool.stop()
