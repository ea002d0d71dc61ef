"""A rerun (rerun_latest, the holder running) is a job stored by the enqueue: its `enqueued`
event is published then, as for any stored job (docs/client.md, Events), before its start."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer, Job, WorkerPool
from tests.support.invariants import assert_invariants


async def test_a_stored_rerun_publishes_enqueued(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("deploy")
    async def deploy(job: Job, sha: str) -> None:
        started.set()
        await release.wait()

    d = Dedup("repo:x", until="finished", rerun_latest=True)
    events: list[dict[str, Any]] = []
    async with client.events() as stream, pool:
        first = await enqueuer.enqueue("deploy", {"sha": "a"}, dedup=d)
        async with asyncio.timeout(10):
            await started.wait()
        rerun = await enqueuer.enqueue("deploy", {"sha": "b"}, dedup=d)
        again = await enqueuer.enqueue("deploy", {"sha": "c"}, dedup=d)  # replaces its args
        assert first is not None and rerun is not None and again is not None
        assert rerun.dedup is not None and rerun.dedup.status == "rerun_queued"
        assert again.id == rerun.id
        release.set()
        async with asyncio.timeout(10):
            async for event in stream:
                events.append(event)
                if (event["event"], event["id"]) == ("finished", rerun.id):
                    break
        await pool.drain(timeout=10)
    of_rerun = [e["event"] for e in events if e["id"] == rerun.id]
    assert of_rerun == ["enqueued", "started", "finished"]
    assert next(e for e in events if e["id"] == rerun.id)["name"] == "deploy"
    await assert_invariants(redis, namespace, drained=True)
