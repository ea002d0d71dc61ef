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
