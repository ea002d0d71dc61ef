"""BullMQ for Python workloads for bench/run.py (run with bench/.venvs/bullmq/bin/python).

Same CLI/JSON-line protocol as errands_bench.py (shared parts in _common.py).
Bulk = Queue.addBulk (one pipelined transaction).
"""

import argparse
import asyncio

import _common as c
import uvloop
from bullmq import Queue, Worker


async def process(job, token) -> None:
    kind = job.name
    if kind == "noop":
        c.noop_job()
    elif kind == "sleep":
        await c.sleep_job()
    elif kind == "io":
        await c.io_job()
    else:
        c.stamp_job(job.data["t"])


async def enqueue(a: argparse.Namespace) -> None:
    queue = Queue(a.queue, {"connection": a.url})
    secs = await c.timed_enqueue(
        a,
        lambda i: queue.add(a.job, c.job_kwargs(a.job, i)),
        lambda ids: queue.addBulk([{"name": a.job, "data": c.job_kwargs(a.job, i)} for i in ids]),
    )
    await queue.close()
    c.emit_enqueued(a, secs)


async def worker(a: argparse.Namespace) -> None:
    w = Worker(a.queue, process, {"connection": a.url, "concurrency": a.concurrency})
    c.emit_ready()
    await c.wait_done()
    await asyncio.wait_for(w.close(), 10)


if __name__ == "__main__":
    c.main(enqueue, worker, uvloop.run, version=lambda: c.dist_version("bullmq"))
