"""A pool serving two job names, one of which has a `running` count that is not a counter (HSET by
hand to 'abc'): the pool keeps running the other name's jobs, logs one error naming the key and
the field (however many fetches skip the name: its fetch loop's, or a batch name's loop's) and,
once the count is repaired, runs the name's jobs too and logs that it is served again. The acks
of a batch mixing both names acknowledge the good name's jobs and park the bad name's,
acknowledged once it is repaired.
(Every fetch of the pool failed, for every name, and every ack of the batch was retried for
ever: lua/fetch.lua and lua/ack.lua failed the whole call.)"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from errands import BatchOutcome, Enqueuer, Job, WorkerPool
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.scripts import Acked, FetchResult, Scripts
from errands.worker.acker import Acker
from tests.support.procs import eventually

POOL = "p0000000000000001"


async def _true(value: bool) -> bool:
    return value


def _lines(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.name == "errands.worker" and text in r.getMessage()
    ]


async def test_a_pool_serves_its_other_name_while_one_count_is_not_a_counter(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    await redis.hset(keys.running, "bad", "abc")  # type: ignore[misc]
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=0.05)
    ran: list[str] = []

    @pool.job("good")
    async def good(job: Job) -> None:
        ran.append(job.id)

    @pool.job("bad")
    async def bad(job: Job) -> None:
        ran.append(job.id)

    async with Enqueuer(redis, namespace=namespace) as enq:
        for i in range(3):
            await enq.enqueue("good", {}, job_id=f"g{i}")
            await enq.enqueue("bad", {}, job_id=f"b{i}")
    caplog.set_level(logging.INFO, logger="errands.worker")
    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        fetches = [0]
        note = worker._note_skipped

        def counted(*args: object) -> None:
            fetches[0] += 1
            note(*args)  # type: ignore[arg-type]

        worker._note_skipped = counted  # type: ignore[method-assign]
        await eventually(lambda: _true(sorted(ran) == ["g0", "g1", "g2"]), 5, "the good jobs")
        await eventually(lambda: _true(fetches[0] >= 5), 5, "fetches that skip bad")
        assert sorted(ran) == ["g0", "g1", "g2"]
        assert await redis.zcard(keys.queue("bad")) == 3
        errors = _lines(caplog, logging.ERROR, "job name bad is not fetched")
        assert len(errors) == 1, errors
        assert keys.running in errors[0] and "'abc'" in errors[0]
        assert f"HSET {keys.running} bad <n>" in errors[0]
        await redis.hdel(keys.running, "bad")  # type: ignore[misc]  # repaired: none runs
        await eventually(lambda: _true(len(ran) == 6), 5, "the bad jobs, once repaired")
        assert _lines(caplog, logging.WARNING, "job name bad: its running count is a counter")
        assert await redis.hget(keys.running, "bad") == b"0"
    finally:
        await pool.stop()


async def test_a_mixed_ack_batch_parks_the_jobs_of_the_bad_name_only(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for i in range(2):
            await enq.enqueue("good", {}, job_id=f"g{i}")
            await enq.enqueue("bad", {}, job_id=f"b{i}")
    now = await scripts.heartbeat(POOL, b"{}", 600_000, "register")
    got = await scripts.fetch(POOL, now, 10, [("good", 0), ("bad", 0)])
    assert got is not None and len(got) == 4
    await redis.hset(keys.running, "bad", "abc")  # type: ignore[misc]
    acker = Acker(scripts, POOL, SystemClock(), history=False)
    for f in got:
        name = "good" if f.id.startswith("g") else "bad"
        acker.add(Acked(f.id, name, b"1", now, 60_000, 1, f.token), False)
    await asyncio.wait_for(acker.flush(), 5)  # (one call: it retried for ever)
    assert acker.idle and acker.unfit == 2 and acker.refused == 0
    assert acker.holding() == {"b0", "b1"}
    assert await redis.zrange(keys.in_progress(POOL), 0, -1) == [b"b0:bad", b"b1:bad"]
    assert await redis.hget(keys.running, "good") == b"0"
    assert await acker.resend_parked() == 0  # still unfit: parked again
    await redis.hset(keys.running, "bad", 2)  # type: ignore[misc]  # repaired
    assert await acker.resend_parked() == 2
    assert acker.holding() == set()
    assert await redis.zcard(keys.in_progress(POOL)) == 0
    assert await redis.hget(keys.running, "bad") == b"0"


async def test_the_pool_parks_the_acks_of_a_name_whose_count_went_bad(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=0.05)
    release = asyncio.Event()
    started: list[str] = []

    @pool.job("good")
    async def good(job: Job) -> None:
        started.append(job.id)
        await release.wait()

    @pool.job("bad")
    async def bad(job: Job) -> None:
        started.append(job.id)
        await release.wait()

    async with Enqueuer(redis, namespace=namespace) as enq:
        for i in range(2):
            await enq.enqueue("good", {}, job_id=f"g{i}")
            await enq.enqueue("bad", {}, job_id=f"b{i}")
    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.parked_interval = 0.05  # (a minute by default)
        await eventually(lambda: _true(len(started) == 4), 5, "the four jobs running")
        await redis.hset(keys.running, "bad", "abc")  # type: ignore[misc]
        release.set()
        await eventually(lambda: _true(worker.acker.unfit == 2), 5, "the bad name's acks parked")
        assert set(worker.acker.parked) == {"b0", "b1"}
        ip = keys.in_progress(worker.pool_id)
        assert await redis.zrange(ip, 0, -1) == [b"b0:bad", b"b1:bad"]
        await redis.hset(keys.running, "bad", 2)  # type: ignore[misc]  # repaired
        await eventually(lambda: _true(not worker.acker.parked), 5, "the parked acks sent again")
        assert await redis.zcard(ip) == 0
        assert await redis.hget(keys.running, "bad") == b"0"
    finally:
        await pool.stop()


async def test_a_batch_name_whose_count_is_not_a_counter_is_logged_once(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The same in a batch name's loop (its own fetches, one name each)."""
    keys = Keys(namespace)
    await redis.hset(keys.running, "index", "abc")  # type: ignore[misc]
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=0.05)
    batches: list[list[str]] = []

    @pool.batch_job("index", max_size=2, max_wait=timedelta(milliseconds=50))
    async def index(jobs: list[Job]) -> BatchOutcome:
        batches.append(sorted(j.id for j in jobs))
        return BatchOutcome(results={j.id: 1 for j in jobs})

    @pool.job("good")
    async def good(job: Job) -> None:
        pass

    async with Enqueuer(redis, namespace=namespace) as enq:
        for i in range(2):
            await enq.enqueue("index", {}, job_id=f"i{i}")
        await enq.enqueue("good", {}, job_id="g0")
    caplog.set_level(logging.INFO, logger="errands.worker")
    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        fetches = [0]
        note = worker._note_skipped

        def counted(got: FetchResult | None, order: list[tuple[str, int]]) -> None:
            fetches[0] += order == [("index", 0)]  # (the batch loop's)
            note(got, order)

        worker._note_skipped = counted  # type: ignore[method-assign]
        await eventually(lambda: _true(fetches[0] >= 5), 5, "fetches that skip index")
        assert batches == [] and await redis.zcard(keys.queue("index")) == 2
        errors = _lines(caplog, logging.ERROR, "job name index is not fetched")
        assert len(errors) == 1, errors
        await redis.hset(keys.running, "index", 0)  # type: ignore[misc]  # repaired
        await eventually(lambda: _true(batches == [["i0", "i1"]]), 5, "the batch, once repaired")
        assert _lines(caplog, logging.WARNING, "job name index: its running count is a counter")
    finally:
        await pool.stop()
