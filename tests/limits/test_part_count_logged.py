"""A partition whose running count is not a counter (written by hand: 'x') is passed over by a
fetch while the name's other partitions are served (tests/limits/test_fetch_corrupt.py); the
fetch's reply now names it (``FetchResult.skipped_parts``), so that the pool logs one error
naming the key, the field and the repair, however many fetches pass it over, and a warning once
its count is a counter again and its jobs run. (The pool logged nothing: only the Redis server's
log said so, once per fetch; its jobs waited without a word in the pool's log.)"""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis

from errands import Concurrency, Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.procs import eventually


async def _true(value: bool) -> bool:
    return value


async def test_the_fetch_reply_names_the_partition_passed_over(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for label, part in (("a1", "a"), ("b1", "b"), ("p1", None)):
            await enq.enqueue("work", partition=part, job_id=label)
        await enq.enqueue("other", job_id="o1")
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    await redis.hset(keys.partitions_running("work"), "a", "x")  # type: ignore[misc]
    queues = [("work", 0), ("other", 0)]
    got = await scripts.fetch("p", 0, 10, queues, specs={"work": "c=1"})
    assert got is not None and sorted(f.id for f in got) == ["b1", "o1", "p1"]
    assert got.skipped_parts == {("work", "a"): "x"} and got.skipped == {}
    await redis.hset(keys.running, "other", "abc")  # type: ignore[misc]  # a name too
    got = await scripts.fetch("p", 0, 10, queues, specs={"work": "c=1"})
    assert got is not None and list(got) == []
    assert got.skipped_parts == {("work", "a"): "x"} and got.skipped == {"other": "abc"}
    await redis.hset(keys.partitions_running("work"), "a", 0)  # type: ignore[misc]  # repaired
    got = await scripts.fetch("p", 0, 10, queues, specs={"work": "c=1"})
    assert got is not None and [f.id for f in got] == ["a1"]
    assert got.skipped_parts == {}


def _lines(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.name == "errands.worker" and text in r.getMessage()
    ]


async def test_a_pool_logs_a_partition_passed_over_once_and_when_served_again(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    prun = keys.partitions_running("work")
    await redis.hset(prun, "a", "x")  # type: ignore[misc]
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=0.05)
    ran: list[str] = []

    @pool.job("work", limits=[Concurrency(1, per_partition=True)])
    async def work(job: Job) -> None:
        ran.append(job.id)

    async with Enqueuer(redis, namespace=namespace) as enq:
        for i in range(3):
            await enq.enqueue("work", {}, partition="a", job_id=f"a{i}")
            await enq.enqueue("work", {}, partition="b", job_id=f"b{i}")
    caplog.set_level(logging.INFO, logger="errands.worker")
    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.parked_interval = 0.05  # (the recheck's round: a minute by default)
        await eventually(lambda: _true(sorted(ran) == ["b0", "b1", "b2"]), 5, "b's jobs")
        await asyncio.sleep(0.3)  # (many fetches pass a over)
        assert sorted(ran) == ["b0", "b1", "b2"]
        errors = _lines(caplog, logging.ERROR, "partition 'a' of job name work is not fetched")
        assert len(errors) == 1, errors
        assert prun in errors[0] and "'x'" in errors[0] and f"HSET {prun} a <n>" in errors[0]
        assert not _lines(caplog, logging.WARNING, "is a counter again")
        await redis.hdel(prun, "a")  # type: ignore[misc]  # repaired: none runs
        await eventually(lambda: _true(len(ran) == 6), 5, "a's jobs, once repaired")
        warned = "partition 'a' of job name work: its running count is a counter again"
        await eventually(lambda: _true(bool(_lines(caplog, logging.WARNING, warned))), 5, "")
    finally:
        await pool.stop()
