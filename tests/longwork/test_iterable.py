"""Iterable jobs in one process: resume from the last checkpoint after an error, stop at an item
boundary and go back to the head of the queue, a zombie's checkpoint refused, a cancel request
seen at a checkpoint, the checkpoint gone with the job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import orjson
import pytest
from redis.asyncio import Redis

from errands import BatchOutcome, Client, Enqueuer, FixedBackoff, Job, WorkerPool
from errands.errors import RegistrationError
from errands.longwork.store import LongworkScripts
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.invariants import assert_invariants
from tests.support.procs import eventually


def make_pool(redis_url: str, namespace: str, **kw: object) -> WorkerPool:
    options: dict[str, object] = {"concurrency": 4, "shutdown_grace": 5.0, **kw}
    return WorkerPool.from_url(redis_url, namespace=namespace, **options)  # type: ignore[arg-type]


async def test_runs_to_the_end_and_forgets_its_checkpoint(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = make_pool(redis_url, namespace)
    seen: list[int] = []

    @pool.iterable_job("count", checkpoint_every=0)
    async def count(job: Job, cursor: int | None) -> AsyncIterator[int]:
        for i in range((cursor or 0) + 1, job.args["n"] + 1):
            seen.append(i)
            yield i

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer, pool:
        job = await enqueuer.enqueue("count", {"n": 50})
        assert job is not None
        assert await job.result(timeout=10) == {"done": 50, "cursor": 50}
        await pool.drain(timeout=10)
    assert seen == list(range(1, 51))
    assert await redis.exists(Keys(namespace).checkpoints) == 0
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_an_error_keeps_the_cursor_and_the_retry_resumes_after_it(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = make_pool(redis_url, namespace)
    seen: list[int] = []
    failed = False

    @pool.iterable_job("flaky", checkpoint_every=0, backoff=FixedBackoff(0), max_fails=3)
    async def flaky(job: Job, cursor: int | None) -> AsyncIterator[int]:
        nonlocal failed
        for i in range((cursor or 0) + 1, 21):
            if i == 8 and not failed:
                failed = True
                raise RuntimeError("boom")
            seen.append(i)
            yield i

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer, pool:
        job = await enqueuer.enqueue("flaky")
        assert job is not None
        assert await job.result(timeout=15) == {"done": 20, "cursor": 20}
        await pool.drain(timeout=10)
    assert seen == list(range(1, 21)), "no item done twice, none skipped"
    assert int(await redis.hget(Keys(namespace).stats, "failed") or 0) == 1
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_checkpoints_are_written_at_most_every_interval(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """With a long interval only the stop writes one: the retry after an error starts from the
    beginning (the documented cost of a long interval)."""
    pool = make_pool(redis_url, namespace)
    cursors: list[int | None] = []

    @pool.iterable_job("sparse", checkpoint_every=timedelta(hours=1), backoff=FixedBackoff(0))
    async def sparse(job: Job, cursor: int | None) -> AsyncIterator[int]:
        cursors.append(cursor)
        for i in range((cursor or 0) + 1, 6):
            yield i
        if len(cursors) == 1:
            raise RuntimeError("after the last item")

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer, pool:
        job = await enqueuer.enqueue("sparse")
        assert job is not None
        assert await job.result(timeout=15) == {"done": 5, "cursor": 5}
    # the error wrote the items done so far: the retry had nothing left to do
    assert cursors == [None, 5]
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_stop_checkpoints_after_the_current_item_and_requeues_at_the_head(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    first = make_pool(redis_url, namespace, concurrency=1)
    seen: list[tuple[str, int]] = []
    in_item = asyncio.Event()
    release = asyncio.Event()

    def register(pool: WorkerPool, tag: str) -> None:
        @pool.iterable_job("walk", checkpoint_every=timedelta(hours=1))
        async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
            for i in range((cursor or 0) + 1, 11):
                if i == 4 and tag == "first":
                    in_item.set()
                    await release.wait()  # the stop comes in the middle of item 4
                seen.append((tag, i))
                yield i

        @pool.job("other")
        async def other(job: Job) -> None:
            seen.append((tag, -1))

    register(first, "first")
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("walk")
        assert job is not None
        await first.start()
        await asyncio.wait_for(in_item.wait(), 10)
        # wait behind it: the stopped job must go back ahead of these
        await enqueuer.enqueue("walk", {}, job_id="behind-1")
        stopping = asyncio.ensure_future(first.stop())
        await eventually(lambda: _true(first.worker is None or first.worker.stopping), 5, "stop")
        release.set()
        await stopping
        assert [m.decode() for m in await redis.zrange(keys.queue("walk"), 0, -1)] == [
            job.id,
            "behind-1",
        ]
        envelope = orjson.loads(await redis.hget(keys.jobs, job.id))
        assert "f" not in envelope
        saved = orjson.loads(await redis.hget(keys.checkpoints, job.id))
        assert saved["cursor"] == 4 and saved["done"] == 4
        assert seen == [("first", i) for i in range(1, 5)]
        await assert_invariants(redis, namespace)

        second = make_pool(redis_url, namespace, concurrency=1)
        register(second, "second")
        async with second:
            assert await job.result(timeout=10) == {"done": 10, "cursor": 10}
            await second.drain(timeout=10)
    assert [i for tag, i in seen if tag == "second"][:6] == list(range(5, 11)), seen
    assert int(await redis.hget(keys.stats, "failed") or 0) == 0
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def _true(value: bool) -> bool:
    return value


async def test_a_zombie_checkpoint_is_refused(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    lw = LongworkScripts(scripts)
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("walk")
    assert job is not None
    [fetched] = await scripts.fetch("p1", 0, 1, [("walk", 0)]) or []
    attempt = f"p1:{fetched.token}"
    assert await lw.checkpoint(job.id, "walk", attempt, b'{"cursor":1}') == ""
    # the same pool's earlier attempt, another pool: refused, nothing written
    assert await lw.checkpoint(job.id, "walk", "p1:0", b'{"cursor":9}') is None
    assert await lw.checkpoint(job.id, "walk", f"p2:{fetched.token}", b'{"cursor":9}') is None
    assert await redis.hget(keys.checkpoints, job.id) == b'{"cursor":1}'
    await redis.hset(keys.cancel_requests, job.id, "destroy")
    assert await lw.checkpoint(job.id, "walk", attempt, b'{"cursor":2}') == "destroy"


async def test_a_cancel_request_is_seen_at_the_next_checkpoint(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """The request is stored without its pub/sub message (as when the pool missed it)."""
    keys = Keys(namespace)
    pool = make_pool(redis_url, namespace)
    seen: list[int] = []
    go_on = asyncio.Event()

    @pool.iterable_job("long", checkpoint_every=0)
    async def long(job: Job, cursor: int | None) -> AsyncIterator[int]:
        i = cursor or 0
        while True:
            i += 1
            seen.append(i)
            if i == 3:
                await go_on.wait()
            yield i

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer, pool:
        job = await enqueuer.enqueue("long")
        assert job is not None
        await eventually(lambda: _true(len(seen) >= 3), 10, "item 3")
        await redis.hset(keys.cancel_requests, job.id, "cancel")
        go_on.set()
        await eventually(lambda: redis.zscore(keys.cancelled, job.id), 10, "cancelled")
    assert seen == [1, 2, 3]
    await assert_invariants(redis, namespace)


def test_registration_checks_the_handler(redis_url: str, namespace: str) -> None:
    pool = make_pool(redis_url, namespace)

    async def not_a_generator(job: Job, cursor: int | None) -> None: ...

    with pytest.raises(RegistrationError, match="async generator"):
        pool.iterable_job("bad")(not_a_generator)  # type: ignore[type-var]

    async def one_param(job: Job) -> AsyncIterator[int]:
        yield 1

    with pytest.raises(RegistrationError, match=r"\(job, cursor\)"):
        pool.iterable_job("bad")(one_param)  # type: ignore[arg-type]


async def test_options_as_for_job_take_a_timedelta(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """``result_ttl`` as ``@pool.job`` takes it (a timedelta: it raised TypeError for an
    iterable job, a batch handler and ``register``); the result record's TTL is the one asked."""
    pool = make_pool(redis_url, namespace)

    @pool.iterable_job("count", checkpoint_every=0, result_ttl=timedelta(seconds=500))
    async def count(job: Job, cursor: int | None) -> AsyncIterator[int]:
        yield 1

    @pool.batch_job("many", max_wait=0.01, result_ttl=timedelta(seconds=600))
    async def many(jobs: list[Job]) -> BatchOutcome:
        return BatchOutcome()

    async def plain(job: Job) -> None: ...

    pool.register("plain", plain, result_ttl=timedelta(seconds=700), timeout=timedelta(seconds=9))
    assert pool.job_types["plain"].timeout == 9.0
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer, pool:
        for name, ttl in (("count", 500), ("many", 600), ("plain", 700)):
            job = await enqueuer.enqueue(name, {})
            assert job is not None
            await job.result(timeout=10)
            assert ttl - 60 < await redis.ttl(Keys(namespace).done(job.id)) <= ttl, name


