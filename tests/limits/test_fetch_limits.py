"""Limits checked by the fetch script: type-wide and per-partition rates (a sliding window on the
Redis clock), concurrency per partition across pools, partitions served in turn."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from errands import Concurrency, Enqueuer, Job, Rate, WorkerPool
from errands.errors import RegistrationError
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

from .support import max_in_window, until


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace) as enq:
        yield enq


def make_pool(redis_url: str, namespace: str, concurrency: int = 8) -> WorkerPool:
    return WorkerPool.from_url(
        redis_url, namespace=namespace, concurrency=concurrency, poll_interval=1.0
    )


async def test_type_wide_rate_never_exceeds_its_window(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    starts: list[float] = []
    pool = make_pool(redis_url, namespace)

    @pool.job("sms", limits=[Rate(5, per=timedelta(milliseconds=400))])
    async def sms(job: Job) -> None:
        starts.append(time.monotonic())

    await enqueuer.enqueue_many([("sms", {}) for _ in range(16)])
    async with pool:
        await until(lambda: len(starts) == 16, timeout=10)
    # 16 starts at 5 per 400 ms: at least three windows passed, and never 6 in one
    assert starts[-1] - starts[0] >= 3 * 0.4 - 0.05
    assert max_in_window(starts, 0.4 - 0.03) <= 5
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_rate_limited_job_stays_queued_without_an_attempt(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    ran: list[int] = []
    pool = make_pool(redis_url, namespace)

    @pool.job("slow", limits=[Rate(1, per=timedelta(seconds=30))])
    async def slow(job: Job) -> None:
        ran.append(job.attempt)

    await enqueuer.enqueue("slow", {})
    second = await enqueuer.enqueue("slow", {})
    assert second is not None
    async with pool:
        await until(lambda: len(ran) == 1)
        await asyncio.sleep(0.3)  # fetches meanwhile: the second one stays where it was
        assert ran == [1]
        assert await redis.zscore(keys.queue("slow"), second.id) is not None
        assert await redis.hget(keys.attempts, second.id) is None
        # the pool sleeps until the window frees (30 s), not polling
        await assert_invariants(redis, namespace)


async def test_partitions_are_served_in_turn(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    order: list[str] = []
    pool = make_pool(redis_url, namespace, concurrency=1)

    @pool.job("charge")
    async def charge(job: Job) -> None:
        assert job.partition is not None
        order.append(job.partition)

    items: list[tuple[str, dict[str, int], dict[str, str]]] = []
    items += [("charge", {"i": i}, {"partition": "big"}) for i in range(30)]
    items += [("charge", {}, {"partition": f"small{i}"}) for i in range(3)]
    await enqueuer.enqueue_many(items)  # type: ignore[arg-type]
    async with pool:
        await until(lambda: len(order) == 33)
    # each small partition got its turn among the first four jobs, not after the 30 big ones
    assert set(order[:4]) == {"big", "small0", "small1", "small2"}
    await assert_invariants(redis, namespace, drained=True, stopped=True)
    assert not await redis.keys(Keys(namespace).prefix + "p*")


async def test_fifo_and_priority_hold_within_a_partition(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    got: list[int] = []
    pool = make_pool(redis_url, namespace, concurrency=1)

    @pool.job("step", limits=[Concurrency(1, per_partition=True)])
    async def step(job: Job, i: int) -> None:
        got.append(i)

    for i in range(5):
        await enqueuer.enqueue("step", {"i": i}, partition="a")
    await enqueuer.enqueue("step", {"i": 99}, partition="a", priority=5)
    async with pool:
        await until(lambda: len(got) == 6)
    assert got == [99, 0, 1, 2, 3, 4]
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_concurrency_per_partition_across_pools(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    running: Counter[str] = Counter()
    peak: dict[str, int] = defaultdict(int)
    done: list[str] = []
    pools = [make_pool(redis_url, namespace, concurrency=6) for _ in range(3)]
    for pool in pools:

        @pool.job("charge", limits=[Concurrency(2, per_partition=True)])
        async def charge(job: Job) -> None:
            assert job.partition is not None
            running[job.partition] += 1
            peak[job.partition] = max(peak[job.partition], running[job.partition])
            await asyncio.sleep(0.02)
            running[job.partition] -= 1
            done.append(job.partition)

    items = [("charge", {}, {"partition": f"c{i % 4}"}) for i in range(40)]
    await enqueuer.enqueue_many(items)  # type: ignore[arg-type]
    for pool in pools:
        await pool.start()
    try:
        await until(lambda: len(done) == 40, timeout=20)
    finally:
        for pool in pools:
            await pool.stop()
    assert max(peak.values()) == 2  # reached, never passed
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_rate_per_partition_holds_each_partition_alone(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    starts: dict[str, list[float]] = defaultdict(list)
    pool = make_pool(redis_url, namespace)

    @pool.job("call", limits=[Rate(2, per=timedelta(milliseconds=300), per_partition=True)])
    async def call(job: Job) -> None:
        assert job.partition is not None
        starts[job.partition].append(time.monotonic())

    items = [("call", {}, {"partition": p}) for p in ("a", "b", "c") for _ in range(6)]
    await enqueuer.enqueue_many(items)  # type: ignore[arg-type]
    began = time.monotonic()
    async with pool:
        await until(lambda: sum(map(len, starts.values())) == 18, timeout=10)
    for times in starts.values():
        assert max_in_window(times, 0.3 - 0.03) <= 2
    # the partitions did not wait for each other: 6 jobs at 2 per 300 ms each take ~0.6 s
    assert time.monotonic() - began < 3.0
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_unpartitioned_jobs_of_a_partitioned_type_still_run(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    ran: list[str | None] = []
    pool = make_pool(redis_url, namespace, concurrency=2)

    @pool.job("mixed", limits=[Concurrency(1, per_partition=True)])
    async def mixed(job: Job) -> None:
        ran.append(job.partition)

    await enqueuer.enqueue("mixed", {}, partition="p")
    await enqueuer.enqueue("mixed", {})
    await enqueuer.enqueue("mixed", {}, partition="p")
    async with pool:
        await until(lambda: len(ran) == 3)
    assert sorted(ran, key=str) == [None, "p", "p"]
    await assert_invariants(redis, namespace, drained=True, stopped=True)


def test_limits_are_checked_when_registered() -> None:
    pool = WorkerPool.from_url("redis://localhost:1", namespace="x")
    with pytest.raises(ValueError):
        Rate(0)
    with pytest.raises(ValueError):
        Concurrency(0)
    with pytest.raises(RegistrationError):
        pool.register("x", lambda: None, limits=["10/s"])


async def test_partition_names_are_checked(enqueuer: Enqueuer) -> None:
    with pytest.raises(ValueError):
        await enqueuer.enqueue("x", {}, partition="")
    with pytest.raises(ValueError):
        await enqueuer.enqueue("x", {}, partition="a\nb")


async def test_partitioned_jobs_retry_pause_and_unique(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    from errands import Client

    client = Client(redis, namespace=namespace)
    runs: list[tuple[str, int]] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4)

    def soon(fails: int) -> float:
        return 0.05

    @pool.job("charge", limits=[Concurrency(1, per_partition=True)], backoff=soon)
    async def charge(job: Job, n: int) -> None:
        runs.append((f"{job.partition}:{n}", job.attempt))
        if n == 0 and job.attempt == 1:
            raise RuntimeError("once")

    await client.pause("charge")
    await enqueuer.enqueue("charge", {"n": 0}, partition="a")
    assert await enqueuer.enqueue_unique("charge", {"n": 1}, partition="a") is not None
    assert await enqueuer.enqueue_unique("charge", {"n": 1}, partition="a") is None  # held
    async with pool:
        await asyncio.sleep(0.2)
        assert runs == []  # paused: nothing of the partition ran
        await client.unpause("charge")
        await until(lambda: len(runs) == 3, timeout=10)
    # the failed job came back to its partition (retried, attempt 2), one at a time
    assert sorted(runs) == [("a:0", 1), ("a:0", 2), ("a:1", 1)]
    await assert_invariants(redis, namespace, drained=True, stopped=True)


class _Skewed:
    """A host clock off by ``offset`` seconds."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


