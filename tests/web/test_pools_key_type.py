"""The pools' registry (``pools``) holding another type (a hand edit): the Overview is still
shown, with its busy and pools tiles unknown ("?"); the Pools and Busy pages, which are that
registry, say which key holds another type; the Queues and job pages answer without it."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys


async def test_a_pools_key_of_another_type_leaves_the_other_pages_up(
    enqueuer: Enqueuer, web: httpx.AsyncClient, redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await enqueuer.enqueue("work", job_id="queued")
    await redis.hset(keys.jobs, "running", b'{"n": "work", "a": {}}')  # type: ignore[misc]
    await redis.set(keys.pools, "hand edit")
    overview = await web.get("/")
    assert overview.status_code == 200, overview.text
    assert f"{keys.pools} holds another type" in overview.text
    totals = (await web.get("/api/overview")).json()["totals"]
    assert (totals["busy"], totals["pools"], totals["queued"]) == (None, None, 1)
    for path in ("/queues", "/jobs/running", "/jobs/queued"):
        assert (await web.get(path)).status_code == 200, path
    for path in ("/pools", "/busy"):
        page = await web.get(path)
        assert page.status_code == 500 and f"Redis key {keys.pools} holds" in page.text, path
