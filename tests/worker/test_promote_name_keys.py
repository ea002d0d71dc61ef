"""A pool serves `good` and `bad`, both with jobs scheduled; bad's queue key holds another type
(written by hand, a bad restore). When they are due, the requeuer moves good's jobs to their
queue (the pool runs them) and leaves bad's scheduled, logged once naming the name, the key, its
type and its repair; once the key is repaired, bad's jobs are moved and run, once each.
(promote.lua failed as a whole: no due job of any name was moved until the repair.)"""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.clock import FakeClock
from errands.store.keys import Keys
from tests.support.procs import eventually


async def _true(value: bool) -> bool:
    return value


def _lines(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


async def test_the_other_names_due_jobs_move_and_the_bad_ones_once_repaired(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    clock = FakeClock()
    pool = WorkerPool(redis, namespace=namespace, clock=clock, concurrency=4, poll_interval=0.05)
    runs: Counter[str] = Counter()

    @pool.job("good")
    @pool.job("bad")
    async def handler(job: Job) -> None:
        runs[job.id] += 1

    async with Enqueuer(redis, namespace=namespace, clock=clock) as enq:
        for i in range(2):
            await enq.enqueue("good", {}, job_id=f"g{i}", delay=10)
            await enq.enqueue("bad", {}, job_id=f"b{i}", delay=10)
    key = keys.queue("bad")
    await redis.set(key, "x")
    caplog.set_level(logging.WARNING, logger="errands")
    async with pool:
        requeuer = pool.requeuer
        assert requeuer is not None
        clock.advance(11)
        requeuer.kick()
        await eventually(lambda: _true(sorted(runs) == ["g0", "g1"]), 5, "good's jobs run")
        for _ in range(3):  # (more passes: still once)
            await requeuer.promote_once()
        assert sorted(await redis.zrange(keys.scheduled("bad"), 0, -1)) == [b"b0", b"b1"]
        assert await redis.get(key) == b"x"
        [line] = _lines(caplog, logging.ERROR, "requeuer")
        assert "job name bad" in line and f"{key} is a string, not a zset" in line
        assert f"DEL {key}" in line
        await redis.delete(key)  # repaired
        requeuer.kick()
        await eventually(lambda: _true(len(runs) == 4), 5, "bad's jobs run once repaired")
        assert _lines(caplog, logging.WARNING, "job name bad: its keys are of their types again")
        assert await redis.zcard(keys.scheduled("bad")) == 0
    assert runs == {"g0": 1, "g1": 1, "b0": 1, "b1": 1}
