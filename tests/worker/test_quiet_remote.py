"""Quiet from outside the pool's process (admin/pools.py, lua/quiet_request.lua): the request is
recorded in Redis, read by the pool's next heartbeat (lua/heartbeat.lua), which quiets or resumes
it; the request goes when the pool leaves the registry (a stop, a reap)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from errands.errors import PoolNotFoundError
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.invariants import assert_invariants

from .test_wake import until


def make_pool(redis_url: str, namespace: str, started: list[str]) -> WorkerPool:
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, concurrency=2, poll_interval=0.05, heartbeat_interval=0.1
    )

    @pool.job("w")
    async def w(job: Job) -> None:
        started.append(job.id)

    return pool


async def test_quiet_pool_quiets_a_running_pool_at_its_next_beat_and_resume_pool_resumes_it(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys, started = Keys(namespace), []
    pool = make_pool(redis_url, namespace, started)
    client = Client(redis, namespace=namespace)
    async with pool, Enqueuer(redis, namespace=namespace) as enq:
        assert await client.quiet_pool(pool.id) is True
        assert await client.quiet_pool(pool.id) is False  # (asked already)
        async with asyncio.timeout(0.5):  # a few heartbeat intervals
            await until(lambda: pool.quieted)
        [info] = await client.worker_pools()
        assert info.quiet
        assert await client.quiet_pool(pool.id) is False  # (quiet already)
        job = await enq.enqueue("w")
        await asyncio.sleep(0.4)
        assert started == []
        assert await client.resume_pool(pool.id) is True
        async with asyncio.timeout(0.5):
            await until(lambda: started == [job.id])
        assert not pool.quieted
        assert await client.resume_pool(pool.id) is False  # (neither quiet nor asked)
        assert await redis.hexists(keys.quiet_requests, pool.id)
        pool_id = pool.id
    assert not await redis.hexists(keys.quiet_requests, pool_id)  # gone with the stop
    await assert_invariants(redis, namespace, stopped=True)


async def test_local_and_remote_quiet_and_resume_mix(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    """A pool quieted locally is resumed remotely; quieted remotely then resumed locally it stays
    resumed (the request is not new) until the next remote request."""
    started: list[str] = []
    pool = make_pool(redis_url, namespace, started)
    client = Client(redis, namespace=namespace)
    assert pool.heartbeater is None
    async with pool:
        await pool.quiet()
        await until(lambda: client.resume_pool(pool.id))  # (published: quiet_since)
        await until(lambda: not pool.quieted)
        assert await client.quiet_pool(pool.id) is True
        await until(lambda: pool.quieted)
        await pool.resume()
        assert pool.heartbeater is not None
        beats = pool.heartbeater.beats
        await until(lambda: pool.heartbeater is not None and pool.heartbeater.beats > beats + 2)
        assert not pool.quieted
        assert await client.quiet_pool(pool.id) is False  # (a quiet request is pending)
        assert await client.resume_pool(pool.id) is True
        assert await client.quiet_pool(pool.id) is True  # a new request: quiet again
        await until(lambda: pool.quieted)


async def test_an_unknown_pool_is_refused_and_nothing_written(redis: Redis, namespace: str) -> None:
    keys, client = Keys(namespace), Client(redis, namespace=namespace)
    for call in (client.quiet_pool, client.resume_pool):
        with pytest.raises(PoolNotFoundError, match="no running pool 'nope'"):
            await call("nope")
    assert not await redis.exists(keys.quiet_requests)
    with pytest.raises(TypeError):
        await client.quiet_pool(7)  # type: ignore[arg-type]


async def test_the_request_of_a_reaped_pool_goes_with_its_lease(
    redis: Redis, namespace: str
) -> None:
    keys, scripts = Keys(namespace), Scripts(redis, Keys(namespace))
    client = Client(redis, namespace=namespace)
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    await scripts.heartbeat("alive", b"{}", 60_000, mode="register")
    assert await client.quiet_pool("dead") is True
    assert await client.quiet_pool("alive") is True
    await redis.zadd(keys.pools, {"dead": 1})  # its heartbeat stopped long ago
    reaped = await scripts.reap("dead", 60_000, 3, b'"lost"', b'"malformed"', [])
    assert reaped.drained and not reaped.alive
    assert await redis.hkeys(keys.quiet_requests) == [b"alive"]
    assert await scripts.deregister("alive") is True
    assert not await redis.exists(keys.quiet_requests)
    await assert_invariants(redis, namespace)


async def test_a_heartbeat_reads_the_request_and_a_resend_answers_the_same(
    redis: Redis, namespace: str
) -> None:
    """heartbeat.lua with the quiet requests key: {time, request}; re-sent, the same request
    (its writes are the beat's own: a new time, the same info)."""
    keys, scripts = Keys(namespace), Scripts(redis, Keys(namespace))
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    beat = scripts._s["heartbeat"]
    args = ["p1", b"{}", 60_000, "renew"]
    with_requests = [keys.pools, keys.pool_info("p1"), keys.retired, keys.quiet_requests]
    none = await beat(keys=with_requests, args=args)  # (no request: {time, false})
    assert none[1:] in ([], [None], [False])
    await Client(redis, namespace=namespace).quiet_pool("p1")
    first = await beat(keys=with_requests, args=args)
    again = await beat(keys=with_requests, args=args)
    assert first[1] == again[1] and first[1].startswith(b"quiet:")
    assert await redis.hlen(keys.quiet_requests) == 1
    await redis.delete(keys.quiet_requests)
    await redis.set(keys.quiet_requests, "x")
    before = await redis.zscore(keys.pools, "p1")
    with pytest.raises(Exception, match=r"WRONGTYPE .*quietreq.* no beat recorded"):
        await beat(keys=with_requests, args=args)
    assert await redis.zscore(keys.pools, "p1") == before


async def test_a_remote_quiet_still_pending_is_cancelled_by_the_stop(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """A quiet asked through the admin API (``Client.quiet_pool``) runs as a task of the pool;
    one still waiting when the pool stops (its quiet here never returns, as one waiting on a
    Redis that does not answer) was still pending after ``stop()`` returned."""
    waiting = asyncio.Event()

    class SlowQuietPool(WorkerPool):
        async def quiet(self) -> None:
            await super().quiet()
            waiting.set()
            await asyncio.Event().wait()  # (never set)

    pool = SlowQuietPool(url=redis_url, namespace=namespace, heartbeat_interval=0.25)

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    async with pool:
        assert await Client(redis, namespace=namespace).quiet_pool(pool.id) is True
        await asyncio.wait_for(waiting.wait(), 10)  # (handed over at the pool's next beat)
        remote = set(pool._remote_tasks)
        assert remote
    assert all(task.done() for task in remote)
    assert not pool._remote_tasks


async def test_a_remote_request_handed_over_while_the_shutdown_hooks_run_starts_nothing(
    redis_url: str, namespace: str
) -> None:
    """The heartbeat thread hands requests over until the stop ends it (here while an
    on_shutdown hook runs, after the stop's last cancel of the pool's tasks): none may start a
    task that runs on after ``stop()``."""
    pool = WorkerPool(url=redis_url, namespace=namespace, heartbeat_interval=0.25)

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    @pool.on_shutdown
    async def hand_over(context: dict[str, object]) -> None:
        pool._remote_request("quiet:1")  # (what the heartbeat thread hands the loop)

    async with pool:
        pass
    assert not pool._remote_tasks


async def test_a_remote_quiet_still_pending_is_cancelled_by_a_cancelled_stop(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """The same, when ``stop()`` is cancelled while it waits for a plain-def handler (it
    cancels the pool's tasks then, and returns at once)."""
    waiting, release = asyncio.Event(), threading.Event()

    class SlowQuietPool(WorkerPool):
        async def quiet(self) -> None:
            await super().quiet()
            waiting.set()
            await asyncio.Event().wait()  # (never set)

    pool = SlowQuietPool(
        url=redis_url, namespace=namespace, heartbeat_interval=0.25, shutdown_grace=0.1
    )
    began = threading.Event()

    @pool.job("sync_work")
    def sync_work(job: Job) -> None:
        began.set()
        release.wait(30)

    await pool.start()
    try:
        await Enqueuer(redis, namespace=namespace).enqueue("sync_work", {})
        await asyncio.to_thread(began.wait, 10)
        assert await Client(redis, namespace=namespace).quiet_pool(pool.id) is True
        await asyncio.wait_for(waiting.wait(), 10)
        remote = set(pool._remote_tasks)
        assert remote
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await pool.stop()
        await asyncio.sleep(0)  # (a cancelled task ends at its next step)
        assert all(task.done() for task in remote)
    finally:
        release.set()
        await asyncio.sleep(0.1)  # (the cancelled tasks let go of their connections)
        await pool.redis.aclose()  # (a cancelled stop leaves the client to its caller)