async def test_a_stop_at_a_checkpoint_is_no_failure_for_the_metrics(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from errands.contrib.prometheus import PrometheusMiddleware

    registry = prometheus_client.CollectorRegistry()
    pool = make_pool(redis_url, namespace)
    pool.middleware(PrometheusMiddleware(registry))
    started = asyncio.Event()

    @pool.iterable_job("tick", checkpoint_every=timedelta(hours=1))
    async def tick(job: Job, cursor: int | None) -> AsyncIterator[int]:
        i = cursor or 0
        while True:
            i += 1
            started.set()
            await asyncio.sleep(0.01)
            yield i

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("tick")
        assert job is not None
        await pool.start()
        await asyncio.wait_for(started.wait(), 10)
        await pool.stop()
    labels = {"job_name": "tick"}
    assert registry.get_sample_value("errands_jobs_started_total", labels) == 1
    assert registry.get_sample_value("errands_jobs_failed_total", labels) in (None, 0)
    assert registry.get_sample_value("errands_jobs_succeeded_total", labels) in (None, 0)
    assert await redis.zscore(Keys(namespace).queue("tick"), job.id) is not None
    await assert_invariants(redis, namespace)


async def test_a_dead_job_retried_resumes_from_its_checkpoint(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = make_pool(redis_url, namespace)
    starts: list[int | None] = []

    @pool.iterable_job("once", checkpoint_every=0, max_fails=1)
    async def once(job: Job, cursor: int | None) -> AsyncIterator[int]:
        starts.append(cursor)
        for i in range((cursor or 0) + 1, 11):
            if i == 6 and len(starts) == 1:
                raise RuntimeError("down")
            yield i

    async with (
        Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
    ):
        job = await enqueuer.enqueue("once")
        assert job is not None
        await pool.drain(timeout=10)
        info = await client.job(job.id)
        assert info is not None and info.status == "dead"
        assert info.progress is not None and info.progress["cursor"] == 5
        assert await client.retry_dead_job(job.id)
        await pool.drain(timeout=10)
        assert await job.result(timeout=5) == {"done": 10, "cursor": 10}
    assert starts == [None, 5]
    await assert_invariants(redis, namespace, drained=True, stopped=True)
