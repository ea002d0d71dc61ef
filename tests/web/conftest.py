"""Fixtures shared by the dashboard tests: a ``client`` and an ``enqueuer`` of the test's
namespace, a worker pool of tests/support/dashboard.py (``make_pool``; its slow jobs released on
the way out) and ``web``, an httpx client of the dashboard in-process. A test file whose fixture
differs defines its own, which overrides these."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

import errands
from errands import Client, Enqueuer, WorkerPool
from tests.support.dashboard import http, make_pool


@pytest.fixture
async def client(redis_url: str, namespace: str) -> AsyncIterator[Client]:
    async with Client.from_url(redis_url, namespace=namespace) as c:
        yield c


@pytest.fixture
async def enqueuer(redis_url: str, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer.from_url(redis_url, namespace=namespace) as e:
        yield e


@pytest.fixture
async def pool(redis_url: str, namespace: str) -> AsyncIterator[WorkerPool]:
    p = make_pool(redis_url, namespace)
    async with p:
        yield p
        p.release_slow.set()  # type: ignore[attr-defined]


@pytest.fixture
async def web(client: Client) -> AsyncIterator[httpx.AsyncClient]:
    async with http(errands.dashboard(client)) as h:
        yield h
