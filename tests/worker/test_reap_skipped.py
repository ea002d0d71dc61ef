"""A dead pool whose in-progress set holds a job of a name whose `running` count is not a
counter (written by hand: 'abc'): the reaper reaps the pool's other jobs, reading past the
entries reap.lua leaves alone (a few hundred per call), and logs one error per such name while
it stays so; the pool stays retired until its count is repaired, then that job is reaped too.
(reap.lua refused the whole call, and the reaper re-read the same first entries every pass: one
such entry held back every job of the dead pool, forever.)"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError

from errands import Enqueuer, Job, WorkerPool
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.records import Reaped
from errands.store.scripts import Scripts
from errands.worker import reaper as reaper_module
from errands.worker.reaper import Reaper
from tests.support.procs import eventually

GOOD = 5


async def _dead_pool(redis: Redis, keys: Keys) -> tuple[str, list[str]]:
    """Pool `dead` ran one job of `bad` (its running count then written as 'abc', its entry
    first in the set) and GOOD jobs of `work`, and died; returns their ids."""
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enqueuer:
        bad = await enqueuer.enqueue("bad")
        good = await enqueuer.enqueue_many([("work", {})] * GOOD)
    assert bad is not None
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    got = await scripts.fetch("dead", 0, 10, [("bad", 0), ("work", 0)])
    assert got is not None and len(got) == GOOD + 1
    entries = {f"{bad.id}:bad": 0} | {f"{job.id}:work": 1 for job in good}
    await redis.zadd(keys.in_progress("dead"), entries)  # (the bad one read first: all were 0)
    await redis.hset(keys.running, "bad", "abc")  # type: ignore[misc]
    await redis.zadd(keys.pools, {"dead": 1})
    return bad.id, [job.id for job in good]


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


async def test_the_reaper_reads_past_the_entries_left_alone_and_logs_once(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reaper_module, "BATCH", 2)  # (the bad entry alone in each first read)
    keys = Keys(namespace)
    bad, good = await _dead_pool(redis, keys)
    reaper = Reaper(Scripts(redis, keys), SystemClock(), "me", None, 60.0, 1.0, max_recoveries=3)
    again = "reaper: job name bad: its running count is a counter again"
    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == GOOD
        assert await reaper.reap_once() == 0  # (nothing spins: the pass ends)
        assert again not in caplog.text  # (its pool not listed in the second pass: still not)
    assert sorted(await redis.zrange(keys.queue("work"), 0, -1)) == sorted(g.encode() for g in good)
    assert await redis.zrange(keys.in_progress("dead"), 0, -1) == [f"{bad}:bad".encode()]
    assert await redis.zscore(keys.retired, "dead") is not None  # (not forgotten)
    [line] = _errors(caplog)  # (one per name, not one per pass)
    assert "job name bad" in line and "'abc'" in line and "dead" in line
    await redis.hset(keys.running, "bad", "1")  # type: ignore[misc]
    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == 0  # (listed again one dead timeout after its reap)
        assert again in caplog.text  # (its count read)
    await redis.zadd(keys.retired, {"dead": 1})  # (that dead timeout over)
    assert await reaper.reap_once() == 1  # (the entry reaped once repaired)
    assert await redis.zrange(keys.queue("bad"), 0, -1) == [bad.encode()]
    assert await redis.zscore(keys.retired, "dead") is None
    assert not await redis.exists(keys.in_progress("dead"))


async def test_the_good_jobs_of_the_dead_pool_run_again_on_a_live_pool(
    redis: Redis, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reaper_module, "BATCH", 2)
    keys = Keys(namespace)
    bad, good = await _dead_pool(redis, keys)
    done: list[str] = []
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=1.0
    )

    @pool.job("work")
    async def work(job: Job) -> None:
        done.append(job.id)

    await pool.start()
    try:

        async def all_ran() -> bool:
            return sorted(done) == sorted(good)

        await eventually(all_ran, 10, "the dead pool's good jobs to run on the live pool")
        assert await redis.zrange(keys.in_progress("dead"), 0, -1) == [f"{bad}:bad".encode()]
        assert await redis.zscore(keys.retired, "dead") is not None
    finally:
        await pool.stop()


async def test_a_pass_cut_short_after_an_entry_left_alone_delays_no_good_job(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reap call that leaves an entry alone sets the pool's score in `retired` one dead
    timeout ahead only when it ends the reaper's read of the set: a pass cut short after an
    earlier call (here a Redis error; a reaper stopped, a later call refused) leaves the pool
    listed, its other good jobs taken back next pass. (Every call leaving one alone set it: the
    pool was not listed for a dead timeout, its good jobs waiting.)"""
    monkeypatch.setattr(reaper_module, "BATCH", 2)
    keys = Keys(namespace)
    await _dead_pool(redis, keys)
    scripts = Scripts(redis, keys)
    reap, calls = scripts.reap, []

    async def cut(pool_id: str, *args: Any, **kwargs: Any) -> Reaped:
        calls.append(pool_id)
        if len(calls) == 2:
            raise ConnectionError("lost")
        return await reap(pool_id, *args, **kwargs)

    monkeypatch.setattr(scripts, "reap", cut)
    reaper = Reaper(scripts, SystemClock(), "me", None, 60.0, 1.0, max_recoveries=3)
    with pytest.raises(ConnectionError):
        await reaper.reap_once()
    assert await redis.zcard(keys.queue("work")) == 1  # (the first call's good job)
    assert "dead" in await scripts.dead_pools(60_000)  # (listed still)
    assert await reaper.reap_once() == GOOD - 1
    assert "dead" not in await scripts.dead_pools(60_000)  # (read to its end: held now)


async def test_an_entry_added_after_the_read_does_not_hold_the_pool(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call ending the reaper's read finds the set not drained, yet the read left nothing
    alone: the entry it finds was added after the read (another reaper's dead timeout, a clock
    step). The pool stays listed and the next pass reaps it. (Any such call held the pool for a
    dead timeout, its entry waiting.)"""
    keys = Keys(namespace)
    bad, good = await _dead_pool(redis, keys)
    late = f"{good[-1]}:work"
    await redis.zrem(keys.in_progress("dead"), f"{bad}:bad", late)
    scripts = Scripts(redis, keys)
    reap = scripts.reap

    async def added(pool_id: str, *args: Any, **kwargs: Any) -> Reaped:
        await redis.zadd(keys.in_progress("dead"), {late: 1})  # (after the reaper's read)
        return await reap(pool_id, *args, **kwargs)

    monkeypatch.setattr(scripts, "reap", added)
    reaper = Reaper(scripts, SystemClock(), "me", None, 60.0, 1.0, max_recoveries=3)
    assert await reaper.reap_once() == GOOD - 1
    assert "dead" in await scripts.dead_pools(60_000)  # (not held: nothing was left alone)
    monkeypatch.setattr(scripts, "reap", reap)
    assert await reaper.reap_once() == 1
    assert await redis.zscore(keys.retired, "dead") is None
