"""errands workloads for bench/run.py (run with the project's .venv python, src/ on PYTHONPATH).

  enqueue --url U --queue Q --job noop|sleep|stamp --n N --mode serial|gather|bulk|paced
  worker  --url U --queue Q --job noop|sleep|stamp --n N --concurrency 32
Prints JSON lines on stdout; see bench/README.md for the protocol and _common.py for the shared
CLI, counters and enqueue loop. Bulk = Enqueuer.enqueue_many.
"""

import argparse

import _common as c
import uvloop

from errands import Enqueuer, Job, WorkerPool


async def noop(job: Job) -> None:
    c.noop_job()


async def sleep(job: Job) -> None:
    await c.sleep_job()


async def stamp(job: Job) -> None:
    c.stamp_job(job.args["t"])


async def io(job: Job) -> None:
    await c.io_job()


async def enqueue(a: argparse.Namespace) -> None:
    enq = Enqueuer.from_url(a.url, namespace=a.queue)
    secs = await c.timed_enqueue(
        a,
        lambda i: enq.enqueue(a.job, c.job_kwargs(a.job, i)),
        lambda ids: enq.enqueue_many([(a.job, c.job_kwargs(a.job, i)) for i in ids]),
    )
    await enq.aclose()
    c.emit_enqueued(a, secs)


async def worker(a: argparse.Namespace) -> None:
    pool = WorkerPool.from_url(a.url, namespace=a.queue, concurrency=a.concurrency)
    pool.job(a.job)({"noop": noop, "sleep": sleep, "stamp": stamp, "io": io}[a.job])
    async with pool:
        c.emit_ready()
        await c.wait_done()


if __name__ == "__main__":
    c.main(enqueue, worker, uvloop.run, version=lambda: c.dist_version("errands", default="src"))
