"""docs/enqueueing.md: ``enqueue_many`` stores its jobs by one Lua call per 5,000 jobs, and
concurrent enqueues share calls of at most 1,000 jobs (bounded work per script call); each job
once, in the order given."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys


async def test_enqueue_many_sends_one_call_per_5000_jobs(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    calls: list[int] = []
    send = enqueuer._bulk.enqueue

    async def counted(chunk: Any) -> Any:
        calls.append(len(chunk[1]))  # (names, ids, envelopes, specs)
        return await send(chunk)

    monkeypatch.setattr(enqueuer._bulk, "enqueue", counted)
    jobs = await enqueuer.enqueue_many([("work", {"i": i}) for i in range(10_001)])
    assert calls == [5000, 5000, 1]
    assert [job.args["i"] for job in jobs] == list(range(10_001))
    assert not any(job.existed for job in jobs)
    queued = await redis.zrange(Keys(namespace).queue("work"), 0, -1)
    assert queued == [job.id.encode() for job in jobs]


async def test_concurrent_enqueues_share_calls_of_at_most_1000_jobs(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/enqueueing.md: enqueues gathered while a call is on the wire are stored by the next
    script call, up to 1,000 jobs per call, in the order they were submitted."""
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    coalescer = enqueuer._coalescer
    sizes: list[int] = []
    once = coalescer._once

    async def counted(batch: Any) -> Any:
        sizes.append(len(batch))
        return await once(batch)

    monkeypatch.setattr(coalescer, "_once", counted)
    jobs = await asyncio.gather(*(enqueuer.enqueue("work", {"i": i}) for i in range(2501)))
    assert max(sizes) == 1000 and sum(sizes) == 2500, sizes  # (the first one is sent alone)
    queued = await redis.zrange(Keys(namespace).queue("work"), 0, -1)
    assert queued == [job.id.encode() for job in jobs if job is not None]
