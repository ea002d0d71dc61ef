"""The worker's fetch and ack calls on connections held for them (store/hotcalls.py): they do
not go through redis-py's general path, fall back to it when the script is missing, and the
connections go back to the pool when the pool stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.hotcalls import HOT, WorkerScripts


class GeneralCalls:
    """Counts the calls of the fetch and ack scripts made by redis-py's general path."""

    def __init__(self, scripts: WorkerScripts) -> None:
        self.counts = dict.fromkeys(HOT, 0)
        for name in HOT:
            original = scripts._s[name]

            async def counting(*a: Any, _n: str = name, _f: Any = original, **kw: Any) -> Any:
                self.counts[_n] += 1
                return await _f(*a, **kw)

            scripts._s[name] = counting  # type: ignore[assignment]


def work_pool(redis: Redis, namespace: str, concurrency: int) -> tuple[WorkerPool, list[str]]:
    """A pool whose job ``work`` notes the ids it ran."""
    done: list[str] = []
    pool = WorkerPool(redis, namespace=namespace, concurrency=concurrency)

    @pool.job("work")
    async def work(job: Job) -> None:
        done.append(job.id)

    return pool, done


async def run_jobs(pool: WorkerPool, enq: Enqueuer, done: list[str], n: int) -> None:
    first = len(done)
    await enq.enqueue_many([("work", {"i": i}) for i in range(n)])
    async with asyncio.timeout(10):
        while len(done) < first + n or not (pool.worker and pool.worker.acker.idle):
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def hot_pool(
    redis: Redis, namespace: str
) -> AsyncIterator[tuple[WorkerPool, WorkerScripts, Enqueuer, list[str]]]:
    """A running pool of concurrency 8 (its scripts, an enqueuer, the ids it ran)."""
    pool, done = work_pool(redis, namespace, 8)
    async with Enqueuer(redis, namespace=namespace) as enq, pool:
        assert pool.worker is not None
        scripts = pool.worker.scripts
        assert isinstance(scripts, WorkerScripts)
        yield pool, scripts, enq, done


async def test_fetch_and_ack_go_on_held_connections(own_redis: Redis, namespace: str) -> None:
    async with hot_pool(own_redis, namespace) as (pool, scripts, enq, done):
        await run_jobs(pool, enq, done, 5)  # loads the scripts (the general path, on NOSCRIPT)
        general = GeneralCalls(scripts)
        await run_jobs(pool, enq, done, 50)
        assert general.counts == {"fetch": 0, "ack": 0}
        assert await own_redis.hget(pool.keys.stats, "processed") == b"55"
        # a flushed script cache: the held connection's call gets NOSCRIPT, the general path
        # loads the script again and the jobs run and are acknowledged all the same (the
        # functions flushed too: the held connections' FCALLs find them missing,
        # test_hotcalls_fn.py)
        before = scripts.fallbacks
        await own_redis.script_flush()
        await own_redis.function_flush()
        await run_jobs(pool, enq, done, 20)
        assert scripts.fallbacks > before
        assert general.counts["ack"] >= 1
        assert await own_redis.hget(pool.keys.stats, "processed") == b"75"


async def test_calls_whose_text_is_not_ascii_go_on_held_connections_too(
    redis: Redis, namespace: str
) -> None:
    """A job name that is not ASCII: the fetch and ack packers leave the command to pack_call
    of the call's lists (tests/store/test_hotpack.py), sent on the held connections all the
    same."""
    done: list[str] = []
    pool = WorkerPool(redis, namespace=namespace, concurrency=4)

    @pool.job("tâche")
    async def work(job: Job) -> None:
        done.append(job.id)

    async def run(n: int) -> None:
        first = len(done)
        await enq.enqueue_many([("tâche", {"i": i}) for i in range(n)])
        async with asyncio.timeout(10):
            while len(done) < first + n or not (pool.worker and pool.worker.acker.idle):
                await asyncio.sleep(0.005)

    async with Enqueuer(redis, namespace=namespace) as enq, pool:
        assert pool.worker is not None and isinstance(pool.worker.scripts, WorkerScripts)
        await run(3)  # (the scripts loaded)
        general = GeneralCalls(pool.worker.scripts)
        await run(20)
        assert general.counts == {"fetch": 0, "ack": 0}
        assert await redis.hget(pool.keys.stats, "processed") == b"23"


async def test_the_held_connections_go_back_when_the_pool_stops(
    redis: Redis, namespace: str
) -> None:
    pool, done = work_pool(redis, namespace, 4)
    enq = Enqueuer(redis, namespace=namespace)
    idle_before = len(redis.connection_pool._available_connections)  # type: ignore[attr-defined]
    async with pool:
        assert pool.worker is not None
        scripts = pool.worker.scripts
        assert isinstance(scripts, WorkerScripts)
        await run_jobs(pool, enq, done, 10)
        held = {p._conn for p in scripts.pinned.values()}
        assert None not in held and len(held) == 2
    await enq.aclose()
    assert all(p._conn is None for p in scripts.pinned.values())
    in_use = redis.connection_pool._in_use_connections  # type: ignore[attr-defined]
    assert not held & set(in_use)
    assert len(redis.connection_pool._available_connections) >= idle_before  # type: ignore[attr-defined]


async def test_the_held_connections_go_back_when_closing_the_worker_is_cancelled(
    redis: Redis, namespace: str
) -> None:
    """Worker.close cancelled while it flushes the acks (a pool reborn after a lost lease
    during an outage): the held connections still go back to the pool."""
    pool, done = work_pool(redis, namespace, 4)
    enq = Enqueuer(redis, namespace=namespace)
    async with pool:
        worker = pool.worker
        assert worker is not None and isinstance(worker.scripts, WorkerScripts)
        await run_jobs(pool, enq, done, 10)
        worker.stop_fetching()  # (no fetch takes the held connection again)
        await asyncio.gather(pool._fetch_task, return_exceptions=True)
        held = {p._conn for p in worker.scripts.pinned.values()}
        assert None not in held and len(held) == 2
        flushing, close_acker = asyncio.Event(), worker.acker.close

        async def stuck(timeout: float = 10.0) -> None:
            flushing.set()
            await asyncio.Event().wait()  # (Redis unreachable)

        worker.acker.close = stuck  # type: ignore[method-assign]
        closing = asyncio.ensure_future(worker.close())
        await flushing.wait()
        closing.cancel()
        await asyncio.wait([closing])
        worker.acker.close = close_acker  # type: ignore[method-assign]
        assert all(p._conn is None for p in worker.scripts.pinned.values())
        in_use = redis.connection_pool._in_use_connections  # type: ignore[attr-defined]
        assert not held & set(in_use)
    await enq.aclose()
