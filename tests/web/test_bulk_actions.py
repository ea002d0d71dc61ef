"""Issue 14 item 6: the dashboard's bulk actions on the scheduled and retry sets act once on
each job listed, and corrupt entries (skipped) do not stop them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

import errands
from errands import Client, Enqueuer
from errands.store.keys import Keys
from tests.support.dashboard import http, post
from tests.support.invariants import assert_invariants


@pytest.fixture
async def client(redis: Redis, namespace: str) -> AsyncIterator[Client]:
    yield Client(redis, namespace=namespace)
    await assert_invariants(redis, namespace, context="after the test:")


@pytest.mark.parametrize("kind", ["scheduled", "retry"])
async def test_bulk_actions_pass_corrupt_entries_at_the_head(
    redis: Redis, namespace: str, client: Client, kind: str
) -> None:
    keys = Keys(namespace)
    target = keys.scheduled("ok") if kind == "scheduled" else keys.retry("ok")
    enqueuer = Enqueuer(redis, namespace=namespace)
    good = [await enqueuer.enqueue("ok", {"i": i}, delay=7200) for i in range(3)]
    ids = [job.id for job in good if job is not None]
    if kind == "retry":  # (waiting for their retry: as settle leaves them)
        await redis.zrem(keys.scheduled("ok"), *ids)
        await redis.zadd(target, dict.fromkeys(ids, 7_200_000_000_000))
    # 45 corrupt entries due before every good one: the first two pages and more
    await redis.hset(keys.jobs, mapping={f"bad{i}": b"{{{" for i in range(45)})
    await redis.zadd(target, {f"bad{i}": i for i in range(45)})
    async with http(errands.dashboard(client)) as web:
        response = await post(web, f"/{kind}/retry-all")
        assert response.status_code == 303
        assert await redis.zcard(keys.queue("ok")) == 3
        await redis.delete(keys.queue("ok"))
        await redis.zadd(target, dict.fromkeys(ids, 7_200_000_000_000))
        await post(web, f"/{kind}/delete-all")
    assert await redis.zcard(target) == 45  # (corrupt ones are left to the delete of each)
    await redis.delete(target)
    await redis.hdel(keys.jobs, *[f"bad{i}" for i in range(45)], *ids)