@pytest.mark.parametrize("offset", [2.0, -2.0])
async def test_host_clocks_skewed_by_2s_change_no_limit(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, offset: float
) -> None:
    starts: list[float] = []
    pools = []
    for skew in (offset, 0.0):  # two pools, one of them on a skewed clock
        pool = WorkerPool.from_url(
            redis_url, namespace=namespace, concurrency=8, clock=_Skewed(skew)
        )

        @pool.job("sms", limits=[Rate(4, per=timedelta(milliseconds=400))])
        async def sms(job: Job) -> None:
            starts.append(time.monotonic())

        pools.append(pool)
    await enqueuer.enqueue_many([("sms", {}) for _ in range(12)])
    for pool in pools:
        await pool.start()
    try:
        await until(lambda: len(starts) == 12, timeout=10)
    finally:
        for pool in pools:
            await pool.stop()
    assert max_in_window(starts, 0.4 - 0.03) <= 4
    assert starts[-1] - starts[0] >= 2 * 0.4 - 0.05
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_busy_partitions_backlog_does_not_hide_a_job_without_partition(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    release = asyncio.Event()
    ran: list[str | None] = []
    pool = make_pool(redis_url, namespace, concurrency=2)

    @pool.job("mixed", limits=[Concurrency(1, per_partition=True)])
    async def mixed(job: Job) -> None:
        ran.append(job.partition)
        if job.partition is not None:
            await release.wait()

    await enqueuer.enqueue("mixed", {}, partition="a")
    async with pool:
        await until(lambda: ran == ["a"])  # partition a is busy until released
        await enqueuer.enqueue_many([("mixed", {}, {"partition": "a"}) for _ in range(300)])  # type: ignore[misc]
        await enqueuer.enqueue("mixed", {})
        # behind 300 entries of the busy partition (each fetch looks at a bounded window, the
        # next goes on from there): the job without a partition runs while a is still busy
        await until(lambda: None in ran, timeout=10)
        assert ran == ["a", None]
        release.set()
        await until(lambda: len(ran) == 302, timeout=20)
    await assert_invariants(redis, namespace, drained=True, stopped=True)
