"""A pool runs jobs of names `good` and `bad`; while they run, bad's history key is SET to a
string (by hand, a bad restore). good's jobs are acknowledged (not run twice), bad's are parked:
logged once, naming the key, its type and its repair; once the key is deleted, the parked acks
sent again acknowledge them (logged so). (ack.lua failed every ack call of the pool: no job of
any name was acknowledged, the acker retried its batch with backoff, and a stop left every job
in progress for a reaper to run again.)"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from errands.worker.reaper import Reaper
from tests.support.procs import eventually


async def _true(value: bool) -> bool:
    return value


def _lines(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.name == "errands.worker" and text in r.getMessage()
    ]


async def test_the_other_names_jobs_are_acknowledged_and_the_bad_ones_once_repaired(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=8, poll_interval=0.05)
    release = asyncio.Event()
    runs: Counter[str] = Counter()

    async def handler(job: Job) -> None:
        runs[job.id] += 1
        await release.wait()

    pool.job("good")(handler)
    pool.job("bad")(handler)
    async with Enqueuer(redis, namespace=namespace) as enq:
        for i in range(2):
            await enq.enqueue("good", {}, job_id=f"g{i}")
            await enq.enqueue("bad", {}, job_id=f"b{i}")
    caplog.set_level(logging.WARNING, logger="errands.worker")
    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.parked_interval = 0.05  # (a minute by default)
        rounds = [0]  # the rounds of parked acks sent again
        resend = worker.acker.resend_parked

        async def counted() -> int:
            rounds[0] += 1
            return await resend()

        worker.acker.resend_parked = counted  # type: ignore[method-assign]
        await eventually(lambda: _true(len(runs) == 4), 5, "the four jobs running")
        key = keys.history_of("bad")
        await redis.set(key, "x")
        release.set()
        await eventually(lambda: _true(worker.acker.unfit >= 2), 5, "bad's acks parked")
        ip = keys.in_progress(worker.pool_id)
        assert set(await redis.zrange(ip, 0, -1)) <= {b"b0:bad", b"b1:bad"}
        assert await redis.hget(keys.running, "good") == b"0"
        rounds[0] = 0
        await eventually(lambda: _true(rounds[0] >= 3), 5, "parked acks sent again")
        assert set(worker.acker.parked) == {"b0", "b1"}
        [line] = _lines(caplog, logging.ERROR, "job name bad: its jobs' acknowledgements")
        assert f"its key {key} is a string, not a zset" in line and f"DEL {key}" in line
        await redis.delete(key)  # repaired
        await eventually(lambda: _true(not worker.acker.parked), 5, "bad's acks at last")
        assert await redis.zcard(ip) == 0
        assert await redis.hget(keys.running, "bad") == b"0"
        assert _lines(caplog, logging.WARNING, "job name bad: its keys are of their types again")
        assert int(await redis.hget(keys.stats, "processed") or 0) == 4
        assert runs == {"g0": 1, "g1": 1, "b0": 1, "b1": 1}  # (none ran twice)
    finally:
        await pool.stop()


async def test_a_dead_pools_parked_jobs_come_back_once_the_key_is_repaired(
    redis: Redis, namespace: str
) -> None:
    """The pool holding the parked jobs dies first: a reaper leaves them alone while the name's
    key is of another type (nothing written: its good jobs were acknowledged, the parked ones
    stay in its set), and gives them back to their queue once it is repaired."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for i in range(2):
            await enq.enqueue("good", {}, job_id=f"g{i}")
            await enq.enqueue("bad", {}, job_id=f"b{i}")
    now = await scripts.heartbeat("dead", b"{}", 600_000, "register")
    got = await scripts.fetch("dead", now, 10, [("good", 0), ("bad", 0)])
    assert got is not None and len(got) == 4
    key = keys.history_of("bad")
    await redis.set(key, "x")
    names = ["good", "bad"]
    acks = [Acked(f.id, names[f.queue_index - 1], b"1", now, 60_000, 1, f.token) for f in got]
    report = await scripts.ack_report("dead", acks, False, now, True)
    assert sorted(report.unfit) == ["b0", "b1"]
    await redis.zadd(keys.pools, {"dead": 1})  # (its lease long over)
    reaper = Reaper(scripts, SystemClock(), "me", None, 60.0, 1.0, max_recoveries=3)
    assert await reaper.reap_once() == 0  # left alone while the key is of another type
    assert await redis.zcard(keys.in_progress("dead")) == 2
    await redis.delete(key)  # repaired
    await redis.zadd(keys.retired, {"dead": 1})  # (held a dead timeout: listed again)
    assert await reaper.reap_once() == 2
    assert sorted(await redis.zrange(keys.queue("bad"), 0, -1)) == [b"b0", b"b1"]
    assert await redis.hget(keys.running, "bad") == b"0"
