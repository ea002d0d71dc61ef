"""Graceful stop: running jobs get ``shutdown_grace`` to finish; the rest are cancelled and put
back on their queues without counting a failure. In-process and as a SIGTERM-ed subprocess."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.procs import Procs, eventually, live_pools, records, running_counts

GRACE = 0.5


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


async def assert_requeued_unharmed(redis: Redis, keys: Keys, name: str, job_id: str) -> None:
    """The job is back on its queue exactly as it was enqueued: no failure counted anywhere."""
    assert [m.decode() for m in await redis.zrange(keys.queue(name), 0, -1)] == [job_id]
    envelope = orjson.loads(await redis.hget(keys.jobs, job_id))
    assert "f" not in envelope, envelope
    assert await redis.hget(keys.errors, job_id) is None
    stats = await redis.hgetall(keys.stats)
    assert b"failed" not in stats and b"dead" not in stats, stats
    assert await redis.zcard(keys.retry(name)) == 0
    assert await redis.zcard(keys.dead) == 0
    assert (await running_counts(redis, keys.namespace)).get(name, 0) == 0


async def test_stop_lets_short_job_finish_and_requeues_long_one(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    started: dict[str, asyncio.Event] = {"long": asyncio.Event(), "short": asyncio.Event()}
    finished: list[str] = []
    long_cancelled = asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4, shutdown_grace=GRACE)

    @pool.job("long")
    async def long(job: Job) -> None:
        started["long"].set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            long_cancelled.set()
            raise
        finished.append("long")

    @pool.job("short")
    async def short(job: Job) -> None:
        started["short"].set()
        await asyncio.sleep(0.1)
        finished.append("short")

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        long_job = await enqueuer.enqueue("long")
        await pool.start()
        await asyncio.wait_for(started["long"].wait(), 5)
        short_job = await enqueuer.enqueue("short")
        await asyncio.wait_for(started["short"].wait(), 5)
        assert long_job is not None and short_job is not None

        began = time.monotonic()
        await pool.stop()
        took = time.monotonic() - began

    assert took < GRACE + 2, f"stop took {took:.2f}s"
    assert took >= GRACE * 0.9, f"stop did not wait the grace period ({took:.2f}s)"
    assert finished == ["short"]
    assert long_cancelled.is_set()
    await assert_requeued_unharmed(redis, keys, "long", long_job.id)
    # the short job was acknowledged before stop returned
    assert await redis.hget(keys.jobs, short_job.id) is None
    assert int(await redis.hget(keys.stats, "processed") or 0) == 1
    assert await redis.zcard(keys.in_progress(pool.id)) == 0
    assert await live_pools(redis, namespace) == []


async def test_stop_with_nothing_running_is_quick(redis_url: str, namespace: str) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, shutdown_grace=10)

    @pool.job("noop")
    async def noop(job: Job) -> None:
        pass

    await pool.start()
    began = time.monotonic()
    await pool.stop()
    assert time.monotonic() - began < 1.0


async def _sigterm_during_long_job(
    procs: Procs, redis_url: str, namespace: str, redis: Redis, name: str
) -> None:
    keys = Keys(namespace)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue(name, {"seconds": 30})
        assert job is not None
        proc = procs.worker("timed:pool", redis_url, namespace)

        async def job_started() -> bool:
            return any(r["id"] == job.id for r in await records(redis, namespace, "starts"))

        await eventually(job_started, 15, f"{name} job to start in the worker process")
        began = time.monotonic()
        proc.send(signal.SIGTERM)
        code = await proc.wait(timeout=GRACE + 10)
        took = time.monotonic() - began
        output = proc.output()
        assert code == 0, output
        assert took < GRACE + 2, f"worker exited {took:.2f}s after SIGTERM\n{output}"
        assert "Traceback" not in output, output
        await assert_requeued_unharmed(redis, keys, name, job.id)
        assert await live_pools(redis, namespace) == []

        # a second pool picks the job up and completes it
        done: list[str] = []
        second = WorkerPool.from_url(redis_url, namespace=namespace)

        @second.job(name)
        async def quick(job: Job, seconds: float) -> None:
            done.append(job.id)

        await second.drain(timeout=10)
        assert done == [job.id]
        assert await redis.hget(keys.jobs, job.id) is None
        assert await redis.hget(keys.stats, "processed") == b"1"


async def test_sigterm_worker_process_requeues_long_async_job(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    await _sigterm_during_long_job(procs, redis_url, namespace, redis, "work")


async def test_sigterm_during_long_sync_job_exits_and_the_job_is_recovered(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    """A plain-def handler cannot be interrupted, so its job keeps its slot (it must never run
    twice at once) instead of going back on the queue. The process must still exit soon, not
    wait 30 s for the abandoned thread, and another pool's reaper then recovers the job."""
    keys = Keys(namespace)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("sync_work", {"seconds": 30})
    assert job is not None
    proc = procs.worker("timed:pool", redis_url, namespace)

    async def job_started() -> bool:
        return any(r["id"] == job.id for r in await records(redis, namespace, "starts"))

    await eventually(job_started, 15, "the sync job to start in the worker process")
    [doomed] = await live_pools(redis, namespace)
    began = time.monotonic()
    proc.send(signal.SIGTERM)
    code = await proc.wait(timeout=30)
    took = time.monotonic() - began
    assert code == 0, proc.output()
    # the grace once, then exit at once: the thread is not waited for
    assert took < GRACE + 2, f"worker exited {took:.2f}s after SIGTERM\n{proc.output()}"
    assert await redis.zcard(keys.queue("sync_work")) == 0
    held = await redis.zrange(keys.in_progress(doomed), 0, -1)
    assert held == [f"{job.id}:sync_work".encode()]
    assert "f" not in orjson.loads(await redis.hget(keys.jobs, job.id))
    assert await redis.hget(keys.errors, job.id) is None

    done: list[str] = []
    second = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=1.0
    )

    @second.job("sync_work")
    def quick(job: Job, seconds: float) -> None:
        done.append(job.id)

    async with second:
        async with asyncio.timeout(10):
            while not done:
                await asyncio.sleep(0.02)
    assert done == [job.id]
    assert await live_pools(redis, namespace) == []
    assert await redis.hget(keys.jobs, job.id) is None
    assert await redis.hget(keys.stats, "failed") is None


