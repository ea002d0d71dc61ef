"""Dedup throttle: at most one enqueue accepted per window, on the Redis clock."""

from __future__ import annotations

from datetime import timedelta

from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

from .conftest import until


async def test_one_accepted_per_window(redis: Redis, namespace: str, enqueuer: Enqueuer) -> None:
    keys = Keys(namespace)
    d = Dedup("idx", throttle=timedelta(milliseconds=300))
    first = await enqueuer.enqueue("reindex", {"n": 1}, dedup=d)
    assert first is not None and first.dedup is not None and first.dedup.enqueued
    second = await enqueuer.enqueue("reindex", {"n": 2}, dedup=d)
    assert second is not None and second.dedup is not None
    assert (second.dedup.status, second.dedup.holder) == ("dropped", first.id)
    ttl = await redis.pttl(keys.dedup_window("reindex:idx"))
    assert 0 < ttl <= 300
    await assert_invariants(redis, namespace)

    async def accepted() -> bool:
        job = await enqueuer.enqueue("reindex", {"n": 3}, dedup=d)
        assert job is not None and job.dedup is not None
        return job.dedup.enqueued

    # the window is counted from the accepted enqueue, whatever became of that job
    await until(accepted, timeout=10)
    assert await redis.zcard(keys.queue("reindex")) == 2
    await assert_invariants(redis, namespace)
