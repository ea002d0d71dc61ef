"""The namespace's pool registry keys (`pools`, `retired`) of another type (written by hand, a
bad restore): dead_pools.lua refuses the reaper's pass by name (lib/types.lua) before reading,
and the reaper logs one ERROR naming the key, its type and the repair while it lasts, and one
WARNING once a pass goes through again. (Redis' own WRONGTYPE from the ZRANGEBYSCORE named no
key: the reaper's loop logged "reaper pass failed" with a traceback at every interval, with no
hint how to repair it.)"""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer, Job, WorkerPool
from errands.aio import cancel_and_wait
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker.reaper import Reaper
from tests.support.procs import eventually


async def _true(value: bool) -> bool:
    return value


async def _gone(redis: Redis, keys: Keys) -> bool:
    return await redis.zscore(keys.pools, "dead") is None


@pytest.mark.parametrize("which", ["pools", "retired"])
async def test_dead_pools_names_a_registry_of_another_type(
    redis: Redis, namespace: str, which: str
) -> None:
    keys = Keys(namespace)
    key = getattr(keys, which)
    await redis.set(key, "x")
    with pytest.raises(ResponseError, match=f"WRONGTYPE {key} holds another type"):
        await Scripts(redis, keys).dead_pools(1000)


@pytest.mark.parametrize("which", ["pools", "retired"])
async def test_the_reaper_logs_a_registry_of_another_type_once(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture, which: str
) -> None:
    keys = Keys(namespace)
    key = getattr(keys, which)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    await redis.zadd(keys.pools, {"dead": 1})  # (a dead pool, reaped once repaired)
    await redis.delete(key)
    await redis.hset(key, "f", "1")  # type: ignore[misc]
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 0.02, max_recoveries=3)
    caplog.set_level(logging.INFO, logger="errands")
    task = asyncio.create_task(reaper.run())
    try:
        await asyncio.sleep(0.5)  # (some 25 passes)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        line = errors[0].getMessage()
        assert f"WRONGTYPE {key} holds another type" in line
        assert f"{key} is a hash; repair: DEL {key}" in line and errors[0].exc_info is None
        await redis.delete(key)  # repaired
        if which == "pools":
            await redis.zadd(keys.pools, {"dead": 1})
        await eventually(
            lambda: _true("go through again" in caplog.text), 5, "the line saying it is repaired"
        )
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("reaper" in w and "repaired" in w for w in warned), warned
        await eventually(lambda: _gone(redis, keys), 5, "pool dead reaped")
        assert "reaper pass failed" not in caplog.text
    finally:
        await cancel_and_wait([task])


def _pool(redis: Redis, namespace: str, ran: list[str]) -> WorkerPool:
    pool = WorkerPool(
        redis, namespace=namespace, poll_interval=0.05, heartbeat_interval=0.2, dead_timeout=1.0
    )

    @pool.job("work")
    async def work(job: Job) -> None:
        await asyncio.sleep(float(job.args["for"]))
        ran.append(job.id)

    return pool


async def test_quiet_requests_of_another_type_keep_the_pool_and_its_jobs(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each beat's read of the quiet requests is refused (heartbeat.lua, before writing): one
    ERROR naming the key, its type and the repair, and a WARNING once repaired; the lease is
    renewed meanwhile through the pool's main connection (LeaseKeeper: no quiet requests read),
    so a job running past the dead timeout runs on, under the same pool id. (A WARNING each
    beat before.)"""
    keys = Keys(namespace)
    ran: list[str] = []
    pool = _pool(redis, namespace, ran)
    caplog.set_level(logging.INFO, logger="errands")
    await pool.start()
    try:
        first = pool.id
        await redis.set(keys.quiet_requests, "x")
        async with Enqueuer(redis, namespace=namespace) as enq:
            await enq.enqueue("work", {"for": 2.0}, job_id="long")
        await eventually(lambda: _true(ran == ["long"]), 5, "the job run to its end")
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, errors
        assert f"{keys.quiet_requests} is a string; repair: DEL" in errors[0]
        assert pool.id == first and "lost its lease" not in caplog.text
        await redis.delete(keys.quiet_requests)
        await eventually(lambda: _true("repaired" in caplog.text), 5, "the line once repaired")
    finally:
        await pool.stop()


async def test_a_registry_of_another_type_is_logged_once_per_component(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`pools` of another type refuses the pool's beats and fetches (heartbeat.lua, fetch.lua):
    one ERROR each naming the key, none per beat, and the lease renewal through the main
    connection no longer raises out of its task ("Task exception was never retrieved", at each
    try). No renewal gets through: the pool gives its lease up at the dead timeout (no reaper can
    take it meanwhile: dead_pools.lua refuses too), its running job cancelled, and registers anew
    once repaired; that job waits in its old in-progress set until the sweep (the repair)."""
    keys = Keys(namespace)
    ran: list[str] = []
    pool = _pool(redis, namespace, ran)
    caplog.set_level(logging.INFO)
    await pool.start()
    try:
        first = pool.id
        async with Enqueuer(redis, namespace=namespace) as enq:
            await enq.enqueue("work", {"for": 3.0}, job_id="long")
        held = keys.in_progress(first)
        await eventually(lambda: redis.zcard(held), 5, "the job running")
        await redis.delete(keys.pools)
        await redis.set(keys.pools, "x")
        await asyncio.sleep(2.0)  # (past the dead timeout: its lease given up)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert not [e for e in errors if "never retrieved" in e], errors
        named = [e for e in errors if f"{keys.pools} is a string; repair: DEL" in e]
        assert len(named) == 2 and len(errors) <= 4, errors  # (heartbeat, fetch; the reaper's,
        # and the lease given up, may come too)
        await redis.delete(keys.pools)  # repaired
        await eventually(lambda: _true(pool.id != first and "registered anew" in caplog.text),
                         5, "the pool registered anew")  # fmt: skip
        async with Enqueuer(redis, namespace=namespace) as enq:
            await enq.enqueue("work", {"for": 0}, job_id="after")
        await eventually(lambda: _true(ran == ["after"]), 5, "a job run once repaired")
        # the job it held (cancelled when it gave its lease up) waits in its old in-progress
        # set, in no registry, until the sweep the repair hint names
        assert await redis.zrange(held, 0, -1) == [b"long:work"]
        assert pool.reaper is not None and await pool.reaper.sweep() == 1
        await eventually(lambda: _true(ran == ["after", "long"]), 8, "the held job run again")
    finally:
        await pool.stop()
