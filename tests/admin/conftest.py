"""Fixtures of the admin tests: a Client and a non-strict Enqueuer on the test's namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer


@pytest.fixture
async def client(redis: Redis, namespace: str) -> AsyncIterator[Client]:
    async with Client(redis, namespace=namespace) as c:
        yield c


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace, strict=None) as e:
        yield e
