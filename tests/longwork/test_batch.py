"""Batch handlers in one process: a batch starts once max_size jobs wait or the oldest waited
max_wait; jobs stay individual (only the failed ones are retried, each buried on its own); a
handler that raises fails every job of its batch; a stop with the grace over requeues them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import BatchOutcome, Enqueuer, FixedBackoff, Job, WorkerPool
from errands.errors import RegistrationError
from errands.longwork.batch import batch_due
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle, SettleRefused
from errands.store.settlecall import SETTLE_MAX
from tests.support.invariants import assert_invariants
from tests.support.procs import eventually


def make_pool(redis_url: str, namespace: str, **kw: object) -> WorkerPool:
    options: dict[str, object] = {"concurrency": 4, "shutdown_grace": 5.0, **kw}
    return WorkerPool.from_url(redis_url, namespace=namespace, **options)  # type: ignore[arg-type]


def test_when_a_batch_is_due() -> None:
    assert batch_due(0, None, 100, 2.0) == float("inf")
    assert batch_due(100, 0.0, 100, 2.0) == 0.0
    assert batch_due(150, 0.0, 100, 2.0) == 0.0
    assert batch_due(5, 0.5, 100, 2.0) == 1.5
    assert batch_due(5, 3.0, 100, 2.0) == 0.0


async def test_full_batches_while_max_size_jobs_wait(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = make_pool(redis_url, namespace)
    sizes: list[int] = []

    @pool.batch_job("index", max_size=100, max_wait=timedelta(milliseconds=300))
    async def index(jobs: list[Job]) -> BatchOutcome:
        sizes.append(len(jobs))
        return BatchOutcome(results={j.id: j.args["n"] * 2 for j in jobs})

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("index", {"n": i}) for i in range(250)])
        await pool.drain(timeout=20)
        assert await jobs[7].result(timeout=5) == 14
    assert sizes == [100, 100, 50]
    assert int(await redis.hget(Keys(namespace).stats, "processed") or 0) == 250
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_batch_starts_once_the_oldest_job_waited_max_wait(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = make_pool(redis_url, namespace)
    batches: list[tuple[float, int]] = []

    @pool.batch_job("slowly", max_size=100, max_wait=timedelta(milliseconds=400))
    async def slowly(jobs: list[Job]) -> None:
        batches.append((time.time(), len(jobs)))

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer, pool:
        first = await enqueuer.enqueue("slowly")
        await enqueuer.enqueue_many([("slowly", {}), ("slowly", {})])
        assert first is not None
        await eventually(lambda: _true(bool(batches)), 10, "a batch")
        await pool.drain(timeout=10)
    started, size = batches[0]
    assert size == 3
    assert started - first.enqueued_at >= 0.4
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def _true(value: bool) -> bool:
    return value


async def test_only_the_failed_jobs_are_retried_and_buried(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)
    runs: dict[int, int] = {}

    @pool.batch_job("bulk", max_size=10, max_wait=0.05, max_fails=2, backoff=FixedBackoff(0))
    async def bulk(jobs: list[Job]) -> BatchOutcome:
        failed: dict[str, BaseException] = {}
        for job in jobs:
            n = job.args["n"]
            runs[n] = runs.get(n, 0) + 1
            if n == 3 or (n == 5 and job.attempt == 1):
                failed[job.id] = ValueError(f"bad {n}")
        return BatchOutcome(failed=failed)

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("bulk", {"n": i}) for i in range(10)])
        await pool.drain(timeout=20)
    assert runs == {i: 2 if i in (3, 5) else 1 for i in range(10)}
    assert [m.decode() for m in await redis.zrange(keys.dead, 0, -1)] == [jobs[3].id]
    stats = await redis.hgetall(keys.stats)
    assert int(stats[b"processed"]) == 9 and int(stats[b"dead"]) == 1
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_handler_that_raises_fails_every_job_of_its_batch(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)
    calls = 0

    @pool.batch_job("flaky", max_size=5, max_wait=0.05, backoff=FixedBackoff(0))
    async def flaky(jobs: list[Job]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("bulk API down")

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("flaky", {"n": i}) for i in range(5)])
        await pool.drain(timeout=20)
    stats = await redis.hgetall(keys.stats)
    assert int(stats[b"failed"]) == 5 and int(stats[b"processed"]) == 5
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_stop_after_the_grace_requeues_each_job_of_the_batch(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace, shutdown_grace=0.2)
    entered = asyncio.Event()

    @pool.batch_job("stuck", max_size=4, max_wait=0.05)
    async def stuck(jobs: list[Job]) -> None:
        entered.set()
        await asyncio.sleep(30)

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("stuck", {"n": i}) for i in range(4)])
        await pool.start()
        await asyncio.wait_for(entered.wait(), 10)
        await pool.stop()
    waiting = {m.decode() for m in await redis.zrange(keys.queue("stuck"), 0, -1)}
    assert waiting == {j.id for j in jobs}
    stats = await redis.hgetall(keys.stats)
    assert b"failed" not in stats
    await assert_invariants(redis, namespace)


async def test_stop_cancels_a_batch_at_the_grace_end_even_if_it_unwinds_slowly(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    # a batch task is no job task (not in the pool's holding map): the grace's end cancels it
    # at once, as before the settle wait for job tasks whose handler ended; it was taken for
    # one settling, left running 5 s more, and its requeue lost (its jobs left in progress)
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace, shutdown_grace=0.2)
    entered = asyncio.Event()
    cancelled: list[float] = []

    @pool.batch_job("stuck", max_size=4, max_wait=0.05)
    async def stuck(jobs: list[Job]) -> None:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(time.monotonic())
            await asyncio.sleep(0.05)  # a short clean-up before the cancel goes on
            raise

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("stuck", {"n": i}) for i in range(4)])
        await pool.start()
        await asyncio.wait_for(entered.wait(), 10)
        began = time.monotonic()
        await pool.stop()
    assert cancelled and cancelled[0] - began < 2.0
    waiting = {m.decode() for m in await redis.zrange(keys.queue("stuck"), 0, -1)}
    assert waiting == {j.id for j in jobs}
    await assert_invariants(redis, namespace)


def test_registration_checks_the_handler(redis_url: str, namespace: str) -> None:
    pool = make_pool(redis_url, namespace)

    def not_async(jobs: list[Job]) -> None: ...

    with pytest.raises(RegistrationError, match="async def"):
        pool.batch_job("bad")(not_async)  # type: ignore[type-var]

    async def two(jobs: list[Job], extra: int) -> None: ...

    with pytest.raises(RegistrationError, match="one parameter"):
        pool.batch_job("bad")(two)  # type: ignore[type-var]

    async def fine(jobs: list[Job]) -> None: ...

    with pytest.raises(RegistrationError, match="max_size"):
        pool.batch_job("bad", max_size=0)(fine)


async def test_a_batch_holds_no_more_jobs_than_max_concurrency(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = make_pool(redis_url, namespace)
    sizes: list[int] = []

    @pool.batch_job("capped", max_size=100, max_wait=0.05, max_concurrency=5)
    async def capped(jobs: list[Job]) -> None:
        sizes.append(len(jobs))

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("capped", {"n": i}) for i in range(12)])
        await pool.drain(timeout=20)
    assert sum(sizes) == 12 and max(sizes) <= 5, sizes
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_the_failed_jobs_of_a_batch_are_settled_in_one_script_call(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    report = Scripts.settle_report

    async def counted(
        self: Scripts, pool_id: str, settles: Sequence[Settle]
    ) -> list[bool | SettleRefused]:
        calls.append(len(settles))
        return await report(self, pool_id, settles)

    monkeypatch.setattr(Scripts, "settle_report", counted)
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)

    @pool.batch_job("half", max_size=10, max_wait=0.05, max_fails=1)
    async def half(jobs: list[Job]) -> BatchOutcome:
        return BatchOutcome(failed={j.id: ValueError("odd") for j in jobs if j.args["n"] % 2})

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("half", {"n": i}) for i in range(10)])
        await pool.drain(timeout=20)
    assert calls == [5]
    assert await redis.zcard(keys.dead) == 5
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_the_failed_jobs_of_a_large_batch_are_settled_in_calls_of_settle_max(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    report = Scripts.settle_report

    async def counted(
        self: Scripts, pool_id: str, settles: Sequence[Settle]
    ) -> list[bool | SettleRefused]:
        calls.append(len(settles))
        return await report(self, pool_id, settles)

    monkeypatch.setattr(Scripts, "settle_report", counted)
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)

    @pool.batch_job("all", max_size=SETTLE_MAX + 1, max_wait=60, max_fails=1)
    async def all_fail(jobs: list[Job]) -> None:
        raise ValueError("no")

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("all", {"n": i}) for i in range(SETTLE_MAX + 1)])
        await pool.drain(timeout=30)
    assert calls == [SETTLE_MAX, 1]
    assert await redis.zcard(keys.dead) == SETTLE_MAX + 1
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_settle_many_checks_every_mode_before_writing(redis: Redis, namespace: str) -> None:
    """A job of a bad mode is refused before anything of it is written; the other job of the
    call is settled by it (a job refused does not hold the others)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("w", {"n": i}) for i in range(2)])
    fetched = await scripts.fetch("p1", 0, 2, [("w", 0)]) or []
    assert len(fetched) == 2
    good, bad = (
        Settle(f.id, "w", "retry", keys.retry("w"), 0, 1, token=f.token, score_ms=1)
        for f in fetched
    )
    bad.mode = "nonsense"
    with pytest.raises(SettleRefused, match="unknown settle mode"):
        await scripts.settle_many("p1", [good, bad])
    assert await redis.zrange(keys.in_progress("p1"), 0, -1) == [f"{bad.id}:w".encode()]
    bad.mode = "retry"
    # (a stale attempt due at another time: one sending the job to the very place this call
    # sent it, its score included, is taken for this call re-sent, see settle.lua)
    stale = Settle(good.id, "w", "retry", keys.retry("w"), 0, 1, token="0", score_ms=2)
    assert await scripts.settle_many("p1", [good, bad, stale]) == [True, True, False]
    assert await redis.zcard(keys.retry("w")) == 2
    assert await redis.zcard(keys.in_progress("p1")) == 0


async def test_process_middleware_does_not_run_for_batch_jobs(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """As docs/middleware.md and docs/long-jobs.md say: the pool's middleware wraps its plain
    jobs only; a batch handler runs no one current job to wrap."""
    pool = make_pool(redis_url, namespace)
    seen: list[str] = []
    batches: list[int] = []

    @pool.middleware
    async def note(job: Job, next: Any) -> Any:
        seen.append(job.name)
        return await next()

    @pool.batch_job("many", max_size=3, max_wait=0.01)
    async def many(jobs: list[Job]) -> None:
        batches.append(len(jobs))

    @pool.job("one")
    async def one(job: Job) -> None:
        pass

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("many", {}), ("many", {}), ("many", {}), ("one", {})])
        await pool.drain(timeout=10)
    assert batches == [3]
    assert seen == ["one"]
    await assert_invariants(redis, namespace, drained=True, stopped=True)
