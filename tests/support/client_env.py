"""Helpers for the Client tests: a pool, an enqueuer and a client on one namespace and one
FakeClock, polling for async outcomes, and a scan for every trace a job id left in Redis."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis

from errands import Client, Enqueuer, FakeClock, WorkerPool
from errands.store.keys import Keys

T = TypeVar("T")


class Env:
    """``env.pool`` (not started), ``env.enqueuer``, ``env.client``, all on ``env.clock``."""

    def __init__(self, redis: Redis, namespace: str, **pool_options: Any) -> None:
        self.redis = redis
        self.namespace = namespace
        self.keys = Keys(namespace)
        self.clock = FakeClock()
        pool_options.setdefault("concurrency", 4)
        self.pool = WorkerPool(redis, namespace=namespace, clock=self.clock, **pool_options)
        self.enqueuer = Enqueuer(redis, namespace=namespace, clock=self.clock)
        self.client = Client(redis, namespace=namespace, clock=self.clock)

    async def advance(self, seconds: float) -> None:
        """Move the clock on and run whatever became due."""
        self.clock.advance(seconds)
        await self.pool.drain(timeout=5)


async def until(check: Callable[[], Awaitable[T] | T], timeout: float = 5.0) -> T:
    """Poll ``check`` (sync or async) until it returns something truthy; return it."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result  # type: ignore[return-value]
            await asyncio.sleep(0.005)


async def traces(redis: Redis, namespace: str, job_id: str) -> list[str]:
    """Every key of the namespace that mentions ``job_id``: in its name, as a hash field, a set
    or sorted-set member (also ``id:...`` members), or inside a string value."""
    found: list[str] = []
    prefix = Keys(namespace).prefix
    async for raw in redis.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*"):
        key = raw.decode()
        if job_id in key[len(prefix) :]:  # the namespace itself may contain the id's letters
            found.append(key)
            continue
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            fields = [f.decode() for f in await redis.hkeys(key)]
            values = await redis.hvals(key)
            if any(job_id in f for f in fields) or any(job_id.encode() in v for v in values):
                found.append(key)
        elif kind == "zset":
            if any(job_id in m.decode() for m in await redis.zrange(key, 0, -1)):
                found.append(key)
        elif kind == "set":
            if any(job_id in m.decode() for m in await redis.smembers(key)):
                found.append(key)
        elif kind == "string":
            value = await redis.get(key)
            if value is not None and job_id.encode() in value:
                found.append(key)
    return found
