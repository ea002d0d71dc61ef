"""The dashboard's retry of a cancelled job enqueued with ``dedup=`` (the job page's button and
the cancelled set's): refused with the holder named while another job holds its key, nothing
moved; once the key is free, the job is queued holding it (docs/dedup.md, "Run again by
hand")."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer
from errands.store.keys import Keys
from tests.support.dashboard import post


async def test_the_dashboards_retry_takes_the_key_again_or_is_refused(
    redis: Redis, namespace: str, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    keys = Keys(namespace)
    d = Dedup("repo:x", until="finished")
    job = await enqueuer.enqueue("deploy", {"n": 1}, delay=3600, dedup=d)
    assert job is not None and await client.cancel(job.id) == "cancelled"
    holder = await enqueuer.enqueue("deploy", {"n": 2}, delay=3600, dedup=d)
    assert holder is not None and holder.dedup is not None and holder.dedup.enqueued
    for path in ("/api/jobs/retry", "/api/cancelled/retry"):
        refused = await post(web, path, {"id": job.id})
        assert refused.status_code == 400 and holder.id in refused.json()["error"], path
        info = await client.job(job.id)
        assert info is not None and info.status == "cancelled"
    assert await client.cancel(holder.id) == "cancelled"
    done = await post(web, "/api/jobs/retry", {"id": job.id})
    assert done.status_code == 200, done.text
    assert await redis.zscore(keys.queue("deploy"), job.id) is not None
    assert await redis.hget(keys.dedup, "deploy:repo:x") == job.id.encode()
    dup = await enqueuer.enqueue("deploy", {"n": 3}, dedup=d)
    assert dup is not None and dup.dedup is not None
    assert (dup.dedup.status, dup.dedup.holder) == ("dropped", job.id)
