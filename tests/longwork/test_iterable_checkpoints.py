"""Iterable jobs' checkpoints at the edges: a cursor JSON cannot hold, a Redis outage at a
checkpoint (tried again after the interval; a stop's checkpoint lost), and the recovery count,
which checkpoints leave alone; the result of a run resumed with no item left; a stop whose
checkpoint Redis refuses by naming a key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job
from errands.longwork.store import LongworkScripts
from errands.store.keys import Keys
from tests.longwork.test_iterable import _true, make_pool
from tests.support.invariants import assert_invariants
from tests.support.procs import eventually


async def test_a_cursor_json_cannot_hold_fails_the_run_and_keeps_the_last_checkpoint(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    # a NaN or Infinity cursor: orjson writes it as null, so it was stored as "no cursor" and
    # the next run started over from the first item, silently; now refused as job args are
    pool = make_pool(redis_url, namespace)

    @pool.iterable_job("floats", checkpoint_every=0, max_fails=1)
    async def floats(job: Job, cursor: float | None) -> AsyncIterator[float]:
        for i in range(int(cursor or 0) + 1, 6):
            yield float(job.args["bad"]) if i == 3 else float(i)

    async with (
        Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
    ):
        for bad in ("nan", "inf"):
            job = await enqueuer.enqueue("floats", {"bad": bad})
            assert job is not None
            await pool.drain(timeout=10)
            info = await client.job(job.id)
            assert info is not None and info.status == "dead", info
            assert info.progress is not None and info.progress["cursor"] == 2.0
            assert "cursor" in str(info.error) and "finite" in str(info.error)
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_checkpoints_leave_the_recovery_count_alone(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    # docs/long-jobs.md (Limits): take-backs from dead pools count towards max_recoveries over
    # the job's whole life, progress or not; a checkpoint does not reset the count
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)
    release = asyncio.Event()

    @pool.iterable_job("walk", checkpoint_every=0)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        for i in range((cursor or 0) + 1, 6):
            yield i
        await release.wait()

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("walk", job_id="walk-1")
        assert job is not None
        await redis.hset(keys.recoveries, job.id, 2)  # as if taken back from two dead pools
        async with pool:

            async def five_done() -> bool:
                raw = await redis.hget(keys.checkpoints, job.id)
                return raw is not None and orjson.loads(raw)["done"] == 5

            await eventually(five_done, 10, "5 items checkpointed")
            assert await redis.hget(keys.recoveries, job.id) == b"2"
            release.set()
            assert await job.result(timeout=10) == {"done": 5, "cursor": 5}
            await pool.drain(timeout=10)
    assert await redis.hget(keys.recoveries, job.id) is None  # forgotten as its life ended
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_checkpoint_redis_refused_is_tried_again_after_the_interval_not_each_item(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a checkpoint that failed (Redis away) left the time of the last one written as it was, so
    # every later item tried again at once: a round trip and a warning per item for the whole
    # outage (a flood of both for fast items); now the next try waits checkpoint_every
    from redis.exceptions import ConnectionError as RedisConnectionError

    calls: list[float] = []
    down = True
    write = LongworkScripts.checkpoint

    async def flaky(self: LongworkScripts, *args: object) -> str | None:
        calls.append(asyncio.get_running_loop().time())
        if down:
            raise RedisConnectionError("Redis is away")
        return await write(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(LongworkScripts, "checkpoint", flaky)
    pool = make_pool(redis_url, namespace)
    every = 0.1

    @pool.iterable_job("walk", checkpoint_every=every)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        nonlocal down
        for i in range((cursor or 0) + 1, 401):
            await asyncio.sleep(0.002)
            if i == 300:
                down = False
            yield i

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer, pool:
        job = await enqueuer.enqueue("walk")
        assert job is not None
        started = asyncio.get_running_loop().time()
        assert await job.result(timeout=20) == {"done": 400, "cursor": 400}
        took = asyncio.get_running_loop().time() - started
        await pool.drain(timeout=10)
    assert 1 <= len(calls) <= took / every + 2, (len(calls), took)
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_stop_whose_checkpoint_fails_still_requeues_from_the_one_before(
    redis_url: str,
    namespace: str,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # and its "suspended" line says so: it said "checkpointed after 4 items"
    caplog.set_level(logging.INFO, logger="errands")
    from redis.exceptions import ConnectionError as RedisConnectionError

    keys = Keys(namespace)
    write = LongworkScripts.checkpoint
    in_item, release, stopping = asyncio.Event(), asyncio.Event(), False

    async def flaky(self: LongworkScripts, *args: object) -> str | None:
        if stopping:
            raise RedisConnectionError("Redis is away")
        return await write(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(LongworkScripts, "checkpoint", flaky)
    pool = make_pool(redis_url, namespace, concurrency=1)

    @pool.iterable_job("walk", checkpoint_every=0)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        for i in range((cursor or 0) + 1, 11):
            if i == 4:
                in_item.set()
                await release.wait()
            yield i

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("walk")
        assert job is not None
        await pool.start()
        await asyncio.wait_for(in_item.wait(), 10)
        stop = asyncio.ensure_future(pool.stop())
        await eventually(lambda: _true(pool.worker is None or pool.worker.stopping), 5, "stop")
        stopping = True
        release.set()
        await stop
    assert [m.decode() for m in await redis.zrange(keys.queue("walk"), 0, -1)] == [job.id]
    saved = orjson.loads(await redis.hget(keys.checkpoints, job.id))
    assert saved["cursor"] == 3  # item 4's checkpoint failed: a resume does item 4 again
    suspended = [r.getMessage() for r in caplog.records if "suspended" in r.getMessage()]
    assert len(suspended) == 1 and "checkpointed" not in suspended[0], suspended
    assert "the checkpoint after 4 items was refused (not written)" in suspended[0]
    assert int(await redis.hget(keys.stats, "failed") or 0) == 0
    await assert_invariants(redis, namespace)


async def test_a_resume_with_no_item_left_returns_the_stored_cursor(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    # a run resumed after the last item (stopped or killed right after its checkpoint) yields
    # nothing; its result held the cursor converted for the handler (a Decimal, a timedelta)
    # where a run that yields holds its JSON: the result could not be stored (null, warned)
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)

    @pool.iterable_job("sum", checkpoint_every=0)
    async def total(job: Job, cursor: Decimal | None) -> AsyncIterator[Decimal]:
        step = Decimal("0.5")
        value = cursor or Decimal(0)
        while value < Decimal(5):
            value += step
            yield value

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("sum", job_id="sum-1")
        assert job is not None
        # the checkpoint of an earlier run that did every item (stopped right after it)
        saved = {"cursor": "5.0", "done": 10, "runtime": 1.0, "at": 1.0}
        await redis.hset(keys.checkpoints, job.id, orjson.dumps(saved))
        async with pool:
            assert await job.result(timeout=10) == {"done": 10, "cursor": "5.0"}
            await pool.drain(timeout=10)
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_stop_whose_checkpoint_redis_refuses_by_name_requeues_and_logs_the_repair(
    redis_url: str,
    namespace: str,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # checkpoint.lua refuses a call whose cancel requests hold another type (an error reply,
    # not an outage): at a stop, that failed the job (retried later) where a checkpoint Redis
    # did not answer requeues it; now requeued all the same, the refusal logged with its repair
    caplog.set_level(logging.INFO, logger="errands")
    keys = Keys(namespace)
    write = LongworkScripts.checkpoint
    in_item, release, stopping = asyncio.Event(), asyncio.Event(), False

    async def refused(self: LongworkScripts, *args: object) -> str | None:
        if not stopping:
            return await write(self, *args)  # type: ignore[arg-type]
        # the damage, for this call only (gone when the line reads its type: "is a none")
        await redis.set(keys.cancel_requests, "not a hash")
        try:
            return await write(self, *args)  # type: ignore[arg-type]
        finally:
            await redis.delete(keys.cancel_requests)

    monkeypatch.setattr(LongworkScripts, "checkpoint", refused)
    pool = make_pool(redis_url, namespace, concurrency=1)

    @pool.iterable_job("walk", checkpoint_every=0, max_fails=5)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        for i in range((cursor or 0) + 1, 11):
            if i == 4:
                in_item.set()
                await release.wait()
            yield i

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("walk")
        assert job is not None
        await pool.start()
        await asyncio.wait_for(in_item.wait(), 10)
        stop = asyncio.ensure_future(pool.stop())
        await eventually(lambda: _true(pool.worker is None or pool.worker.stopping), 5, "stop")
        stopping = True
        release.set()
        await stop
    assert [m.decode() for m in await redis.zrange(keys.queue("walk"), 0, -1)] == [job.id]
    saved = orjson.loads(await redis.hget(keys.checkpoints, job.id))
    assert saved["cursor"] == 3  # the last checkpoint written: a resume does item 4 again
    assert int(await redis.hget(keys.stats, "failed") or 0) == 0
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    named = [m for m in lines if keys.cancel_requests in m and "repair:" in m]
    assert len(named) == 1 and "WRONGTYPE" in named[0], lines
    suspended = [r.getMessage() for r in caplog.records if "suspended" in r.getMessage()]
    assert len(suspended) == 1, suspended
    assert "the checkpoint after 4 items was refused (not written)" in suspended[0]
    await assert_invariants(redis, namespace)
