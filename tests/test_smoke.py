from __future__ import annotations

import asyncio

from errands import Enqueuer, Job, WorkerPool


async def test_enqueue_and_process(redis_url: str, namespace: str) -> None:
    done: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4)

    @pool.job("hello")
    async def hello(job: Job) -> None:
        done.append(job.args["who"])

    enqueuer = Enqueuer.from_url(redis_url, namespace=namespace)
    async with pool:
        for i in range(10):
            await enqueuer.enqueue("hello", {"who": str(i)})
        async with asyncio.timeout(5):
            while len(done) < 10:
                await asyncio.sleep(0.01)
    await enqueuer.aclose()
    assert sorted(done) == [str(i) for i in range(10)]
