"""A pool's start reads the server's ``maxmemory_policy`` (INFO memory) once: any but
``noeviction`` is one WARNING naming it and the fix (docs/reliability.md, "No eviction"); INFO
refused (an ACL user without ``+info``) is a debug line, and the pool starts."""

from __future__ import annotations

import logging
import uuid

import pytest
from redis.asyncio import Redis

from errands import Job, WorkerPool


def _pool(url: str, namespace: str) -> WorkerPool:
    pool = WorkerPool.from_url(url, namespace=namespace)

    @pool.job("j")
    async def j(job: Job) -> None:
        pass

    return pool


def _eviction_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "maxmemory-policy" in r.getMessage()
    ]


async def test_an_evicting_policy_is_one_warning_at_the_start_and_noeviction_none(
    own_url: str, own_redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await own_redis.info("memory"))["maxmemory_policy"] == "noeviction"  # the default
    async with _pool(own_url, namespace):
        pass
    assert _eviction_warnings(caplog) == []
    await own_redis.config_set("maxmemory-policy", "allkeys-lru")
    async with _pool(own_url, namespace) as pool:
        pass
    [warning] = _eviction_warnings(caplog)
    assert "'allkeys-lru'" in warning and pool.id in warning and "any of errands' keys" in warning
    assert "maxmemory-policy noeviction" in warning and "docs/reliability.md" in warning


async def test_a_volatile_policy_warns_too(
    own_url: str, own_redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """volatile-*: keys with a TTL go first (tombstones, result records, locks)."""
    await own_redis.config_set("maxmemory-policy", "volatile-ttl")
    async with _pool(own_url, namespace):
        pass
    [warning] = _eviction_warnings(caplog)
    assert "'volatile-ttl'" in warning and "keys with a TTL" in warning


async def test_a_user_not_allowed_info_starts_without_a_warning(
    own_url: str, own_redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "errands.pool")
    await own_redis.config_set("maxmemory-policy", "allkeys-lru")
    user, password = f"app-{namespace}", uuid.uuid4().hex
    pattern = "errands:{" + namespace + "}:*"
    rule = ["reset", "on", f">{password}", f"~{pattern}", f"&{pattern}", "+@all", "-info"]
    await own_redis.execute_command("ACL", "SETUSER", user, *rule)
    url = own_url.replace("redis://", f"redis://{user}:{password}@", 1)
    async with _pool(url, namespace) as pool:
        assert pool.id
    assert _eviction_warnings(caplog) == []
    debug = [r for r in caplog.records if "eviction policy is not checked" in r.getMessage()]
    assert [r.levelno for r in debug] == [logging.DEBUG]
    assert "INFO refused" in debug[0].getMessage()
    log = await own_redis.acl_log()
    assert {e["object"] for e in log if e["username"] == user} == {"info"}
