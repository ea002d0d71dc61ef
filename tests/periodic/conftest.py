"""Fixtures of the schedule tests: a fake clock just after START, a Client on it, and the
invariant check after each test (``pytestmark = pytest.mark.usefixtures("invariants")``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from errands import Client, FakeClock
from tests.support.invariants import assert_invariants

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday


@pytest.fixture
async def invariants(redis: Redis, namespace: str) -> AsyncIterator[None]:
    yield
    await assert_invariants(redis, namespace, context="after the test:")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START + 5)


@pytest.fixture
def client(redis: Redis, namespace: str, clock: FakeClock) -> Client:
    return Client(redis, namespace=namespace, clock=clock)
