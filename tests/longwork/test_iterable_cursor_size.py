"""An iterable job's cursor over its ``max_cursor`` bytes of JSON (docs/long-jobs.md): it was
written to Redis and published to event listeners at every checkpoint, whatever its size (one
over Redis's proto-max-bulk-len broke the connection); now the job fails for good at that
checkpoint, nothing written or published, its last checkpoint kept, at a periodic checkpoint and
at a stop's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from errands.errors import RegistrationError
from errands.store.keys import Keys
from tests.longwork.test_iterable import _true, make_pool
from tests.support.invariants import assert_invariants
from tests.support.procs import eventually


def _register(pool: WorkerPool, sizes: list[int], max_cursor: Any = 50) -> None:
    # cursors of these sizes in bytes of JSON (strings: their quotes included)
    @pool.iterable_job("walk", max_cursor=max_cursor, max_fails=3, checkpoint_every=0)
    async def walk(job: Job, cursor: str | None) -> AsyncIterator[str]:
        for size in sizes:
            yield "x" * (size - 2)


async def test_a_cursor_over_max_cursor_fails_the_job_for_good_and_keeps_the_last_checkpoint(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = make_pool(redis_url, namespace)
    _register(pool, [10, 50, 51, 20])  # 50: at the limit, written
    events: list[dict[str, Any]] = []
    async with (
        Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
        client.events() as stream,
    ):
        job = await enqueuer.enqueue("walk", job_id="big")
        assert job is not None
        await pool.drain(timeout=10)
        info = await client.job(job.id)
        assert info is not None and info.status == "dead", info
        assert info.attempts == 1, info  # not retried: it would reach the same cursor
        assert info.progress is not None and info.progress["done"] == 2, info.progress
        assert len(orjson.dumps(info.progress["cursor"])) == 50
        error = str(info.error)
        assert "NonRetryableError: walk big: the cursor after 3 items is 51 bytes of JSON, " in (
            error
        ), error
        assert "over max_cursor=50 bytes" in error and "last checkpoint" in error, error
        await enqueuer.enqueue("walk", job_id="mark")  # its event comes after big's
        async with asyncio.timeout(10):
            async for event in stream:
                events.append(event)
                if event["id"] == "mark":
                    break
        await pool.drain(timeout=10)  # (mark dies as big did)
    published = [e["checkpoint"]["done"] for e in events if e["event"] == "checkpoint"]
    assert published == [1, 2], events  # the cursor over the limit never published
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_stop_with_a_cursor_over_max_cursor_fails_the_job_for_good(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    # the stop's checkpoint: the job is not put back to fail again in the next pool
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace, concurrency=1)
    in_item, release = asyncio.Event(), asyncio.Event()

    @pool.iterable_job("walk", max_cursor=50, checkpoint_every=0)
    async def walk(job: Job, cursor: str | None) -> AsyncIterator[str]:
        yield "small"
        in_item.set()
        await release.wait()  # the stop comes in the middle of item 2
        yield "x" * 60

    async with (
        Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
    ):
        job = await enqueuer.enqueue("walk", job_id="big")
        assert job is not None
        await pool.start()
        await asyncio.wait_for(in_item.wait(), 10)
        stopping = asyncio.ensure_future(pool.stop())
        await eventually(lambda: _true(pool.worker is None or pool.worker.stopping), 5, "stop")
        release.set()
        await stopping
        info = await client.job(job.id)
        assert info is not None and info.status == "dead", info
        assert "62 bytes of JSON, over max_cursor=50 bytes" in str(info.error), info.error
        saved = orjson.loads(await redis.hget(keys.checkpoints, job.id))
        assert saved["cursor"] == "small" and saved["done"] == 1, saved
    await assert_invariants(redis, namespace, drained=True, stopped=True)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1000"])
def test_max_cursor_is_checked_at_registration(redis_url: str, namespace: str, bad: object) -> None:
    pool = make_pool(redis_url, namespace)
    with pytest.raises(RegistrationError, match="walk: max_cursor"):
        _register(pool, [10], max_cursor=bad)


# (review) the size is the cursor's own JSON, exactly, whatever it holds: bytes of UTF-8,
# nested, keys made strings (the checkpoint's other path through dumps_json)
CURSORS: dict[str, Any] = {
    "unicode": "é" * 21 + "日本語",
    "nested": {"a": [1, 2.5, {"b": None, "c": [True, "ü"]}], "z": -0.125, "n": 10**12},
    "non-str keys": {1: "a", 2: ["ß", {3: 4.0}]},
}


@pytest.mark.parametrize("which", sorted(CURSORS))
async def test_max_cursor_bounds_the_cursors_json_exactly(
    redis_url: str, namespace: str, which: str
) -> None:
    cursor = CURSORS[which]
    size = len(orjson.dumps(cursor, option=orjson.OPT_NON_STR_KEYS))
    pool = make_pool(redis_url, namespace)
    for name, limit in (("at", size), ("over", size - 1)):

        @pool.iterable_job(name, max_cursor=limit, checkpoint_every=0)
        async def walk(job: Job, cursor: Any) -> AsyncIterator[Any]:
            yield CURSORS[which]  # (checkpointed: every=0)

    async with (
        Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
    ):
        at = await enqueuer.enqueue("at", job_id="at")
        over = await enqueuer.enqueue("over", job_id="over")
        assert at is not None and over is not None
        await pool.drain(timeout=10)
        done, dead = await client.job("at"), await client.job("over")
    assert done is not None and done.status == "finished", done
    assert dead is not None and dead.status == "dead", dead
    assert f"is {size} bytes of JSON, over max_cursor={size - 1} bytes" in str(dead.error)
