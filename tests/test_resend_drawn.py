"""An enqueue of a random job id (no ``job_id=``) whose reply was lost: redis-py sends the
script call again, and the re-send finds the job the first send stored. Once that job has
failed an attempt or ended, the script cannot tell it from another job's and lists it; but a
random 128-bit id can only be there by this call's own first send, so the caller is told its
job was stored (``existed`` False), as the first send's reply would have said. A ``job_id``
given by the caller keeps ``existed`` for such a re-send (indistinguishable from a duplicate),
and for a true duplicate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys


def resent(redis: Redis, keys: Keys, send: Callable[..., Awaitable[Any]]) -> Any:
    """``send``, run twice as redis-py does after a lost reply: the first send stores the job,
    which then fails an attempt (its stored envelope rewritten) before the re-send, whose reply
    is the one returned."""

    async def twice(*args: Any, **kwargs: Any) -> Any:
        await send(*args, **kwargs)
        for job_id in await redis.hkeys(keys.jobs):  # type: ignore[misc]
            await redis.hset(keys.jobs, job_id, b'{"n": "x", "failed": 1}')  # type: ignore[misc]
        return await send(*args, **kwargs)

    return twice


@pytest.mark.parametrize("given", [None, "order-17"])
async def test_enqueue(redis: Redis, namespace: str, given: str | None) -> None:
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        coalescer = enqueuer._coalescer
        coalescer._send_once = resent(redis, keys, coalescer._send_once)  # type: ignore[method-assign]
        job = await enqueuer.enqueue("work", job_id=given)
    assert job is not None and job.existed == (given is not None)
    assert await redis.hlen(keys.jobs) == 1  # type: ignore[misc]


async def test_enqueue_many(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        bulk = enqueuer._bulk
        bulk.enqueue = resent(redis, keys, bulk.enqueue)  # type: ignore[method-assign]
        jobs = await enqueuer.enqueue_many([("work", {}), ("work", {}, {"job_id": "mine"})])
    assert [j.existed for j in jobs] == [False, True]
    assert await redis.hlen(keys.jobs) == 2  # type: ignore[misc]


@pytest.mark.parametrize("given", [None, "order-17"])
async def test_enqueue_unique(redis: Redis, namespace: str, given: str | None) -> None:
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        scripts = enqueuer.scripts
        scripts.enqueue_unique = resent(redis, keys, scripts.enqueue_unique)  # type: ignore[method-assign]
        job = await enqueuer.enqueue_unique("work", job_id=given)
    assert job is not None and job.existed == (given is not None)


async def test_a_true_duplicate_of_a_given_id_still_existed(redis: Redis, namespace: str) -> None:
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        first = await enqueuer.enqueue("work", job_id="order-17")
        again = await enqueuer.enqueue("work", job_id="order-17")
        many = await enqueuer.enqueue_many([("work", {}, {"job_id": "order-17"})])
    assert first is not None and again is not None
    assert (first.existed, again.existed, many[0].existed) == (False, True, True)
