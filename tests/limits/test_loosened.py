"""Per-partition limits loosened at run time (Client.set_limits) reach the partitions a limit
already holds back: a busy one (its concurrency full) and a rate-limited one (waiting for its
window) are served under the new limits within a few seconds, not only once their running job
ends or their old window frees."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from errands import Client, Concurrency, Enqueuer, Job, Rate, WorkerPool
from errands.limits import Limit
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants
from tests.support.ready import ready_to_fetch

from .support import until

CASES: dict[str, tuple[Limit, Limit]] = {
    "busy": (Concurrency(1, per_partition=True), Concurrency(2, per_partition=True)),
    "rate-limited": (
        Rate(1, per=timedelta(minutes=10), per_partition=True),
        Rate(5, per=timedelta(minutes=10), per_partition=True),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_limits_loosened_at_run_time_reach_a_partition_held_back(
    redis: Redis, redis_url: str, namespace: str, case: str
) -> None:
    before, after = CASES[case]
    release = asyncio.Event()
    started: list[str] = []
    ended: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4, poll_interval=30)

    @pool.job("charge", limits=[before])
    async def charge(job: Job) -> None:
        started.append(job.id)
        await release.wait()
        ended.append(job.id)

    client = Client(redis, namespace=namespace)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer, pool:
        try:
            for _ in range(2):
                await enqueuer.enqueue("charge", {}, partition="cust:1")
            await until(lambda: len(started) == 1)
            await asyncio.sleep(0.3)  # (the second is held back: its partition busy, or waiting)
            assert len(started) == 1
            await client.set_limits("charge", [after])
            # the pool applies them within a second, and serves the partition again
            await until(lambda: len(started) == 2, timeout=5)
        finally:
            release.set()
        await until(lambda: len(ended) == 2)
    await client.set_limits("charge", None)
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_partitions_held_back_get_turns_in_bounded_steps(
    redis: Redis, namespace: str
) -> None:
    """300 partitions waiting for their rate (Rate(1, per=10 min) each, one start each): a fetch
    under other per-partition limits gives them turns a bounded step at a time (a ZSCAN of the
    waiting ones per call), saying in pscan's "<name>\\0limits" field where it is, then what
    it was done for; a name fetched without per-partition limits leaves no field."""
    keys = Keys(namespace)
    parts = [f"c{i}" for i in range(300)]
    scripts = await ready_to_fetch(
        redis, namespace, [("sms", {}, {"partition": p}) for p in parts for _ in range(2)]
    )
    field = "sms\0limits"
    got = await scripts.fetch("p", 1, 300, [("sms", 0)], specs={"sms": "R=1/600000"})
    assert got is not None and len(got) == 300
    assert await redis.hget(keys.scan_cursor, field) == b"R=1/600000"
    got = await scripts.fetch("p", 1, 300, [("sms", 0)], specs={"sms": "R=1/600000"})
    assert got is not None and len(got) == 0
    assert await redis.zcard(keys.partitions_waiting("sms")) == 300
    # none: the first step takes some of them out of the wait, not all
    got = await scripts.fetch("p", 1, 1, [("sms", 0)], specs={"sms": ""})
    assert got is not None and len(got) == 1
    assert 0 < await redis.zcard(keys.partitions_waiting("sms")) < 300
    assert (await redis.hget(keys.scan_cursor, field) or b"").startswith(b"\0w")
    for _ in range(20):
        got = await scripts.fetch("p", 1, 1, [("sms", 0)], specs={"sms": ""})
        assert got is not None and len(got) == 1
        if await redis.hget(keys.scan_cursor, field) is None:
            break
    assert await redis.hget(keys.scan_cursor, field) is None
    assert await redis.zcard(keys.partitions_waiting("sms")) == 0
    await assert_invariants(redis, namespace)


async def test_a_readmit_cursor_written_by_hand_starts_over(redis: Redis, namespace: str) -> None:
    """A step's cursor that SCAN cannot read (past 2^64, written by hand) starts the steps over:
    read after the fetch's first write, ZSCAN's 'invalid cursor' would have raised there."""
    keys = Keys(namespace)
    scripts = await ready_to_fetch(redis, namespace, [("sms", {}, {"partition": "a"})] * 2)
    await redis.hset(keys.scan_cursor, "sms\0limits", "c=2\0w" + "9" * 30)
    got = await scripts.fetch("p", 1, 5, [("sms", 0)], specs={"sms": "c=2"})
    assert got is not None and len(got) == 2
    assert await redis.hget(keys.scan_cursor, "sms\0limits") == b"c=2"
    await assert_invariants(redis, namespace)
