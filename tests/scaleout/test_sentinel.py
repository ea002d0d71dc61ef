"""Sentinel: a ``redis+sentinel://`` URL and a client from ``Sentinel.master_for`` both work,
for pools (and their heartbeat thread), enqueuers and clients. The failover itself is in
test_failover.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.sentinel
from redis.asyncio.sentinel import Sentinel

from errands import Client, Enqueuer, Job, WorkerPool
from errands.store.connection import describe
from tests.support.forks import in_child, last_commands, parent_untouched
from tests.support.infra import SentinelInfra

from .conftest import unique_namespace


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelInfra]:
    root: Path = tmp_path_factory.mktemp("sentinel")
    with SentinelInfra(root=root) as infra:
        yield infra


async def run_one_job(url_or_client: Any) -> None:
    namespace = unique_namespace()
    if isinstance(url_or_client, str):
        pool = WorkerPool.from_url(url_or_client, namespace=namespace)
        enqueuer = Enqueuer.from_url(url_or_client, namespace=namespace, wait_replicas=1)
        client = Client.from_url(url_or_client, namespace=namespace)
    else:
        pool = WorkerPool(url_or_client, namespace=namespace)
        enqueuer = Enqueuer(url_or_client, namespace=namespace, wait_replicas=1)
        client = Client(url_or_client, namespace=namespace)

    @pool.job("double")
    async def double(job: Job, n: int) -> int:
        return 2 * n

    async with enqueuer, client, pool:
        job = await enqueuer.enqueue("double", {"n": 21})  # confirmed by the replica
        assert job is not None
        assert await client.result(job.id, timeout=10) == 42
        assert pool.heartbeater is not None
        twin = pool.heartbeater._client
        assert isinstance(twin.connection_pool, redis.sentinel.SentinelConnectionPool)
        assert pool.heartbeater.beat()
        assert describe(pool.redis).startswith("redis+sentinel://127.0.0.1:")


async def test_sentinel_url(sentinel: SentinelInfra) -> None:
    await run_one_job(sentinel.url)


async def test_a_passed_sentinel_managed_client(sentinel: SentinelInfra) -> None:
    manager: Any = Sentinel([("127.0.0.1", s.port) for s in sentinel.sentinels])
    sentinels = list(manager.sentinels)  # redis-py may reorder (and corrupt) its own list
    master = manager.master_for(sentinel.service)
    try:
        await run_one_job(master)
    finally:
        await master.aclose()
        for s in sentinels:
            await s.aclose()


def test_a_forked_child_never_writes_on_the_parent_s_master_connections(
    sentinel: SentinelInfra,
) -> None:
    """The pool of a ``redis+sentinel://`` URL (store/topology.py: SentinelPool) in a child
    forked after it connected: the child's calls connect anew (they took the parent's idle
    connections to the master, as every pool but the Enqueuer's did)."""
    client = Client.from_url(sentinel.url, namespace=unique_namespace())
    master = f"redis://127.0.0.1:{sentinel.master_port()}"
    parent_untouched(master, client.redis, lambda: client.redis.echo(b"c"), client.aclose)


def test_a_forked_child_never_writes_on_the_parent_s_sentinel_connections(
    sentinel: SentinelInfra,
) -> None:
    """A client of the user's own from ``Sentinel.master_for`` passed in (here to a Client,
    store/foreign.py: watch_client): in a child forked after it connected, the master lookup
    of the child's first call connects to the sentinels anew. Before, only the master's pool
    was watched: the lookup wrote on the parent's connection to a sentinel (its reply read by
    whichever process read first)."""
    manager: Any = Sentinel([("127.0.0.1", s.port) for s in sentinel.sentinels])
    sentinels = list(manager.sentinels)  # (redis-py may reorder its own list)
    master = manager.master_for(sentinel.service)
    client = Client(master, namespace=unique_namespace())
    loop = asyncio.new_event_loop()
    try:

        async def warm() -> None:
            await master.ping()  # (a lookup: the parent's sentinel connections)
            await asyncio.gather(*(s.ping() for s in sentinels))  # their last command: PING

        loop.run_until_complete(warm())
        idle = {  # by sentinel port, the ports of the parent's idle connections to it
            s.connection_pool.connection_kwargs["port"]: {
                c._writer.get_extra_info("sockname")[1]
                for c in s.connection_pool._available_connections
            }
            for s in sentinels
        }
        assert all(idle.values())

        async def lookup() -> None:
            await asyncio.wait_for(client.redis.echo(b"c"), 5)

        assert in_child(lambda: asyncio.run(lookup())) == b"ok"
        for port, ports in idle.items():
            last = last_commands(f"redis://127.0.0.1:{port}")
            seen = {last[p] for p in ports if p in last}
            assert seen == {"ping"}, f"last commands on the parent's connections: {seen}"
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(master.aclose())
        for s in sentinels:
            loop.run_until_complete(s.aclose())
        loop.close()
