"""(review of the typed reads) ``Client.job()``'s reads that degrade a key of another type (the
waiting reason: "unknown: ..."; the error, checkin and checkpoint hashes: left out) let every
other error reply through as it is: a NOPERM (an ACL rule without a command, or without a key)
is raised, not read as "another type" nor left out with a WARNING."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from errands import Client, Enqueuer
from errands.store.keys import Keys


async def _job_as(own_url: str, own_redis: Redis, user: str, *rules: str) -> None:
    """``Client.job()`` of a queued job, read by ``user`` under ``rules``."""
    await own_redis.execute_command("ACL", "SETUSER", user, "reset", "on", "nopass", *rules)
    async with Enqueuer(own_redis, namespace="ns", strict=None) as enqueuer:
        job = await enqueuer.enqueue("sms", {})
    assert job is not None
    redis = Redis.from_url(own_url, username=user, password="x")
    try:
        async with Client(redis, namespace="ns") as c:
            await c.job(job.id)
    finally:
        await redis.aclose()


async def test_a_waiting_reason_read_refused_by_acl_is_raised(
    own_url: str, own_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), pytest.raises(NoPermissionError, match="sismember"):
        await _job_as(own_url, own_redis, "u1", "~*", "&*", "+@all", "-sismember")
    assert "holds another type" not in caplog.text


async def test_a_checkpoint_read_refused_by_acl_is_raised(
    own_url: str, own_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    p = Keys("ns").prefix  # every key of the namespace but the checkpoints' (ckpt)
    keys = [f"~{p}[^c]*", f"~{p}checkin", f"~{p}cancelled", f"~{p}climits"]
    await _job_as(own_url, own_redis, "u3", *keys, f"~{p}ckpt", "&*", "+@all")  # (all read)
    with caplog.at_level(logging.WARNING), pytest.raises(NoPermissionError):
        await _job_as(own_url, own_redis, "u2", *keys, "&*", "+@all")
    assert "holds another type" not in caplog.text
