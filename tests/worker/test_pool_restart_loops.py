"""One WorkerPool object started, stopped and started again, in the same event loop and in new
ones (asyncio.run twice): the worker keeps the running loop it takes at its first job instead of
asking asyncio a job (a system call on Python 3.11), so each start must build a worker that holds
the loop running it, never a previous run's."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool


def test_a_pool_restarted_in_new_event_loops_runs_every_job(redis_url: str) -> None:
    namespace = f"restart-{uuid.uuid4().hex[:8]}"
    pool = WorkerPool(url=redis_url, namespace=namespace, concurrency=2, shutdown_grace=0.5)
    done: list[int] = []

    @pool.job("work")
    async def work(job: Job, n: int) -> None:
        await asyncio.sleep(0)
        done.append(n)

    async def run_once(k: int) -> None:
        redis = Redis.from_url(redis_url)
        async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
            await enq.enqueue_many([("work", {"n": k * 100 + i}) for i in range(10)])
        await pool.start()
        try:
            assert pool.worker is not None
            await pool.drain(timeout=10)
            assert pool.worker._job_loop is asyncio.get_running_loop()
            assert pool.worker.acker._add_loop is asyncio.get_running_loop()
        finally:
            await pool.stop()
            await redis.aclose()

    async def twice() -> None:
        await run_once(0)
        await run_once(1)

    asyncio.run(twice())
    asyncio.run(run_once(2))
    asyncio.run(run_once(3))
    assert sorted(done) == [k * 100 + i for k in range(4) for i in range(10)]
