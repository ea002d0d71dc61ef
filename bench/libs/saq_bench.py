"""saq workloads for bench/run.py (run with bench/.venvs/saq/bin/python).

Same CLI/JSON-line protocol as errands_bench.py (shared parts in _common.py).
saq has no bulk enqueue API.
"""

import argparse
import asyncio

import _common as c
import uvloop
from saq import Queue, Worker


async def noop(ctx: dict, *, i: int) -> None:
    c.noop_job()


async def sleep(ctx: dict, *, i: int) -> None:
    await c.sleep_job()


async def stamp(ctx: dict, *, t: float) -> None:
    c.stamp_job(t)


async def io(ctx: dict, *, i: int) -> None:
    await c.io_job()


async def enqueue(a: argparse.Namespace) -> None:
    queue = Queue.from_url(a.url, name=a.queue)
    await queue.connect()
    secs = await c.timed_enqueue(a, lambda i: queue.enqueue(a.job, **c.job_kwargs(a.job, i)))
    await queue.disconnect()
    c.emit_enqueued(a, secs)


async def worker(a: argparse.Namespace) -> None:
    fn = {"noop": noop, "sleep": sleep, "stamp": stamp, "io": io}[a.job]
    queue = Queue.from_url(a.url, name=a.queue)
    await queue.connect()
    w = Worker(queue, functions=[(a.job, fn)], concurrency=a.concurrency)
    task = asyncio.create_task(w.start())
    c.emit_ready()
    await c.wait_done()
    await asyncio.wait_for(w.stop(), 10)
    await asyncio.gather(task, return_exceptions=True)
    await queue.disconnect()


if __name__ == "__main__":
    c.main(enqueue, worker, uvloop.run, version=lambda: c.dist_version("saq"))
