"""A flow-control key that ``Client.job()`` reads only to say why a queued job waits (its
``waiting_for``: the pause set, the published caps, the running counts, a rate log, the
partitions' rate waits and running counts, the limits in code and at run time) holding another
type (a hand edit, or a bug): the job is still read, its reason says which key and its repair,
and the admin calls that start by reading the job (cancel, destroy, a delete, reschedule) go on to
their scripts, which report a key they touch themselves. Before, each failed with Redis' bare
WRONGTYPE, naming no key."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Concurrency, Enqueuer, JobStatus, Rate
from errands.store.keys import Keys

KEYS: dict[str, Callable[[Keys], str]] = {
    "paused": lambda k: k.paused,
    "limits": lambda k: k.limits,
    "running": lambda k: k.running,
    "rate log": lambda k: k.rate_log("sms"),
    "partition waits": lambda k: k.partitions_waiting("sms"),
    "partitions running": lambda k: k.partitions_running("sms"),
    "code limits": lambda k: k.code_limits,
    "runtime limits": lambda k: k.runtime_limits,
}


async def _queued(client: Client, enqueuer: Enqueuer, redis: Redis, which: str) -> tuple[str, str]:
    """A queued job of ``sms`` in partition A, under a type-wide rate and a per-partition cap
    (so that every key of KEYS is read for its reason), with the key ``which`` a string."""
    limits = [Rate(100, per=timedelta(seconds=1)), Concurrency(2, per_partition=True)]
    await client.set_limits("sms", limits, strict=None)
    job = await enqueuer.enqueue("sms", {}, partition="A")
    assert job is not None
    assert (await client.job(job.id)).waiting_for is None  # type: ignore[union-attr]
    key = KEYS[which](client.keys)
    await redis.delete(key)
    await redis.set(key, "hand edit")
    return job.id, key


@pytest.mark.parametrize("which", sorted(KEYS))
async def test_job_names_the_key_of_another_type_in_its_waiting_reason(
    client: Client, enqueuer: Enqueuer, redis: Redis, which: str, caplog: pytest.LogCaptureFixture
) -> None:
    job_id, key = await _queued(client, enqueuer, redis, which)
    with caplog.at_level(logging.WARNING, "errands.admin"):
        info = await client.job(job_id)
    assert info is not None and info.status == JobStatus.QUEUED
    assert (info.name, info.partition) == ("sms", "A")
    reason = info.waiting_for or ""
    assert reason.startswith(f"unknown: {key} holds another type: "), reason
    assert f"({key} is a string; repair: " in reason, reason
    assert f"WRONGTYPE {key} holds another type" in caplog.text


@pytest.mark.parametrize("which", sorted(KEYS))
async def test_cancel_destroy_and_delete_reach_their_scripts(
    client: Client, enqueuer: Enqueuer, redis: Redis, which: str
) -> None:
    job_id, key = await _queued(client, enqueuer, redis, which)
    with pytest.raises(ValueError, match="only scheduled, retrying, dead or cancelled"):
        await client.reschedule(job_id, 0)
    if which == "partition waits":  # (a key the scripts touch: their refusal names it)
        for call in (client.cancel(job_id), client.destroy(job_id)):
            with pytest.raises(ResponseError, match=f"WRONGTYPE {key} holds another type"):
                await call
        assert await redis.get(key) == b"hand edit"
        return
    assert await client.cancel(job_id) == "cancelled"
    assert await client.reschedule(job_id, 0) is True  # (queued again: a past time)
    assert await client.delete_queued_job(job_id) is True
    other = await enqueuer.enqueue("sms", {}, partition="A")
    assert other is not None
    assert await client.destroy(other.id) is True
    assert await client.job(other.id) is None
    assert await redis.get(key) == b"hand edit"


async def test_limits_name_a_limits_key_of_another_type(client: Client, redis: Redis) -> None:
    await redis.set(client.keys.runtime_limits, "hand edit")
    key = client.keys.runtime_limits
    with pytest.raises(ResponseError, match=f"WRONGTYPE {key} holds another type: no limits"):
        await client.limits()


async def test_partitions_name_a_partitions_key_of_another_type(
    client: Client, enqueuer: Enqueuer, redis: Redis
) -> None:
    await enqueuer.enqueue("sms", {}, partition="A")
    for key in (client.keys.partitions_waiting("sms"), client.keys.partitions_running("sms")):
        await redis.set(key, "hand edit")
        with pytest.raises(ResponseError, match=f"WRONGTYPE {key} holds another type: no part"):
            await client.partitions("sms")
        await redis.delete(key)
