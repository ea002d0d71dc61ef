"""Every connection pool errands creates (``connect()``: store/topology.py's LoopPool), whoever
uses it (an Enqueuer, the admin Client, a WorkerPool), in a child forked after it connected
(gunicorn --preload, a worker's handler forking): the child never writes on its parent's
idle pooled connections, whose replies the parent's process may read (found by review: only
the Enqueuer's pool was let go in the child)."""

from __future__ import annotations

import asyncio

import pytest

from errands import WorkerPool
from errands.admin.client import Client
from tests.support.forks import parent_untouched


def test_the_admin_client_in_a_forked_child(redis_url: str, namespace: str) -> None:
    client = Client.from_url(redis_url, namespace=namespace)
    parent_untouched(redis_url, client.redis, client.queue_sizes, client.aclose)


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
