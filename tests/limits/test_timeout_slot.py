"""A job whose handler times out while it holds its partition's slot: an async one gives the
slot back with its failure (the partition's next job starts, the retry after it); a plain-def
one keeps it until its thread really ends (a thread cannot be interrupted: handlers.py), so its
partition never runs two at once under Concurrency(1, per_partition=True)."""

from __future__ import annotations

import asyncio
import threading
import time

from redis.asyncio import Redis

from errands import Concurrency, Enqueuer, Job, WorkerPool
from errands.backoff import FixedBackoff
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

from .support import until


async def test_a_timed_out_async_handler_gives_its_partitions_slot_back(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4, poll_interval=0.05)
    ran: list[str] = []
    hang = asyncio.Event()

    @pool.job("step", limits=[Concurrency(1, per_partition=True)], timeout=0.05,
              backoff=FixedBackoff(0))  # fmt: skip
    async def step(job: Job, n: int) -> None:
        ran.append(f"{n}:{job.attempt}")
        if n == 1 and job.attempt == 1:
            await hang.wait()  # (times out)

    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for n in (1, 2):
            assert await enq.enqueue("step", {"n": n}, partition="p") is not None
    async with pool:
        await until(lambda: len(ran) == 3, timeout=10)
        await until(lambda: _idle(redis, namespace), timeout=10)
    assert ran[:2] == ["1:1", "2:1"] and ran[2] == "1:2"
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_timed_out_thread_keeps_its_partitions_slot_until_it_ends(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4, poll_interval=0.05)
    inside: list[int] = []
    overlap: list[int] = []
    release = threading.Event()
    lock = threading.Lock()

    @pool.job("step", limits=[Concurrency(1, per_partition=True)], timeout=0.05,
              backoff=FixedBackoff(0))  # fmt: skip
    def step(n: int) -> None:
        with lock:
            if inside:
                overlap.append(n)
            inside.append(n)
        if n == 1:
            release.wait(10)
        with lock:
            inside.remove(n)

    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for n in (1, 2):
            assert await enq.enqueue("step", {"n": n}, partition="p") is not None
    async with pool:
        await until(lambda: inside == [1], timeout=10)
        deadline = time.monotonic() + 0.3  # 6 timeouts: job 2 must not start meanwhile
        while time.monotonic() < deadline:
            assert inside == [1]
            await asyncio.sleep(0.01)
        release.set()
        await until(lambda: _idle(redis, namespace), timeout=10)
    assert overlap == []
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def _idle(redis: Redis, namespace: str) -> bool:
    keys = Keys(namespace)
    return (
        not await redis.zcard(keys.queue("step"))
        and not await redis.exists(keys.partitions_running("step"))
        and not await redis.zcard(keys.retry("step"))
    )
