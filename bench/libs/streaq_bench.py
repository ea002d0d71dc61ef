"""streaq workloads for bench/run.py (run with bench/.venvs/streaq/bin/python).

Same CLI/JSON-line protocol as errands_bench.py. Bulk = Worker.enqueue_many (one pipeline).
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import time

import anyio
import uvloop
from streaq import Worker

STATE = {"n": 0, "done": 0, "first": None, "last": None, "lat": []}
DONE = asyncio.Event()


def _started() -> None:
    if STATE["first"] is None:
        STATE["first"] = time.perf_counter()


def _finished() -> None:
    STATE["done"] += 1
    if STATE["done"] == STATE["n"]:
        STATE["last"] = time.perf_counter()
        DONE.set()


async def noop(i: int) -> None:
    _started()
    _finished()


async def sleep(i: int) -> None:
    _started()
    await asyncio.sleep(0.01)
    _finished()


async def stamp(t: float) -> None:
    STATE["lat"].append((time.time() - t) * 1000)
    _started()
    _finished()


def make_worker(a: argparse.Namespace):  # -> (Worker, registered task)
    w = Worker(redis_url=a.url, queue_name=a.queue, concurrency=a.concurrency)
    fn = {"noop": noop, "sleep": sleep, "stamp": stamp}[a.job]
    return w, w.task(name=a.job)(fn)


def job_arg(kind: str, i: int) -> float:
    return time.time() if kind == "stamp" else i


async def enqueue(a: argparse.Namespace) -> None:
    w, task = make_worker(a)
    async with w:
        for i in range(a.warmup):
            await task.enqueue(job_arg(a.job, i))
        t0 = time.perf_counter()
        if a.mode in ("serial", "paced"):
            for i in range(a.n):
                await task.enqueue(job_arg(a.job, i))
                if a.mode == "paced":
                    await asyncio.sleep(a.pause)
        elif a.mode == "gather":
            for s in range(0, a.n, a.window):
                await asyncio.gather(
                    *(task.enqueue(job_arg(a.job, i)) for i in range(s, min(s + a.window, a.n)))
                )
        else:  # bulk
            for s in range(0, a.n, a.batch):
                await w.enqueue_many(
                    [task.enqueue(job_arg(a.job, i)) for i in range(s, min(s + a.batch, a.n))]
                )
        secs = time.perf_counter() - t0
    print(json.dumps({"n": a.n, "seconds": secs}), flush=True)


async def worker(a: argparse.Namespace) -> None:
    STATE["n"] = a.n
    w, _ = make_worker(a)
    async with anyio.create_task_group() as tg:
        await tg.start(w.run_async)
        print(json.dumps({"ready": True}), flush=True)
        await DONE.wait()
        print(
            json.dumps(
                {
                    "n": a.n,
                    "first_start": STATE["first"],
                    "last_done": STATE["last"],
                    "latencies_ms": STATE["lat"],
                }
            ),
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGTERM)  # streaq's own graceful shutdown path


def version() -> None:
    import streaq

    print(json.dumps({"version": streaq.__version__}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["enqueue", "worker", "version"])
    p.add_argument("--url", required=True)  # the harness's private server
    p.add_argument("--queue", default="bench")
    p.add_argument("--job", choices=["noop", "sleep", "stamp"], default="noop")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--mode", choices=["serial", "gather", "bulk", "paced"], default="serial")
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--pause", type=float, default=0.005)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=32)
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if a.cmd == "version":
        version()
    else:
        uvloop.run(enqueue(a) if a.cmd == "enqueue" else worker(a))


if __name__ == "__main__":
    main()
