"""Test fixtures: the shared server, a private one per test, and a fresh namespace per test.

``redis_url``/``redis``: the shared server, REDIS_URL's when set, else a private server
started for the test session. Each test has a namespace of its own there (keys
``errands:{<namespace>}:...``), and the ``redis`` fixture's client refuses the commands that
change the server beyond keys (tests/support/shared_server.py: FLUSHDB/FLUSHALL, SCRIPT and
FUNCTION FLUSH, CONFIG SET/RESETSTAT, ACL SETUSER/DELUSER, REPLICAOF, SHUTDOWN, DEBUG, CLIENT
KILL/PAUSE/UNBLOCK...). What does reach that server beyond the namespaces: the scripts and
function libraries errands loads (and a worker pool deleting the libraries of other versions of
errands, as any pool of this version does), a few libraries tests load and delete again
(tests/store/test_fnlib.py, test_fn_twin.py, which also writes its namespace in DB 1).
Clients a test makes itself from ``redis_url`` are not guarded.

``own_url``/``own_redis``: a private server for one test, for the tests that flush,
reconfigure, demote, or count the commands of their server, or kill or pause its clients.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from errands.store.devserver import RedisServer
from tests.support.shared_server import guard


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
    """A client of the shared server, which refuses server-wide commands (see above)."""
    client = guard(Redis.from_url(redis_url))
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
