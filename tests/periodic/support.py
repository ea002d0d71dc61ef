"""Helpers of the schedule tests: a pool's periodic enqueuer, the args of the jobs queued, and
the jobs taken off as acks would."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from errands import FakeClock
from errands.periodic.enqueuer import PeriodicEnqueuer
from errands.periodic.store import PeriodicSchedule
from errands.serialization import JSONSerializer
from errands.store.keys import Keys


def pool(
    redis: Redis, namespace: str, clock: FakeClock, code: list[PeriodicSchedule], pool_id: str
) -> PeriodicEnqueuer:
    return PeriodicEnqueuer(redis, Keys(namespace), clock, JSONSerializer(), code, pool_id=pool_id)


async def queued_args(redis: Redis, namespace: str) -> list[Any]:
    keys = Keys(namespace)
    ids = await redis.zrange(keys.queue("tick"), 0, -1)
    return [orjson.loads(e)["a"] for e in await redis.hmget(keys.jobs, ids)] if ids else []


async def drop_jobs(redis: Redis, namespace: str) -> None:
    """As acks leave jobs that ran: envelopes and queue entries gone."""
    keys = Keys(namespace)
    for job_id in await redis.zrange(keys.queue("tick"), 0, -1):
        await redis.zrem(keys.queue("tick"), job_id)
        await redis.hdel(keys.jobs, job_id)
