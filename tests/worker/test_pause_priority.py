"""Pausing job names, prompt wake-up on unpause, and job-type priority weighting."""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from errands.store.keys import Keys


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace) as enq:
        yield enq


@pytest.fixture
def client(redis: Redis, namespace: str) -> Client:
    return Client(redis, namespace=namespace)


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0) -> None:
    """Poll ``check`` (sync or async) until it is true; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.005)


# -- pause -----------------------------------------------------------------------------------
async def test_paused_name_is_not_fetched_while_others_flow(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    keys = Keys(namespace)
    ran: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4, poll_interval=0.05)

    @pool.job("a")
    async def a(job: Job) -> None:
        ran.append("a")

    @pool.job("b")
    async def b(job: Job) -> None:
        ran.append("b")

    await client.pause("a")
    assert await client.paused() == {"a"}
    for _ in range(3):
        await enqueuer.enqueue("a", {})
        await enqueuer.enqueue("b", {})
    async with pool:
        await until(lambda: ran.count("b") == 3)
        # more rounds of fetching, some after idle polls: "a" still waits
        for round_ in range(3):
            await enqueuer.enqueue("b", {})
            await until(lambda n=round_: ran.count("b") == 4 + n)
            await asyncio.sleep(0.06)  # at least one poll_interval of idle fetching
        assert "a" not in ran
        assert await redis.zcard(keys.queue("a")) == 3
        assert await redis.hget(keys.running, "a") in (None, b"0")
        await client.unpause("a")
        await until(lambda: ran.count("a") == 3)
    assert await client.paused() == set()


async def test_unpause_wakes_an_idle_pool_at_once(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    keys = Keys(namespace)
    done = asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace, poll_interval=30)

    @pool.job("a")
    async def a(job: Job) -> None:
        done.set()

    await client.pause("a")
    await enqueuer.enqueue("a", {})
    async with pool:
        # the pool fetched, found nothing it may run, and now waits up to 30 s
        await until(lambda: redis.sismember(keys.idle, pool.id))
        await until(lambda: pool.worker is not None and pool.worker.last_fetch_empty)
        await asyncio.sleep(0.05)
        assert not done.is_set()
        started = time.monotonic()
        await client.unpause("a")
        async with asyncio.timeout(3):
            await done.wait()
        assert time.monotonic() - started < 3


async def test_enqueue_wakes_an_idle_pool_at_once(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    done = asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace, poll_interval=30)

    @pool.job("a")
    async def a(job: Job) -> None:
        done.set()

    async with pool:
        await until(lambda: redis.sismember(keys.idle, pool.id))
        await asyncio.sleep(0.05)
        await enqueuer.enqueue("a", {})
        async with asyncio.timeout(3):
            await done.wait()


async def test_drain_does_not_wait_for_paused_names(
    redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    ran: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("a")
    async def a(job: Job) -> None:
        ran.append("a")

    @pool.job("b")
    async def b(job: Job) -> None:
        ran.append("b")

    await client.pause("a")
    await enqueuer.enqueue("a", {})
    await enqueuer.enqueue("b", {})
    await pool.drain(timeout=5)
    assert ran == ["b"]


# -- job-type priority -----------------------------------------------------------------------
async def test_order_samples_proportionally_to_weights(redis_url: str, namespace: str) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    weights = {"low": 1, "mid": 3, "high": 6}
    for name, weight in weights.items():
        pool.register(name, lambda job: None, priority=weight, max_concurrency=weight * 10)
    async with pool:
        worker = pool.worker
        assert worker is not None
        worker.sampler.rng = random.Random(1)
        draws = 20_000
        first: Counter[str] = Counter()
        second: Counter[str] = Counter()
        for _ in range(draws):
            order = worker.sampler.sample()
            assert sorted(order) == sorted((n, w * 10) for n, w in weights.items())
            first[order[0][0]] += 1
            second[order[1][0]] += 1
    total = sum(weights.values())
    for name, weight in weights.items():
        assert first[name] / draws == pytest.approx(weight / total, abs=0.015), first
    # without replacement: P(second = low) = P(mid first) * 1/7 + P(high first) * 1/4
    p_second_low = 0.3 * (1 / 7) + 0.6 * (1 / 4)
    assert second["low"] / draws == pytest.approx(p_second_low, abs=0.015), second


async def test_equal_weights_sample_uniformly(redis_url: str, namespace: str) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    names = ["a", "b", "c", "d"]
    for name in names:
        pool.register(name, lambda job: None)
    async with pool:
        worker = pool.worker
        assert worker is not None
        worker.sampler.rng = random.Random(1)
        first = Counter(worker.sampler.sample()[0][0] for _ in range(20_000))
    for name in names:
        assert first[name] / 20_000 == pytest.approx(0.25, abs=0.015)


async def test_weighting_shapes_what_runs(
    redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    """With one slot and both queues full, the heavy job type is fetched far more often."""
    ran: list[str] = []
    release = asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=1)

    @pool.job("light", priority=1)
    async def light(job: Job) -> None:
        ran.append("light")

    @pool.job("heavy", priority=9)
    async def heavy(job: Job) -> None:
        await release.wait()
        ran.append("heavy")

    await enqueuer.enqueue_many([("light", {"i": i}) for i in range(100)])
    await enqueuer.enqueue_many([("heavy", {"i": i}) for i in range(100)])
    release.set()
    async with pool:
        await until(lambda: len(ran) >= 60)
    # expected 54 of the first 60 heavy; far below that means weights are ignored
    assert ran[:60].count("heavy") >= 42, Counter(ran[:60])
