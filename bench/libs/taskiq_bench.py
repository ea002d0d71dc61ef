"""taskiq + taskiq-redis workloads for bench/run.py (run with bench/.venvs/taskiq/bin/python).

Same CLI/JSON-line protocol as errands_bench.py (shared parts in _common.py).
Broker: RedisStreamBroker (acks, XREADGROUP). taskiq has no bulk enqueue API.
"""

import argparse
import asyncio

import _common as c
import uvloop
from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker


def make_broker(a: argparse.Namespace):  # -> (broker, registered task)
    broker = RedisStreamBroker(a.url, queue_name=a.queue)
    fn = c.PLAIN_HANDLERS[a.job]
    return broker, broker.register_task(fn, task_name=a.job)


async def enqueue(a: argparse.Namespace) -> None:
    broker, task = make_broker(a)
    # startup() also creates the consumer group; it starts at "$", so it must
    # exist before jobs are enqueued ahead of the worker.
    await broker.startup()
    secs = await c.timed_enqueue(a, lambda i: task.kiq(c.job_value(a.job, i)))
    await broker.shutdown()
    c.emit_enqueued(a, secs)


async def worker(a: argparse.Namespace) -> None:
    broker, _ = make_broker(a)
    broker.is_worker_process = True
    await broker.startup()
    task = asyncio.create_task(run_receiver_task(broker, max_async_tasks=a.concurrency))
    c.emit_ready()
    await c.wait_done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.wait_for(broker.shutdown(), 10)


if __name__ == "__main__":
    c.main(enqueue, worker, uvloop.run, version=lambda: c.dist_version("taskiq", "taskiq-redis"))
