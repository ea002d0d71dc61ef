"""Every connection pool errands creates (``connect()``: store/topology.py's LoopPool), whoever
uses it (an Enqueuer, the admin Client, a WorkerPool), in a child forked after it connected
(gunicorn --preload, a worker's handler forking): the child never writes on its parent's
idle pooled connections, whose replies the parent's process may read (found by review: only
the Enqueuer's pool was let go in the child)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from errands import Enqueuer, WorkerPool
from errands.admin.client import Client
from tests.support.forks import in_child, in_process, on_thread, parent_untouched, till, until


@pytest.mark.parametrize("child_by", [in_child, in_process], ids=["os.fork", "multiprocessing"])
def test_the_admin_client_in_a_forked_child(
    redis_url: str, namespace: str, child_by: Callable[[Callable[[], object]], bytes]
) -> None:
    client = Client.from_url(redis_url, namespace=namespace)
    parent_untouched(redis_url, client.redis, client.queue_sizes, client.aclose, child_by)


def test_a_worker_pool_s_client_in_a_forked_child(redis_url: str, namespace: str) -> None:
    pool = WorkerPool(url=redis_url, namespace=namespace)

    async def close() -> None:
        await pool.redis.aclose()

    parent_untouched(redis_url, pool.redis, lambda: pool.redis.get(f"{namespace}:k"), close)


@pytest.mark.parametrize("max_connections", [1, 4])
def test_the_child_s_calls_run_on_connections_of_its_own(
    redis_url: str, namespace: str, max_connections: int
) -> None:
    """Every idle connection of the parent is let go in the child (kept open: the parent's),
    a pool of one connection too; the child's calls open their own."""
    client = Client.from_url(f"{redis_url}?max_connections={max_connections}", namespace=namespace)
    parent_untouched(
        redis_url,
        client.redis,
        lambda: asyncio.gather(*(client.redis.echo(b"c") for _ in range(max_connections * 2))),
        client.aclose,
    )


def _user_of(kind: str, redis: Redis, namespace: str) -> object:
    if kind == "Enqueuer":
        return Enqueuer(redis, namespace=namespace, strict=None)
    if kind == "Client":
        return Client(redis, namespace=namespace)
    return WorkerPool(redis, namespace=namespace)


@pytest.mark.parametrize("kind", ["Client", "WorkerPool"])
def test_a_client_of_your_own_in_a_forked_child(redis_url: str, namespace: str, kind: str) -> None:
    """A client passed in (redis-py's own pool): the child's calls took the parent's idle
    connections (only an Enqueuer's were let go)."""
    redis = Redis.from_url(redis_url)
    _user_of(kind, redis, namespace)
    parent_untouched(redis_url, redis, lambda: redis.echo(b"c"), redis.aclose)


@pytest.mark.parametrize("kind", ["Enqueuer", "Client", "WorkerPool"])
@pytest.mark.parametrize("blocking", [False, True])
def test_a_pool_of_your_own_held_by_another_thread_at_the_fork(
    redis_url: str, namespace: str, kind: str, blocking: bool
) -> None:
    """Another thread's loop holds the lock of a pool passed in when the main thread forks: the
    child got it held with no owner, and its first call waited for ever. Now the child makes
    the lock (and a blocking pool's condition) anew, as for the pools errands creates."""
    pool = BlockingConnectionPool.from_url(redis_url) if blocking else None
    redis = Redis(connection_pool=pool) if pool else Redis.from_url(redis_url)
    _user_of(kind, redis, namespace)
    p: Any = redis.connection_pool
    lock = p._condition if blocking else p._lock
    ready = threading.Event()

    async def a(done: threading.Event) -> None:
        await lock.acquire()
        ready.set()
        await till(done)
        lock.release()

    thread, done = on_thread(a)
    try:
        until(ready.is_set)
        answer = in_child(lambda: asyncio.run(asyncio.wait_for(redis.ping(), 3)))
    finally:
        done.set()
        thread.join(10)
    assert answer == b"ok"
    asyncio.run(redis.aclose())
