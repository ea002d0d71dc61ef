"""arq workloads for bench/run.py (run with bench/.venvs/arq/bin/python).

Same CLI/JSON-line protocol as errands_bench.py (shared parts in _common.py); extra worker
option --poll-delay. arq has no bulk enqueue API.
"""

import argparse
import asyncio

import _common as c
import uvloop
from arq import Worker, create_pool, func
from arq.connections import RedisSettings


async def noop(ctx: dict, i: int) -> None:
    c.noop_job()


async def sleep(ctx: dict, i: int) -> None:
    await c.sleep_job()


async def stamp(ctx: dict, t: float) -> None:
    c.stamp_job(t)


async def io(ctx: dict, i: int) -> None:
    await c.io_job()


async def enqueue(a: argparse.Namespace) -> None:
    redis = await create_pool(RedisSettings.from_dsn(a.url), default_queue_name=a.queue)
    secs = await c.timed_enqueue(a, lambda i: redis.enqueue_job(a.job, c.job_value(a.job, i)))
    await redis.aclose()
    c.emit_enqueued(a, secs)


async def worker(a: argparse.Namespace) -> None:
    fn = {"noop": noop, "sleep": sleep, "stamp": stamp, "io": io}[a.job]
    w = Worker(
        functions=[func(fn, name=a.job)],
        redis_settings=RedisSettings.from_dsn(a.url),
        queue_name=a.queue,
        max_jobs=a.concurrency,
        poll_delay=a.poll_delay,
        handle_signals=False,
    )
    task = asyncio.create_task(w.async_run())
    c.emit_ready()
    await c.wait_done()
    await asyncio.wait_for(w.close(), 10)  # cancels main task and job tasks
    await asyncio.gather(task, return_exceptions=True)


if __name__ == "__main__":
    c.main(
        enqueue,
        worker,
        uvloop.run,
        version=lambda: c.dist_version("arq"),
        options=[(("--poll-delay",), {"type": float, "default": 0.5})],  # arq's default
    )
