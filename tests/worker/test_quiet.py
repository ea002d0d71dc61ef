"""Quiet (worker/quieting.py, worker/controls.py): a quiet pool finishes and acknowledges what it
runs, takes no new job (no fetch, no hand-off, its jobs held ahead given back), keeps
heartbeating, and takes jobs again once resumed; quiet twice is quiet once."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Scripts

from .test_wake import QUIET, all_idle, handed, make_pools, running, until


async def marks(redis: Redis, keys: Keys, pool_id: str) -> list[object]:
    """The pool's idle marks and hand-off arming key, whichever exist."""
    found: list[object] = []
    if await redis.sismember(keys.idle, pool_id):
        found.append("idle set")
    if await redis.zscore(keys.idle_for("w"), pool_id) is not None:
        found.append("idle of w")
    if await redis.exists(keys.handoff_armed(pool_id)):
        found.append("armed")
    return found


async def test_a_quiet_pool_finishes_its_jobs_takes_none_and_resumes(
    redis: Redis, redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    gate = asyncio.Event()
    started: list[str] = []
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, concurrency=2, poll_interval=0.05, heartbeat_interval=0.1
    )

    @pool.job("w")
    async def w(job: Job, block: bool = False) -> None:
        started.append(job.id)
        if block:
            await gate.wait()

    caplog.set_level(logging.INFO, logger="errands.pool")
    async with pool, Enqueuer(redis, namespace=namespace) as enq:
        assert not pool.quieted and pool.quiet_since is None
        slow = await enq.enqueue("w", {"block": True})
        await until(lambda: started == [slow.id])
        await pool.quiet()
        await pool.quiet()  # (quiet twice is quiet once)
        assert pool.quieted and pool.quiet_since is not None
        assert await marks(redis, keys, pool.id) == []
        [info] = await Client(redis, namespace=namespace).worker_pools()
        assert info.quiet and info.quiet_since == pytest.approx(pool.quiet_since)
        later = await enq.enqueue("w")
        assert pool.heartbeater is not None
        beats = pool.heartbeater.beats
        await asyncio.sleep(0.5)  # ten polls: a pool taking jobs had run it by now
        assert started == [slow.id]
        assert await redis.zscore(keys.queue("w"), later.id) is not None
        assert pool.heartbeater.beats > beats  # heartbeating on
        gate.set()  # the running job finishes and is acknowledged
        await until(lambda: pool.worker is not None and pool.worker.settled)
        assert await redis.hget(keys.jobs, slow.id) is None
        assert await redis.hget(keys.stats, "processed") == b"1"
        assert started == [slow.id]
        await pool.resume()
        await pool.resume()
        assert not pool.quieted
        await until(lambda: started == [slow.id, later.id])
        [info] = await Client(redis, namespace=namespace).worker_pools()
        assert not info.quiet
        # quiet again, then stopped as usual
        await pool.quiet()
        pool_id = pool.id
    assert await redis.zscore(keys.pools, pool_id) is None  # deregistered
    assert await redis.exists(keys.in_progress(pool_id), keys.handoff(pool_id)) == 0
    lines = [r.getMessage() for r in caplog.records if "is quiet" in r.getMessage()]
    assert len(lines) == 2, lines  # once per quiet, not per call
    assert not pool.quieted  # (stopped)


async def test_a_quiet_pool_gives_back_its_jobs_held_ahead_none_lost_none_run_twice(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    gate = asyncio.Event()
    runs: list[str] = []
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=0.1)

    @pool.job("work")
    async def work(job: Job, block: bool) -> None:
        if block:
            runs.append(job.id)
            await gate.wait()

    enqueuer = Enqueuer(redis, namespace=namespace)
    await enqueuer.enqueue_many([("work", {"block": False}) for _ in range(6)])
    async with pool:
        await pool.drain(timeout=5)  # short runs: the lookahead switches on
        worker = pool.worker
        assert worker is not None and worker.lookahead == 2
        jobs = await enqueuer.enqueue_many([("work", {"block": True}) for _ in range(10)])

        async def held_four() -> bool:
            return len(worker.buffer) == 2 and await redis.zcard(keys.in_progress(pool.id)) == 4

        await until(held_four)
        await pool.quiet()
        assert not worker.buffer  # given back at once

        async def two_held() -> bool:
            return await redis.zcard(keys.in_progress(pool.id)) == 2

        await until(two_held)
        assert await redis.zcard(keys.queue("work")) == 8
        gate.set()  # the two running finish and are acknowledged; nothing else starts
        await until(lambda: worker.settled)
        await asyncio.sleep(0.2)
        assert len(runs) == 2
        assert await redis.zcard(keys.queue("work")) == 8
        assert await redis.zcard(keys.in_progress(pool.id)) == 0
        assert await redis.hget(keys.running, "work") == b"0"
    assert await redis.hget(keys.stats, "failed") is None
    again = WorkerPool(redis, namespace=namespace, concurrency=4)

    @again.job("work")
    async def work2(job: Job, block: bool) -> None:
        runs.append(job.id)

    await again.drain(timeout=5)
    assert sorted(runs) == sorted(job.id for job in jobs)  # each once
    assert await redis.hget(keys.stats, "processed") == b"16"


