"""Jobs enqueued and pools registered, nothing fetched yet: the set-up of the script-level fetch
tests (tests/limits, tests/store) that call fetch.lua themselves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from redis.asyncio import Redis

from errands import Enqueuer
from errands.enqueuer import EnqueueItem
from errands.store.keys import Keys
from errands.store.scripts import Scripts


async def ready_to_fetch(
    redis: Redis, namespace: str, jobs: Iterable[EnqueueItem], pools: Sequence[str] = ("p",)
) -> Scripts:
    """``jobs`` (``enqueue_many``'s items) enqueued in that order in one call, and ``pools``
    registered (a 60 s lease): the scripts to fetch them with."""
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue_many(jobs)
    scripts = Scripts(redis, Keys(namespace))
    for pool in pools:
        await scripts.heartbeat(pool, b"{}", 60_000, mode="register")
    return scripts
