"""Fixtures of the fault suite: the oracle Redis, the Redis under test (a shared one for the
scenarios that do not fault Redis itself, a private one per test for those that do), worker
processes killed at teardown, and the table of measured figures in the terminal summary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from errands.store.devserver import RedisServer
from tests.support.procs import Procs

from .common import MEASURED, Fleet, Oracle, _fmt


@pytest.fixture(scope="session")
def oracle_url() -> Iterator[str]:
    """The oracle: a Redis of its own that no test faults."""
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def fault_redis_url() -> Iterator[str]:
    """The Redis under test for scenarios that fault processes, not Redis."""
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def redis_server() -> Iterator[Callable[..., RedisServer]]:
    """Start a private Redis (``redis_server(appendonly="yes")``) this test may kill, stall or
    restart; stopped and removed at teardown."""
    servers: list[RedisServer] = []

    def start(**config: str) -> RedisServer:
        server = RedisServer(**config).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.cleanup()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


@pytest.fixture
async def oracle(oracle_url: str, namespace: str) -> AsyncIterator[Oracle]:
    o = Oracle(oracle_url, namespace)
    yield o
    await o.aclose()


@pytest.fixture
async def main(fault_redis_url: str) -> AsyncIterator[Redis]:
    """A client of the shared Redis under test."""
    client = Redis.from_url(fault_redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def fleet(procs: Procs, fault_redis_url: str, namespace: str, oracle_url: str) -> Fleet:
    """Worker processes on the shared Redis under test (fast failure-detection timings are
    set per test)."""
    return Fleet(procs, fault_redis_url, namespace, oracle_url)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not MEASURED:
        return
    terminalreporter.section("fault suite: measured figures")
    for scenario, figures in MEASURED.items():
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in figures.items())
        terminalreporter.write_line(f"{scenario}: {shown}")
