"""Redis going away: enqueuing fails loudly naming the server; a running pool rides out its
server being killed and restarted on the same port, without being restarted itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from errands import Enqueuer, Job, RedisUnavailableError, WorkerPool
from errands.store.devserver import RedisServer
from errands.store.keys import Keys


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private server this test may kill: data survives a restart (fsync'd AOF)."""
    with RedisServer(appendonly="yes", appendfsync="always") as srv:
        yield srv


async def test_enqueue_to_a_stopped_server_raises_naming_the_url(
    server: RedisServer, namespace: str
) -> None:
    server.stop()
    async with Enqueuer.from_url(server.url, namespace=namespace) as enqueuer:
        with pytest.raises(RedisUnavailableError, match=f"127.0.0.1:{server.port}") as info:
            await enqueuer.enqueue("anything", {"x": 1})
    assert server.url in str(info.value)

    secret_url = f"redis://:hunter2@127.0.0.1:{server.port}/0"
    async with Enqueuer.from_url(secret_url, namespace=namespace) as enqueuer:
        with pytest.raises(RedisUnavailableError) as info:
            await enqueuer.enqueue_many([("anything", {})])
    assert f"redis://:***@127.0.0.1:{server.port}/0" in str(info.value)
    assert "hunter2" not in str(info.value)


async def test_pool_start_against_a_stopped_server_raises_naming_the_url(
    server: RedisServer, namespace: str
) -> None:
    server.stop()
    pool = WorkerPool.from_url(server.url, namespace=namespace)

    @pool.job("noop")
    async def noop(job: Job) -> None:
        pass

    with pytest.raises(RedisUnavailableError, match=f"cannot reach Redis at {server.url}"):
        await pool.start()


async def test_pool_survives_its_server_being_killed_and_restarted(
    server: RedisServer, namespace: str
) -> None:
    keys = Keys(namespace)
    done: list[str] = []
    release = asyncio.Event()
    outage_job_started = asyncio.Event()
    pool = WorkerPool.from_url(
        server.url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=1.0
    )

    @pool.job("work")
    async def work(job: Job) -> None:
        done.append(job.id)

    @pool.job("spans_outage")
    async def spans_outage(job: Job) -> None:
        outage_job_started.set()
        await release.wait()
        done.append(job.id)

    async def wait_done(ids: set[str], timeout: float) -> float:
        began = time.monotonic()
        async with asyncio.timeout(timeout):
            while not ids <= set(done):
                await asyncio.sleep(0.01)
        return time.monotonic() - began

    enqueuer = Enqueuer.from_url(server.url, namespace=namespace)
    await pool.start()
    try:
        before = {j.id for j in await enqueuer.enqueue_many([("work", {})] * 3)}
        await wait_done(before, 5)
        long_job = await enqueuer.enqueue("spans_outage")
        assert long_job is not None
        await asyncio.wait_for(outage_job_started.wait(), 5)
        async with asyncio.timeout(5):  # the first 3 are acknowledged: only one job in flight
            while await enqueuer.redis.hget(keys.stats, "processed") != b"3":
                await asyncio.sleep(0.01)

        server.kill()
        with pytest.raises(RedisUnavailableError):
            await enqueuer.enqueue("work")
        release.set()  # the running job finishes while Redis is away: its ack must wait
        await asyncio.sleep(1.5)  # the outage: every pool component hits connection errors
        server.start()

        after = {j.id for j in await enqueuer.enqueue_many([("work", {})] * 3)}
        took = await wait_done(after | {long_job.id}, 10)
        print(f"jobs enqueued after the restart ran {took:.2f}s later")
        assert took < 5, f"jobs enqueued after the restart took {took:.2f}s"

        async def acked() -> bool:
            return await enqueuer.redis.hget(keys.stats, "processed") == b"7"

        async with asyncio.timeout(10):
            while not await acked():
                await asyncio.sleep(0.02)
        assert await enqueuer.redis.hget(keys.running, "spans_outage") == b"0"
        assert await enqueuer.redis.hlen(keys.jobs) == 0
        # heartbeats resumed (the heartbeat thread's client may sit out a retry backoff first)
        seconds, micros = await enqueuer.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        async with asyncio.timeout(5):
            while (await enqueuer.redis.zscore(keys.pools, pool.id) or 0) < now_ms:
                await asyncio.sleep(0.02)
    finally:
        await pool.stop()
        await enqueuer.aclose()
    redis = Redis.from_url(server.url)
    assert await redis.zcard(keys.pools) == 0
    await redis.aclose()


async def test_jobs_of_a_fetch_whose_reply_was_lost_still_run(
    redis_url: str, namespace: str
) -> None:
    """The connection drops after Redis ran a fetch but before its reply arrived (the server
    was killed at that instant, or a network blip): the fetched jobs sit in this live pool's
    in-progress set, where no reaper looks while the pool beats. The pool must run them, and
    not leak their concurrency slots."""
    keys = Keys(namespace)
    done: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, poll_interval=0.2)

    @pool.job("work", max_concurrency=1)
    async def work(job: Job) -> None:
        done.append(job.id)

    lost: list[str] = []
    async with pool:
        assert pool.worker is not None
        scripts = pool.worker.scripts
        real_fetch = scripts.fetch

        async def reply_lost_once(*args: Any, **kwargs: Any) -> Any:
            fetched = await real_fetch(*args, **kwargs)
            if fetched and not lost:
                lost.extend(item.id for item in fetched)
                raise RedisConnectionError("Connection closed by server. (simulated)")
            return fetched

        scripts.fetch = reply_lost_once  # type: ignore[method-assign]
        async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
            ids = {j.id for j in await enqueuer.enqueue_many([("work", {})] * 3)}
        try:
            async with asyncio.timeout(10):
                while set(done) != ids:
                    await asyncio.sleep(0.01)
        finally:
            scripts.fetch = real_fetch  # type: ignore[method-assign]
        assert lost and set(lost) <= ids
        assert sorted(done) == sorted(ids)  # each ran exactly once
        async with asyncio.timeout(5):
            while await pool.redis.hget(keys.stats, "processed") != b"3":
                await asyncio.sleep(0.01)
        assert await pool.redis.hget(keys.running, "work") == b"0"
        assert await pool.redis.zcard(keys.in_progress(pool.id)) == 0
