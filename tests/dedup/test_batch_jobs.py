"""Dedup on the jobs of a batch handler: each job holds its own key as a plain job does. A job
the batch fails and retries keeps its until-finished key while it waits; a rerun_latest
duplicate enqueued meanwhile waits for it and runs once, after its last run; a job that dies
(dead set) hands its key to its rerun."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from errands import BatchOutcome, Dedup, Enqueuer, FixedBackoff, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

from .conftest import until


async def test_batch_jobs_hold_their_keys_through_retries_and_death(
    redis_url: str, namespace: str, redis: Redis, enqueuer: Enqueuer
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=2)
    runs: list[tuple[str, int, int]] = []  # (key, v, attempt)
    gate = asyncio.Event()

    @pool.batch_job("bulk", max_size=3, max_wait=0.05, max_fails=2, backoff=FixedBackoff(0.3))
    async def bulk(jobs: list[Job]) -> BatchOutcome:
        failed: dict[str, BaseException] = {}
        for job in jobs:
            runs.append((job.args["k"], job.args["v"], job.attempt))
            if job.args["k"] == "dies" and job.args["v"] == 1:
                failed[job.id] = ValueError("always")
            if job.args["k"] == "flaky" and job.args["v"] == 1 and job.attempt == 1:
                failed[job.id] = ValueError("once")
        await gate.wait()
        return BatchOutcome(failed=failed)

    def dedup(k: str) -> Dedup:
        return Dedup(k, until="finished", rerun_latest=True)

    firsts: dict[str, str] = {}
    for k in ("dies", "flaky", "fine"):
        first = await enqueuer.enqueue("bulk", {"k": k, "v": 1}, dedup=dedup(k))
        assert first is not None and first.dedup is not None and first.dedup.enqueued
        firsts[k] = first.id
    async with pool:  # (the three are fetched as one batch)
        await until(lambda: len(runs) == 3)
        for k in ("dies", "flaky", "fine"):  # while the batch runs: reruns, last args win
            for v in (2, 3):
                job = await enqueuer.enqueue("bulk", {"k": k, "v": v}, dedup=dedup(k))
                assert job is not None and job.dedup is not None
                assert job.dedup.status == "rerun_queued"
                assert job.dedup.holder == firsts[k]
        await assert_invariants(redis, namespace)
        gate.set()
        await until(lambda: len(runs) == 8, timeout=20)  # (drain does not wait for retries)
        await pool.drain(timeout=20)
    by_key = {k: [(v, a) for kk, v, a in runs if kk == k] for k in ("dies", "flaky", "fine")}
    assert by_key == {"dies": [(1, 1), (1, 2), (3, 1)], "flaky": [(1, 1), (1, 2), (3, 1)],
                      "fine": [(1, 1), (3, 1)]}  # fmt: skip
    keys = Keys(namespace)
    assert [m.decode() for m in await redis.zrange(keys.dead, 0, -1)] == [firsts["dies"]]
    assert await redis.hlen(keys.dedup) == 0
    await assert_invariants(redis, namespace, drained=True, stopped=True)
