"""The admin scripts re-sent (redis-py sends a call again, with the same KEYS and ARGV, when its
reply was lost): the second call leaves the same state and gives the same answer as the first,
so the Client's answer is the one of the call that did the work. And a bad argument is an error
before anything is written."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.invariants import assert_invariants


@pytest.fixture
async def client(redis: Redis, namespace: str) -> AsyncIterator[Client]:
    async with Client(redis, namespace=namespace) as c:
        yield c


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace, strict=None) as e:
        yield e


@contextmanager
def resent(scripts: Scripts, name: str) -> Iterator[list[Any]]:
    """Every call of script ``name`` runs twice, as when its first reply is lost; the caller gets
    the second answer. Yields the first answers."""
    original = scripts._s[name]
    firsts: list[Any] = []

    async def twice(keys: list[Any], args: list[Any]) -> Any:
        firsts.append(await original(keys=keys, args=args))
        return await original(keys=keys, args=args)

    scripts._s[name] = twice  # type: ignore[assignment]
    try:
        yield firsts
    finally:
        scripts._s[name] = original


async def history(redis: Redis, keys: Keys, job_id: str) -> list[str]:
    return sorted(m.decode() for m in await redis.zrange(keys.history, 0, -1) if job_id in str(m))


async def test_an_update_resent_is_recorded_once(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """The re-sent update_job found the envelope changed (by its own first call) and answered
    0: the Client looked again and made a second edit, recorded as a second ``edited``."""
    keys = Keys(namespace)
    job = await enqueuer.enqueue("sync", {"n": 1})
    assert job is not None
    with resent(client.scripts, "update_job") as firsts:
        info = await client.update_job(job.id, args={"n": 2}, priority=3)
    assert firsts == [1]
    assert (info.args, info.priority, info.edits) == ({"n": 2}, 3, 1)
    assert await history(redis, keys, job.id) == [f"{job.id}:e1"]
    assert [h.status for h in await client.history_job(job.id)] == ["edited"]
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("bad", ["priority", "now"])
async def test_an_update_with_a_bad_number_writes_nothing(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer, bad: str
) -> None:
    """A priority or a time that is not a number raised after the envelope was replaced."""
    keys = Keys(namespace)
    job = await enqueuer.enqueue("sync", {"n": 1})
    assert job is not None
    old = await redis.hget(keys.jobs, job.id)
    assert old is not None
    call = [keys.jobs, keys.priorities, keys.queue("sync"), keys.history, keys.history_data]
    call += [keys.history_of("sync"), keys.partitions, keys.seq]
    call += [keys.partition_queue("sync"), keys.partitions_ready("sync")]
    prio, now = ("x", 5) if bad == "priority" else (2, "x")
    args = [job.id, old, b'{"new":1}', prio, "1", f"{job.id}:e1", b"{}", now]
    with pytest.raises(ResponseError) as raised:
        await client.scripts._call("update_job", call, args)
    assert await redis.hget(keys.jobs, job.id) == old
    assert await redis.hget(keys.priorities, job.id) is None
    assert await history(redis, keys, job.id) == []
    assert "errands: update_job" in str(raised.value)
