"""(hunt-admin probes) Client.update_job racing a running pool's fetches: an edit acknowledged
(update_job returned) is what the job runs with; one refused (the job was taken meanwhile,
ValueError) left the job as it was. Each job runs once; the history records every acknowledged
edit before the run that used it; the invariant checker finds nothing, the namespace drained."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from tests.support.invariants import assert_invariants


async def test_an_acknowledged_edit_is_what_runs(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    seen: dict[str, list[int]] = {}
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4, poll_interval=0.01)

    @pool.job("edit")
    async def edit(job: Job, n: int) -> None:
        seen.setdefault(job.id, []).append(n)
        await asyncio.sleep(0.001)

    jobs = [j for j in await enqueuer.enqueue_many([("edit", {"n": 0})] * 200) if j is not None]
    acked: dict[str, bool] = {}
    window = asyncio.Semaphore(8)  # (the client's connections are few)

    async def update(job_id: str) -> None:
        try:
            async with window:
                await client.update_job(job_id, args={"n": 1}, priority=1)
            acked[job_id] = True
        except ValueError:  # running or ended meanwhile: not edited
            acked[job_id] = False

    async with pool:
        await asyncio.gather(*(update(j.id) for j in jobs))
        await pool.drain(timeout=20)
    assert {j.id: seen.get(j.id) for j in jobs} == {j.id: [1 if acked[j.id] else 0] for j in jobs}
    for j in jobs:
        statuses = [h.status for h in await client.history_job(j.id)]
        assert statuses == (["edited", "finished"] if acked[j.id] else ["finished"]), j.id
    await assert_invariants(redis, namespace, drained=True, stopped=True)