async def test_no_hand_off_to_a_quiet_pool_and_one_in_its_list_goes_back(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    pools, started = make_pools(redis_url, namespace, 1, concurrency=2, poll_interval=QUIET)
    pool = pools[0]
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        await all_idle(redis, keys, pools)
        worker = pool.worker
        assert worker is not None
        async with worker.mailbox.quiet():  # no BLPOP in flight: the job waits in the list
            first = await enq.enqueue("w")
            assert await redis.llen(keys.handoff(pool.id)) == 1
            await pool.quiet()
            assert await marks(redis, keys, pool.id) == []
        await until(lambda: worker.mailbox.received == 1)  # read, and given back

        async def requeued() -> bool:
            return await redis.zscore(keys.queue("w"), first.id) is not None

        await until(requeued)
        assert await redis.hget(keys.attempts, first.id) is None
        second = await enq.enqueue("w")  # not handed (no mark), nor taken
        await asyncio.sleep(0.3)
        assert handed(pool) == 1 and started == []
        assert await redis.llen(keys.handoff(pool.id)) == 0
        assert await redis.zcard(keys.queue("w")) == 2
        await pool.resume()  # fetches at once (not after QUIET seconds)
        await until(lambda: len(started) == 2, timeout=5)
        await until(lambda: worker.settled)
        assert await redis.zcard(keys.queue("w")) == 0
        assert await redis.hget(keys.jobs, second.id) is None  # acknowledged


async def test_a_quiet_pool_fetches_no_batch_and_its_running_batch_finishes(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    gate = asyncio.Event()
    batches: list[list[str]] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=2, poll_interval=0.05)

    @pool.batch_job("index", max_size=3, max_wait=timedelta(milliseconds=50))
    async def index(jobs: list[Job]) -> None:
        batches.append([job.id for job in jobs])
        await gate.wait()

    async with pool, Enqueuer(redis, namespace=namespace) as enq:
        first = await enq.enqueue_many([("index", {})] * 3)
        await until(lambda: len(batches) == 1)
        await pool.quiet()
        later = await enq.enqueue_many([("index", {})] * 3)
        gate.set()  # the running batch finishes and is acknowledged
        await until(lambda: pool.worker is not None and pool.worker.settled)
        await asyncio.sleep(0.3)  # six max_waits: a pool taking jobs had run a batch by now
        assert batches == [[job.id for job in first]]
        assert await redis.zcard(keys.queue("index")) == 3
        assert await redis.hget(keys.stats, "processed") == b"3"
        await pool.resume()
        await until(lambda: len(batches) == 2)
        assert sorted(batches[1]) == sorted(job.id for job in later)


async def test_a_quiet_pool_that_loses_its_lease_carries_on_quiet_under_its_new_id(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    pools, started = make_pools(
        redis_url, namespace, 1, concurrency=2, poll_interval=0.05, heartbeat_interval=0.1,
        dead_timeout=5.0,
    )  # fmt: skip
    pool = pools[0]
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        await pool.quiet()
        since, first, old = pool.quiet_since, pool.id, pool.worker
        # a reaper found it dead (as after SIGSTOP): its lease is taken, noticed at a heartbeat
        await Scripts(redis, keys).reap(first, -(10**9), 3, b"{}", b"{}", [])
        await until(lambda: pool.worker is not old and pool.worker is not None)
        assert pool.quieted and pool.quiet_since == since
        await enq.enqueue("w")
        await asyncio.sleep(0.3)
        assert started == [] and await marks(redis, keys, pool.id) == []

        async def published() -> bool:
            infos = await Client(redis, namespace=namespace).worker_pools()
            return [(p.id, p.quiet_since) for p in infos] == [(pool.id, since)]

        await until(published)
        await pool.resume()
        await until(lambda: started == [pool.id])
