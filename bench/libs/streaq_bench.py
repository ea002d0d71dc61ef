"""streaq workloads for bench/run.py (run with bench/.venvs/streaq/bin/python).

Same CLI/JSON-line protocol as errands_bench.py (shared parts in _common.py).
Bulk = Worker.enqueue_many (one pipeline).
"""

import argparse
import os
import signal

import _common as c
import anyio
import uvloop
from streaq import Worker


def make_worker(a: argparse.Namespace):  # -> (Worker, registered task)
    w = Worker(redis_url=a.url, queue_name=a.queue, concurrency=a.concurrency)
    fn = c.PLAIN_HANDLERS[a.job]
    return w, w.task(name=a.job)(fn)


async def enqueue(a: argparse.Namespace) -> None:
    w, task = make_worker(a)
    async with w:
        secs = await c.timed_enqueue(
            a,
            lambda i: task.enqueue(c.job_value(a.job, i)),
            lambda ids: w.enqueue_many([task.enqueue(c.job_value(a.job, i)) for i in ids]),
        )
    c.emit_enqueued(a, secs)


async def worker(a: argparse.Namespace) -> None:
    w, _ = make_worker(a)
    async with anyio.create_task_group() as tg:
        await tg.start(w.run_async)
        c.emit_ready()
        await c.wait_done()
        os.kill(os.getpid(), signal.SIGTERM)  # streaq's own graceful shutdown path


if __name__ == "__main__":
    c.main(enqueue, worker, uvloop.run, version=lambda: c.dist_version("streaq"))
