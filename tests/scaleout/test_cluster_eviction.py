"""On a Redis Cluster a pool reads the eviction policy from the node its namespace's slot lives
on: that node evicting (the others another policy) is the warning that names its policy."""

from __future__ import annotations

import logging

import pytest

from errands import Job, WorkerPool
from errands.store.keys import Keys
from tests.support.infra import ClusterInfra

from .conftest import unique_namespace


async def test_the_policy_is_read_from_the_namespace_node(
    cluster: ClusterInfra, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = unique_namespace()
    home = cluster.master_of(Keys(namespace).jobs)
    others = [master for master, _ in cluster.shards() if master is not home]
    assert others
    home.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu")
    for node in others:
        node.call("CONFIG", "SET", "maxmemory-policy", "volatile-lru")
    try:
        pool = WorkerPool.from_url(cluster.url, namespace=namespace)

        @pool.job("j")
        async def j(job: Job) -> None:
            pass

        async with pool:
            pass
    finally:
        for node in (home, *others):
            node.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "maxmemory-policy" in r.getMessage()
    ]
    assert len(warnings) == 1 and "'allkeys-lfu'" in warnings[0], warnings
