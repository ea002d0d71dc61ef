"""A batch loop's fetch and the orphan sweep (worker/orphans.py ``_reclaim_orphans``): the
sweep must never take for orphans the jobs of a batch fetch whose reply it has not yet seen
(found by review: the sweep read the in-progress set after Redis ran the batch's fetch but
before the batch held its jobs, and requeued them while the batch ran them: twice at once)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.longwork.batch import BatchRunner
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker import orphans
from tests.support.procs import eventually


def now(check: Any) -> Any:
    async def probe() -> bool:
        return bool(check())

    return probe


async def test_the_sweep_leaves_the_jobs_of_a_batch_fetch_in_flight(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving forced: Redis runs the batch's fetch, the sweep's read of the
    in-progress set is answered before the fetch's reply is handled. Nothing is requeued; each
    job runs once."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=0.05)
    release, runs = asyncio.Event(), []

    @pool.batch_job("b", max_size=3, max_wait=0.01)
    async def b(jobs: list[Job]) -> None:
        runs.extend(j.id for j in jobs)
        await release.wait()

    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.reclaim_interval = 3600.0
        fetched_in_redis, read_done = asyncio.Event(), asyncio.Event()
        fetch, read = worker.scripts.fetch, orphans.in_progress_and_handoffs

        async def held_fetch(*args: Any, **kwargs: Any) -> Any:
            reply = await fetch(*args, **kwargs)
            if reply and not fetched_in_redis.is_set():
                fetched_in_redis.set()  # run in Redis; its reply handled after the read
                async with asyncio.timeout(5):
                    await read_done.wait()
            return reply

        async def late_read(*args: Any) -> Any:  # (the in-progress set, the hand-off list)
            if not read_done.is_set():
                async with asyncio.timeout(5):
                    await fetched_in_redis.wait()
                got = await read(*args)
                read_done.set()
                return got
            return await read(*args)

        worker.scripts.fetch = held_fetch  # type: ignore[method-assign]
        monkeypatch.setattr(orphans, "in_progress_and_handoffs", late_read)
        sweep = asyncio.ensure_future(worker._reclaim_orphans())
        enqueuer = Enqueuer(redis, namespace=namespace)
        for i in range(3):
            await enqueuer.enqueue("b", {}, job_id=f"j{i}")
        await asyncio.wait_for(sweep, 10)
        assert read_done.is_set()
        assert worker.reclaimed == 0
        await eventually(now(lambda: len(runs) == 3), 10, "the batch ran")
        assert await redis.zcard(Keys(namespace).queue("b")) == 0
        release.set()
        await eventually(now(lambda: worker.processed == 3), 10, "the batch acked")
        assert sorted(runs) == ["j0", "j1", "j2"]
        await enqueuer.aclose()
    finally:
        release.set()
        await pool.stop()


async def test_a_pending_sweep_waits_for_a_batch_fetch_in_flight(
    redis: Redis, namespace: str
) -> None:
    """A sweep is due (a fetch failed) while a batch fetch is in flight: the fetch loop waits
    for that fetch, then sweeps. It spun before: the sweep returned at once, the sweep still
    due, so a short fetch did not wait for a wake-up either, and the loop fetched again at
    once, over and over, for as long as the batch fetch was on its way."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=3600.0)
    release, in_flight, swept, runs = asyncio.Event(), asyncio.Event(), asyncio.Event(), []
    plain_fetches = 0

    @pool.job("p")
    async def p(job: Job) -> None:
        pass

    @pool.batch_job("b", max_size=3, max_wait=0.01)
    async def b(jobs: list[Job]) -> None:
        runs.extend(j.id for j in jobs)
        async with asyncio.timeout(10):
            await swept.wait()  # held by the batch while the sweep runs (none acked meanwhile)

    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.reclaim_interval = 3600.0
        fetch = worker.scripts.fetch

        async def held_fetch(*args: Any, **kwargs: Any) -> Any:
            nonlocal plain_fetches
            if [name for name, _cap in args[3]] == ["b"]:
                in_flight.set()
                async with asyncio.timeout(10):
                    await release.wait()
            elif args[2] > 0:
                plain_fetches += 1
            return await fetch(*args, **kwargs)

        worker.scripts.fetch = held_fetch  # type: ignore[method-assign]
        enqueuer = Enqueuer(redis, namespace=namespace)
        for i in range(3):
            await enqueuer.enqueue("b", {}, job_id=f"j{i}")
        async with asyncio.timeout(10):
            await in_flight.wait()
        plain_fetches = 0
        worker._reclaim = True  # as after a failed fetch
        worker.wake.set()
        for _ in range(50):  # 50 round trips of our own: a spinning loop fetches in each
            await redis.ping()
        assert plain_fetches <= 1  # one may have been on its way
        release.set()
        await eventually(now(lambda: not worker._reclaim), 10, "the sweep ran")
        assert worker.reclaimed == 0
        swept.set()
        await eventually(now(lambda: worker.processed == 3), 10, "the batch acked")
        assert sorted(runs) == ["j0", "j1", "j2"]
        await enqueuer.aclose()
    finally:
        release.set()
        swept.set()
        await pool.stop()


async def test_an_orphan_is_swept_while_batch_fetches_never_stop(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy pool always has a batch fetch starting or in flight: here one starts while each
    read of the in-progress set is on its way. The sweep requeues the orphan (a job fetched for
    this pool whose reply nobody read) at its first pass, after that fetch ended. (It gave up
    each pass a batch fetch started meanwhile, and began only with none in flight: under such a
    load an orphan stayed in progress, and its slot taken, for as long as the load lasted.)"""
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=3600.0)

    @pool.job("p")
    async def p(job: Job) -> None:
        pass

    @pool.batch_job("b", max_size=3, max_wait=0.01)
    async def b(jobs: list[Job]) -> None:
        pass

    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.reclaim_interval = 3600.0
        fetch, read = worker.scripts.fetch, orphans.in_progress_and_handoffs
        keys = Keys(namespace)

        async def no_plain_fetch(*args: Any, **kwargs: Any) -> Any:
            if [name for name, _cap in args[3]] != ["b"]:
                args = (*args[:2], 0, *args[3:])  # (the orphan stays one)
            return await fetch(*args, **kwargs)

        worker.scripts.fetch = no_plain_fetch  # type: ignore[method-assign]
        await Enqueuer(redis, namespace=namespace).enqueue("p", {}, job_id="orphan")
        scripts = Scripts(redis, keys)  # (its reply read by nobody in the pool)
        assert await scripts.fetch(worker.pool_id, 0, 1, [("p", 0)])
        batch_type = worker.job_types["b"]
        runner = batch_type.handler
        assert isinstance(runner, BatchRunner)
        started: list[asyncio.Future[Any]] = []

        async def busy_read(*args: Any) -> Any:  # (the in-progress set, the hand-off list)
            got = await read(*args)
            # a batch fetch starts meanwhile
            started.append(asyncio.ensure_future(worker._batch_fetch(batch_type, runner)))
            await asyncio.sleep(0)  # (it has started)
            return got

        monkeypatch.setattr(orphans, "in_progress_and_handoffs", busy_read)
        for _ in range(3):
            await asyncio.wait_for(worker._reclaim_orphans(), 10)
        assert worker.reclaimed == 1
        assert await redis.zscore(keys.queue("p"), "orphan") is not None
        assert len(started) == 3
        for done in started:  # (nothing fetched: no batch holds anything)
            fetched, batch = await done
            assert fetched == []
            worker._batches.remove(batch)
    finally:
        await pool.stop()
