"""A 10,000-way fan-in: stored in one script, released by the last of 10,000 acks, its merge
sees every result; and the figures (enqueue time, end to end) for the record."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool, Workflow
from tests.support.invariants import assert_invariants

WIDTH = 10_000


async def test_ten_thousand_way_fan_in(redis: Redis, namespace: str) -> None:
    pool = WorkerPool(redis, namespace=namespace, concurrency=64)
    seen: list[int] = []

    @pool.job("part")
    async def part(job: Job, i: int) -> int:
        return i

    @pool.job("merge")
    async def merge(job: Job) -> int:
        results = await job.dependency_results()
        seen.append(len(results))
        return sum(results.values())

    wf = Workflow("wide")
    parts = [wf.add("part", {"i": i}, id=f"p{i}") for i in range(WIDTH)]
    wf.add("merge", {}, id="merge", after=parts)
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    began = time.perf_counter()
    run = await enqueuer.enqueue_workflow(wf)
    stored = time.perf_counter() - began
    await pool.drain(timeout=300)
    status = await run.wait(timeout=30)
    total = time.perf_counter() - began
    await pool.stop()
    assert status.status == "succeeded"
    assert seen == [WIDTH]
    assert status.nodes["merge"].result == sum(range(WIDTH))
    await assert_invariants(redis, namespace, drained=True)
    print(f"\n10,000-way fan-in: stored in {stored:.2f}s, done in {total:.1f}s")
