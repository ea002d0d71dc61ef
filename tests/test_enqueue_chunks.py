"""docs/enqueueing.md: ``enqueue_many`` stores its jobs by one Lua call per 5,000 jobs (a
bounded work per script call), each job once, in the order given."""

from __future__ import annotations

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
