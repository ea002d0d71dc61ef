"""Test fixtures: a private Redis server (never the machine's shared one) and a fresh
namespace per test, so tests never FLUSHALL a server they did not start."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from errands.store.devserver import RedisServer


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``REDIS_URL`` when set, else a private server started for this test session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def own_url() -> Iterator[str]:
    """A private server started for this one test: for a test that flushes, reconfigures,
    demotes or counts the commands of the server it runs on, or kills or pauses its clients."""
    with RedisServer() as server:
        yield server.url


@pytest.fixture
async def own_redis(own_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_url)
    yield client
    await client.aclose()
