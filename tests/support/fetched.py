"""A job as fetch.lua leaves it, written by hand: the set-up of the script-level tests that call
settle, ack, reap or cancel on a job no pool really runs."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.worker.loop import Worker

POOL = "p0000000000000001"


async def running_job(redis: Redis, namespace: str, token: str = "1") -> tuple[Keys, str]:
    """A job of ``work`` fetched by POOL (attempt ``token``): queued, then taken as fetch.lua
    takes it (in-progress entry, running count, attempt)."""
    keys = Keys(namespace)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work")
    assert job is not None
    await redis.zadd(keys.pools, {POOL: 1})
    assert await redis.zrem(keys.queue("work"), job.id) == 1
    await redis.zadd(keys.in_progress(POOL), {f"{job.id}:work": 1})
    await redis.hincrby(keys.running, "work", 1)
    await redis.hset(keys.attempts, job.id, f"{POOL}:{token}")
    return keys, job.id


def fetch_none(worker: Worker) -> None:
    """The worker's fetches ask for no job (a count of 0, the rest of each call as it was): the
    orphans a test puts in its pool's in-progress set stay orphans until the sweep finds them."""
    fetch = worker.scripts.fetch

    async def no_fetch(*args: Any, **kwargs: Any) -> Any:
        return await fetch(*args[:2], 0, *args[3:], **kwargs)

    worker.scripts.fetch = no_fetch  # type: ignore[method-assign]
