"""An application's own task factory keeps working under a pool: one written the older way,
`factory(loop, coro)` with no `context` keyword (aiotask-context and the like), is called for every
job task, and the pool runs its jobs."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool


async def test_a_task_factory_without_context_keyword_runs_the_jobs(
    redis: Redis, namespace: str
) -> None:
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        made.append(getattr(coro, "__qualname__", ""))
        return asyncio.Task(coro, loop=loop)

    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=0.5)
    done: list[int] = []

    @pool.job("work")
    async def work(job: Job, n: int) -> None:
        done.append(n)

    await Enqueuer(redis, namespace=namespace).enqueue_many([("work", {"n": i}) for i in range(8)])
    previous = loop.get_task_factory()
    loop.set_task_factory(factory)
    try:
        async with pool:
            await pool.drain(timeout=5)
    finally:
        loop.set_task_factory(previous)
    assert sorted(done) == list(range(8))
    assert any(name.endswith("_run") for name in made)
