"""An iterable job whose stored checkpoint cannot be read (not JSON, not an object, a field
missing or of another type) fails for good before its first item, with an error naming the
hash, the job's field in it, what was found there and how to repair it; nothing is run, and the
checkpoint stays as it was. It started over from the first item, silently, before."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job
from errands.store.keys import Keys
from tests.longwork.test_iterable import make_pool
from tests.support.invariants import assert_invariants

UNREADABLE = [
    b"not json",
    b"[3, 3]",
    b'"3"',
    b'{"cursor": 3}',
    b'{"cursor": 3, "done": "three", "runtime": 1.0, "at": 1.0}',
    b'{"cursor": 3, "done": 1e400, "runtime": 1.0, "at": 1.0}',
]


# read as numbers before, out of what a checkpoint holds: a done past Redis's (and orjson's)
# 64-bit integers ran the next item, then failed at its checkpoint with a TypeError blaming the
# cursor; a bool, a fraction, a negative number, a runtime string read as Infinity
OUT_OF_RANGE = [
    (b'{"cursor": 3, "done": 18446744073709551615, "runtime": 1.0, "at": 1.0}', "done"),
    (b'{"cursor": 3, "done": 1e30, "runtime": 1.0, "at": 1.0}', "done"),
    (b'{"cursor": 3, "done": true, "runtime": 1.0, "at": 1.0}', "done"),
    (b'{"cursor": 3, "done": 2.7, "runtime": 1.0, "at": 1.0}', "done"),
    (b'{"cursor": 3, "done": -3, "runtime": 1.0, "at": 1.0}', "done"),
    (b'{"cursor": 3, "done": "3", "runtime": 1.0, "at": 1.0}', "done"),
    (b'{"cursor": 3, "done": 3, "runtime": "1e400", "at": 1.0}', "runtime"),
    (b'{"cursor": 3, "done": 3, "runtime": -1, "at": 1.0}', "runtime"),
    (b'{"cursor": 3, "done": 3, "runtime": 1.0, "at": "soon"}', "at"),
]


@pytest.mark.parametrize("stored", UNREADABLE)
async def test_an_unreadable_checkpoint_fails_the_job_and_runs_nothing(
    redis_url: str,
    namespace: str,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
    stored: bytes,
) -> None:
    await _refused(redis_url, namespace, redis, caplog, stored)


@pytest.mark.parametrize(("stored", "field"), OUT_OF_RANGE)
async def test_a_checkpoint_number_out_of_range_fails_the_job_naming_it(
    redis_url: str,
    namespace: str,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
    stored: bytes,
    field: str,
) -> None:
    error = await _refused(redis_url, namespace, redis, caplog, stored)
    assert f"cannot be read: {field} " in error, error
    assert "TypeError" not in error and "OverflowError" not in error, error


async def _refused(
    redis_url: str, namespace: str, redis: Redis, caplog: pytest.LogCaptureFixture, stored: bytes
) -> str:
    """Runs a job whose checkpoint holds ``stored``: checks it failed for good, nothing run,
    then the repair its error names; returns that error."""
    caplog.set_level(logging.WARNING, logger="errands")
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)
    starts: list[int | None] = []

    @pool.iterable_job("walk", checkpoint_every=0, max_fails=5)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        starts.append(cursor)
        for i in range((cursor or 0) + 1, 6):
            yield i

    async with (
        Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
    ):
        job = await enqueuer.enqueue("walk", job_id="walk-1")
        assert job is not None
        await redis.hset(keys.checkpoints, job.id, stored)
        await pool.drain(timeout=10)
        info = await client.job(job.id)
        assert starts == []  # not one item run again
        assert info is not None and info.status == "dead", info  # no retry: it reads the same
        error = str(info.error)
        assert keys.checkpoints in error and "walk-1" in error and "HDEL" in error, error
        assert await redis.hget(keys.checkpoints, job.id) == stored  # left for a repair
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(keys.checkpoints in m and "walk-1" in m for m in logged), logged
        # the repair the error names: HDEL starts over; the dead job retried runs every item
        await redis.hdel(keys.checkpoints, job.id)
        assert await client.retry_dead_job(job.id)
        await pool.drain(timeout=10)
        assert await job.result(timeout=5) == {"done": 5, "cursor": 5}
    assert starts == [None]
    await assert_invariants(redis, namespace, drained=True, stopped=True)
    return error


async def test_a_readable_checkpoint_still_resumes(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    # (what the reader takes: the checkpoints errands writes, int runtime and at included)
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)
    starts: list[int | None] = []

    @pool.iterable_job("walk", checkpoint_every=0)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        starts.append(cursor)
        for i in range((cursor or 0) + 1, 6):
            yield i

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("walk")
        assert job is not None
        saved = {"cursor": 3, "done": 3, "runtime": 2, "at": 1700000000}
        await redis.hset(keys.checkpoints, job.id, orjson.dumps(saved))
        await pool.drain(timeout=10)
        assert await job.result(timeout=5) == {"done": 5, "cursor": 5}
    assert starts == [3]
    await assert_invariants(redis, namespace, drained=True, stopped=True)
