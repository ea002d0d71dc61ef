"""The hashes ``Client.job()`` reads beside a job's status only to inform (``errors``,
``checkins``, ``checkpoints``: its last error, checkin and progress) holding another type (a hand
edit, or a bug): the job is read without that value, a WARNING naming the key and its repair; a set
that says its status (its name's scheduled set...) of another type is an error naming it. Before,
both were Redis' bare WRONGTYPE, naming no key, out of job() and every admin call reading it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Enqueuer, JobStatus
from errands.store.keys import Keys

INFOS: dict[str, Callable[[Keys], str]] = {
    "errors": lambda k: k.errors,
    "checkins": lambda k: k.checkins,
    "checkpoints": lambda k: k.checkpoints,
}


@pytest.mark.parametrize("which", sorted(INFOS))
async def test_an_info_hash_of_another_type_is_left_out_of_the_job(
    client: Client, enqueuer: Enqueuer, redis: Redis, which: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = await enqueuer.enqueue("sms", {})
    assert job is not None
    key = INFOS[which](client.keys)
    await redis.set(key, "hand edit")
    with caplog.at_level(logging.WARNING, "errands.admin"):
        info = await client.job(job.id)
    assert info is not None and info.status == JobStatus.QUEUED
    assert (info.error, info.checkin, info.progress) == (None, None, None)
    assert f"WRONGTYPE {key} holds another type: left out" in caplog.text
    assert f"({key} is a string; repair: " in caplog.text
    assert await client.cancel(job.id) == "cancelled"
    assert await redis.get(key) == b"hand edit"


async def test_a_status_set_of_another_type_is_named(
    client: Client, enqueuer: Enqueuer, redis: Redis
) -> None:
    job = await enqueuer.enqueue("sms", {})
    assert job is not None
    key = client.keys.scheduled("sms")
    await redis.set(key, "hand edit")
    match = rf"WRONGTYPE {key} holds another type: the job's status not read \({key} is a string"
    with pytest.raises(ResponseError, match=match):
        await client.job(job.id)


async def test_an_in_progress_set_of_another_type_leaves_out_only_its_pool(
    client: Client, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    keys = client.keys
    await redis.hset(keys.jobs, "running", b'{"n": "work", "a": {}}')  # type: ignore[misc]
    await redis.zadd(keys.pools, {"p1": 1, "p2": 2})
    await redis.set(keys.in_progress("p1"), "hand edit")
    await redis.zadd(keys.in_progress("p2"), {"running:work": 5_000})
    with caplog.at_level(logging.WARNING, "errands.admin"):
        info = await client.job("running")
    assert info is not None and info.status == JobStatus.IN_PROGRESS
    assert (info.pool_id, info.started_at) == ("p2", 5.0)
    key = keys.in_progress("p1")
    assert f"WRONGTYPE {key} holds another type: the job's pool not read" in caplog.text


async def test_a_reruns_set_of_another_type_is_named(client: Client, redis: Redis) -> None:
    keys = client.keys
    await redis.hset(keys.jobs, "running", b'{"n": "work", "a": {}}')  # type: ignore[misc]
    await redis.set(keys.dedup_reruns, "hand edit")
    key = keys.dedup_reruns
    match = rf"WRONGTYPE {key} holds another type: the job's status not read \({key} is a string"
    with pytest.raises(ResponseError, match=match):
        await client.job("running")
