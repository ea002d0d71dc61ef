"""``Settler.requeue(..., head=True)`` takes one job: settle.lua puts each job it requeues at the
head just ahead of the job first there, so several would land in the reverse order. With more
than one it raises ValueError and writes nothing (its one caller, an iterable job at a
checkpoint, passes one: tests/longwork/test_iterable_checkpoints.py)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Job
from errands.clock import SystemClock
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker.settler import Settler


async def test_requeue_at_the_head_refuses_more_than_one_job(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    settler = Settler(
        Scripts(redis, keys),
        "pool-1",
        SystemClock(),
        JSONSerializer(),
        dead_max_jobs=100,
        dead_max_age=3600.0,
        history=False,
    )
    jobs = [Job("b", {}, id=f"j{i}", enqueued_at=0.0) for i in range(2)]
    with pytest.raises(ValueError, match="one job"):
        await settler.requeue(*jobs, head=True)
    assert await redis.zcard(keys.queue("b")) == 0
