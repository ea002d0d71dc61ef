"""Unique jobs: dedupe by (name, args) or by key, lock release on start / deletion / expiry."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import Enqueuer, FakeClock, Job, WorkerPool
from errands.clock import to_ms
from errands.store.keys import Keys
from errands.store.scripts import Scripts

DAY = 24 * 3600.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str, clock: FakeClock) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace, clock=clock) as enq:
        yield enq


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


async def stored_args(redis: Redis, keys: Keys) -> list[dict[str, Any]]:
    return [orjson.loads(v)["a"] for v in (await redis.hgetall(keys.jobs)).values()]


async def test_dedupes_by_name_and_args_regardless_of_key_order(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    first = await enqueuer.enqueue_unique("sync", {"a": 1, "b": {"x": 1, "y": [1, 2]}})
    assert isinstance(first, Job)
    again = await enqueuer.enqueue_unique("sync", {"b": {"y": [1, 2], "x": 1}, "a": 1})
    assert again is None
    assert await redis.hlen(keys.jobs) == 1
    assert await redis.zcard(keys.queue("sync")) == 1
    assert (await redis.hget(keys.unique_of_job, first.id)) is not None


async def test_different_args_or_names_are_not_deduped(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    a = await enqueuer.enqueue_unique("sync", {"user": 1})
    b = await enqueuer.enqueue_unique("sync", {"user": 2})
    c = await enqueuer.enqueue_unique("sync", {"user": [1]})
    d = await enqueuer.enqueue_unique("other", {"user": 1})
    e = await enqueuer.enqueue_unique("sync", {"user": "1"})
    jobs = [a, b, c, d, e]
    assert all(isinstance(j, Job) for j in jobs)
    assert len({j.id for j in jobs if j}) == 5
    assert await redis.hlen(keys.jobs) == 5
    # a plain enqueue is never deduped and does not take the lock
    assert await enqueuer.enqueue("sync", {"user": 1}) is not None
    assert await enqueuer.enqueue_unique("sync", {"user": 1}) is None


async def test_unique_scheduled_job_is_deduped_too(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    job = await enqueuer.enqueue_unique("sync", {"u": 1}, delay=3600)
    assert job is not None
    assert await redis.zscore(keys.scheduled("sync"), job.id) is not None
    assert await enqueuer.enqueue_unique("sync", {"u": 1}) is None
    assert await enqueuer.enqueue_unique("sync", {"u": 1}, delay=10) is None
    assert await redis.hlen(keys.jobs) == 1


async def test_key_dedupes_and_replaces_waiting_args(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    first = await enqueuer.enqueue_unique("sync", {"version": 1}, key="user-7")
    assert first is not None
    assert await enqueuer.enqueue_unique("sync", {"version": 2}, key="user-7") is None
    assert (
        await enqueuer.enqueue_unique("sync", {"version": 3, "extra": True}, key="user-7") is None
    )
    other = await enqueuer.enqueue_unique("sync", {"version": 1}, key="user-8")
    assert other is not None
    # still one job for user-7, holding the newest args, same id
    assert await redis.hlen(keys.jobs) == 2
    env = orjson.loads(await redis.hget(keys.jobs, first.id))
    assert env["a"] == {"version": 3, "extra": True}
    assert env["n"] == "sync"

    seen: list[dict[str, Any]] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("sync")
    async def sync(job: Job) -> None:
        seen.append({"id": job.id, **job.args})

    await pool.drain(timeout=5)
    assert sorted(seen, key=lambda s: s["version"]) == [
        {"id": other.id, "version": 1},
        {"id": first.id, "version": 3, "extra": True},
    ]


async def test_lock_released_when_the_job_starts(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    started = asyncio.Event()
    release = asyncio.Event()
    runs: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("sync")
    async def sync(job: Job) -> None:
        runs.append(job.id)
        started.set()
        await release.wait()

    first = await enqueuer.enqueue_unique("sync", {"u": 1})
    assert first is not None
    async with pool:
        async with asyncio.timeout(5):
            await started.wait()
        assert await redis.hlen(keys.unique) == 0
        assert await redis.hlen(keys.unique_of_job) == 0
        assert await redis.zcard(keys.unique_expiry) == 0
        second = await enqueuer.enqueue_unique("sync", {"u": 1})
        assert second is not None and second.id != first.id
        # and the new one holds the lock again
        assert await enqueuer.enqueue_unique("sync", {"u": 1}) is None
        release.set()
        await until(lambda: len(runs) == 2)
    assert runs == [first.id, second.id]


async def test_key_replace_after_start_enqueues_a_new_job(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    """Once the keyed job started, new args must not be written into the running job."""
    started = asyncio.Event()
    release = asyncio.Event()
    seen: list[int] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("sync")
    async def sync(job: Job, version: int) -> None:
        seen.append(version)
        started.set()
        await release.wait()

    await enqueuer.enqueue_unique("sync", {"version": 1}, key="k")
    async with pool:
        async with asyncio.timeout(5):
            await started.wait()
        assert await enqueuer.enqueue_unique("sync", {"version": 2}, key="k") is not None
        release.set()
        await until(lambda: len(seen) == 2)
    assert seen == [1, 2]


async def test_lock_released_when_the_job_was_deleted(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    first = await enqueuer.enqueue_unique("sync", {"u": 1})
    assert first is not None
    assert await enqueuer.enqueue_unique("sync", {"u": 1}) is None
    await redis.hdel(keys.jobs, first.id)  # what destroying the job does
    second = await enqueuer.enqueue_unique("sync", {"u": 1})
    assert second is not None and second.id != first.id
    assert await redis.hget(keys.unique_of_job, first.id) is None
    assert await redis.hget(keys.unique_of_job, second.id) is not None
    assert await enqueuer.enqueue_unique("sync", {"u": 1}) is None


async def test_keyed_lock_released_when_the_job_was_deleted(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    first = await enqueuer.enqueue_unique("sync", {"v": 1}, key="k")
    assert first is not None
    await redis.hdel(keys.jobs, first.id)
    second = await enqueuer.enqueue_unique("sync", {"v": 2}, key="k")
    assert second is not None and second.id != first.id
    assert await stored_args(redis, keys) == [{"v": 2}]


async def test_lock_expires_after_24h(
    redis: Redis, namespace: str, enqueuer: Enqueuer, clock: FakeClock
) -> None:
    keys = Keys(namespace)
    first = await enqueuer.enqueue_unique("sync", {"u": 1})
    assert first is not None
    assert await redis.zscore(keys.unique_expiry, first.unique) == to_ms(clock.now() + DAY)
    clock.advance(DAY - 1)
    assert await enqueuer.enqueue_unique("sync", {"u": 1}) is None
    clock.advance(1.001)
    second = await enqueuer.enqueue_unique("sync", {"u": 1})
    assert second is not None and second.id != first.id


async def test_custom_ttl(
    redis: Redis, namespace: str, enqueuer: Enqueuer, clock: FakeClock
) -> None:
    first = await enqueuer.enqueue_unique("sync", {"u": 1}, ttl=60)
    assert first is not None
    clock.advance(59)
    assert await enqueuer.enqueue_unique("sync", {"u": 1}, ttl=60) is None
    clock.advance(1.001)
    assert await enqueuer.enqueue_unique("sync", {"u": 1}, ttl=60) is not None


async def test_unique_gc_releases_expired_locks(
    redis: Redis, namespace: str, enqueuer: Enqueuer, clock: FakeClock
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    old = await enqueuer.enqueue_unique("sync", {"u": 1})
    clock.advance(3600)
    young = await enqueuer.enqueue_unique("sync", {"u": 2})
    assert old is not None and young is not None
    assert await scripts.unique_gc(to_ms(clock.now())) == 0
    clock.advance(DAY - 3600 + 0.001)
    assert await scripts.unique_gc(to_ms(clock.now())) == 1
    assert [m.decode() for m in await redis.hkeys(keys.unique_of_job)] == [young.id]
    assert await redis.hlen(keys.unique) == 1
    assert await redis.zcard(keys.unique_expiry) == 1
    # the job itself is untouched: only its lock is gone
    assert await redis.hexists(keys.jobs, old.id)
    clock.advance(3600)
    assert await scripts.unique_gc(to_ms(clock.now())) == 1
    assert await redis.hlen(keys.unique) == 0
    assert await redis.hlen(keys.unique_of_job) == 0
    assert await redis.zcard(keys.unique_expiry) == 0


async def test_requeuer_runs_unique_gc(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, clock: FakeClock
) -> None:
    keys = Keys(namespace)
    job = await enqueuer.enqueue_unique("sync", {"u": 1})
    assert job is not None
    clock.advance(DAY + 1)
    pool = WorkerPool.from_url(redis_url, namespace=namespace, clock=clock)

    @pool.job("other")  # the pool does not run "sync": only the gc can free its lock
    async def other(job: Job) -> None: ...

    async with pool:
        await until(lambda: _hash_empty(redis, keys.unique))
    assert await redis.hlen(keys.unique_of_job) == 0
    assert await redis.hexists(keys.jobs, job.id)


async def _hash_empty(redis: Redis, key: str) -> bool:
    return await redis.hlen(key) == 0  # type: ignore[no-any-return]


async def test_concurrent_enqueue_unique_stores_exactly_one(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    results = await asyncio.gather(
        *(enqueuer.enqueue_unique("sync", {"u": 1, "tag": "same"}) for _ in range(50))
    )
    stored = [r for r in results if r is not None]
    assert len(stored) == 1
    assert await redis.hlen(keys.jobs) == 1
    assert await redis.zcard(keys.queue("sync")) == 1
    assert [m.decode() for m in await redis.zrange(keys.queue("sync"), 0, -1)] == [stored[0].id]


async def test_concurrent_keyed_enqueue_stores_exactly_one(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    results = await asyncio.gather(
        *(enqueuer.enqueue_unique("sync", {"i": i}, key="same") for i in range(50))
    )
    assert len([r for r in results if r is not None]) == 1
    assert await redis.hlen(keys.jobs) == 1
    (args,) = await stored_args(redis, keys)
    assert args["i"] in range(50)


async def test_unique_key_must_be_serializable(enqueuer: Enqueuer) -> None:
    with pytest.raises(TypeError, match="not JSON-serializable"):
        await enqueuer.enqueue_unique("sync", {}, key=object())


async def test_lock_of_a_far_scheduled_job_lasts_until_it_is_due(
    redis: Redis, namespace: str, enqueuer: Enqueuer, clock: FakeClock
) -> None:
    """A job due in 2 days stays unique while it waits; the 24 h net counts from its due time."""
    keys = Keys(namespace)
    due = clock.now() + 2 * DAY
    first = await enqueuer.enqueue_unique("digest", {"user": 1}, delay=2 * DAY)
    assert first is not None
    assert await redis.zscore(keys.unique_expiry, first.unique) == to_ms(due + DAY)
    clock.advance(DAY + 3600)
    assert await enqueuer.enqueue_unique("digest", {"user": 1}, delay=2 * DAY) is None
    assert await Scripts(redis, keys).unique_gc(to_ms(clock.now())) == 0
    assert await redis.hlen(keys.jobs) == 1