async def test_sync_handler_runs_in_a_thread_without_blocking_the_loop(
    redis_url: str, namespace: str
) -> None:
    ticks: list[float] = []
    window: dict[str, float] = {}
    threads: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=2)

    @pool.job("blocking")
    def blocking(job: Job) -> None:
        threads.append(threading.current_thread().name)
        window["start"] = time.monotonic()
        time.sleep(0.5)
        window["end"] = time.monotonic()

    @pool.job("ticker")
    async def ticker(job: Job) -> None:
        for _ in range(12):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("blocking", {}), ("ticker", {})])
    loop_thread = threading.current_thread().name
    await pool.drain(timeout=10)

    assert threads and threads[0] != loop_thread
    inside = [t for t in ticks if window["start"] < t < window["end"]]
    assert len(inside) >= 5, f"only {len(inside)} ticks while the sync job slept: loop blocked"


async def test_a_fetch_in_flight_at_stop_gives_its_jobs_back(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12, defect 4: a fetch (of jobs to hold ahead of free slots) still on its way when
    the stop begins returned after the held jobs were given back: its jobs stayed in the
    pool's in-progress set holding their slots, the pool stayed registered, and only a reaper
    got them back, dead_timeout later, counted as recoveries."""
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=0.1)
    gate = asyncio.Event()

    @pool.job("work")
    async def work(job: Job) -> None:
        await gate.wait()

    enqueuer = Enqueuer(redis, namespace=namespace)
    await enqueuer.enqueue_many([("work", {})] * 2)
    await pool.start()
    worker = pool.worker
    assert worker is not None
    async with asyncio.timeout(5):
        while worker.busy < 2:
            await asyncio.sleep(0.01)
    ran, release = asyncio.Event(), asyncio.Event()
    fetch = worker.scripts.fetch

    async def slow_fetch(*args: object, **kwargs: object) -> object:
        found = await fetch(*args, **kwargs)  # type: ignore[arg-type]
        ran.set()
        await release.wait()  # the reply is on its way while the stop begins
        return found

    monkeypatch.setattr(worker.scripts, "fetch", slow_fetch)
    monkeypatch.setattr(type(worker), "lookahead", property(lambda self: 2))
    await enqueuer.enqueue_many([("work", {})] * 2)
    worker._slot_freed.set()  # (it waits for a free slot: look again, with the lookahead)
    async with asyncio.timeout(5):
        await ran.wait()
    assert await redis.zcard(keys.in_progress(pool.id)) == 4
    stopping = asyncio.create_task(pool.stop())
    async with asyncio.timeout(5):
        while not worker._stopping:
            await asyncio.sleep(0.001)
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert await redis.zcard(keys.in_progress(pool.id)) == 0
    assert await redis.zscore(keys.pools, pool.id) is None  # deregistered
    assert await redis.zcard(keys.queue("work")) == 4
    assert await redis.hget(keys.running, "work") == b"0"
    assert await redis.hlen(keys.recoveries) == 0
    gate.set()


async def test_a_refused_activity_flush_neither_fails_the_stop_nor_leaves_the_heartbeat_beating(
    own_url: str, namespace: str, own_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A user whose ACL refuses PEXPIRE and EXPIRE (the activity counters' flush): the refusal
    is logged once and the stop completes: its heartbeat thread ends and the pool leaves the
    registry.
    (When the refusal escaped ``stop()`` half-way, the thread beat on into later tests.)"""
    user, password = f"app-{namespace}", uuid.uuid4().hex
    pattern = "errands:{" + namespace + "}:*"
    rule = ["reset", "on", f">{password}", f"~{pattern}", f"&{pattern}", "+@all"]
    rule += ["-pexpire", "-expire"]
    await own_redis.execute_command("ACL", "SETUSER", user, *rule)
    url = own_url.replace("redis://", f"redis://{user}:{password}@", 1)
    pool = WorkerPool.from_url(url, namespace=namespace, heartbeat_interval=0.2)
    done: list[str] = []

    @pool.job("j")
    async def j(job: Job) -> None:
        done.append(job.id)

    try:
        async with Enqueuer.from_url(url, namespace=namespace) as enqueuer, pool:
            pool_id = pool.id
            await enqueuer.enqueue("j")
            await eventually(lambda: _truthy(done), 20, "the job done")
        beating = [t for t in threading.enumerate() if t.name == f"errands-heartbeat-{pool_id}"]
        assert beating == []
        assert await own_redis.zscore(Keys(namespace).pools, pool_id) is None
        refused = [r for r in caplog.records if "activity counters not written" in r.getMessage()]
        assert len(refused) == 1, refused
    finally:
        await own_redis.execute_command("ACL", "DELUSER", user)


async def _truthy(value: object) -> bool:
    return bool(value)
