"""Issue 12 (defect 9): a custom Serializer that is not JSON. The scripts spliced the stored
envelope into the JSON records (result, history): with any other encoding those records were
not JSON, and ``result()`` failed on them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, JobFailedError, WorkerPool


class Tagged:
    """Not JSON: a tag byte, then JSON (as any binary format would be to the scripts)."""

    def dumps(self, value: dict[str, Any]) -> bytes:
        return b"\x01" + orjson.dumps(value)

    def loads(self, data: bytes) -> dict[str, Any]:
        assert data[:1] == b"\x01", data[:20]
        value: dict[str, Any] = orjson.loads(data[1:])
        return value


async def test_results_and_failures_of_jobs_stored_in_another_format(
    redis: Redis, namespace: str
) -> None:
    pool = WorkerPool(redis, namespace=namespace, serializer=Tagged())

    @pool.job("add")
    async def add(job: Job, a: int, b: int) -> dict[str, int]:
        await job.checkin("adding")
        return {"sum": a + b}

    @pool.job("fail", max_fails=1)
    async def fail(job: Job) -> None:
        raise ValueError("no")

    enqueuer = Enqueuer(redis, namespace=namespace, serializer=Tagged())
    ok = await enqueuer.enqueue("add", {"a": 1, "b": 2})
    bad = await enqueuer.enqueue("fail")
    assert ok is not None and bad is not None
    await pool.drain(timeout=5)
    assert await ok.result(timeout=2) == {"sum": 3}
    with pytest.raises(JobFailedError, match="no"):
        await bad.result(timeout=2)
    history = await Client(redis, namespace=namespace).history()
    assert {entry.id for entry in history.items} == {ok.id, bad.id}
