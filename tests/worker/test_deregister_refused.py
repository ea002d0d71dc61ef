"""A pool's stop whose deregister.lua is refused by name (a registry key of another type, here
the quiet requests): the one WARNING names the key, its type and the repair (store/keyrepair.py),
not the refusal alone."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from errands import Job, WorkerPool
from errands.store.keys import Keys


async def test_a_refused_deregister_logs_the_key_its_type_and_repair(
    redis_url: str, namespace: str, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("noop")
    async def noop(job: Job) -> None: ...

    caplog.set_level(logging.WARNING, logger="errands")
    async with pool:
        await redis.set(keys.quiet_requests, "hand edit")
    lines = [r.getMessage() for r in caplog.records if "could not deregister" in r.getMessage()]
    assert len(lines) == 1, lines
    key = keys.quiet_requests
    assert f"WRONGTYPE {key} holds another type: nothing deregistered" in lines[0]
    assert f"({key} is a string; repair: DEL {key} (the pools' remote quiet" in lines[0]
