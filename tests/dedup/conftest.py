"""Fixtures of the dedup tests: an Enqueuer and a Client on the test namespace."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace) as enq:
        yield enq


@pytest.fixture
async def client(redis: Redis, namespace: str) -> AsyncIterator[Client]:
    async with Client(redis, namespace=namespace) as c:
        yield c


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0) -> None:
    """Poll ``check`` (sync or async) until it is true; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.005)
