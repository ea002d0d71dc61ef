"""saq workloads for bench/run.py (run with bench/.venvs/saq/bin/python).

Same CLI/JSON-line protocol as errands_bench.py. saq has no bulk enqueue API.
"""

import argparse
import asyncio
import json
import logging
import time

import uvloop
from saq import Queue, Worker

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


async def noop(ctx: dict, *, i: int) -> None:
    _started()
    _finished()


async def sleep(ctx: dict, *, i: int) -> None:
    _started()
    await asyncio.sleep(0.01)
    _finished()


async def stamp(ctx: dict, *, t: float) -> None:
    STATE["lat"].append((time.time() - t) * 1000)
    _started()
    _finished()


def job_kwargs(kind: str, i: int) -> dict:
    return {"t": time.time()} if kind == "stamp" else {"i": i}


async def enqueue(a: argparse.Namespace) -> None:
    queue = Queue.from_url(a.url, name=a.queue)
    await queue.connect()
    for i in range(a.warmup):
        await queue.enqueue(a.job, **job_kwargs(a.job, i))
    t0 = time.perf_counter()
    if a.mode in ("serial", "paced"):
        for i in range(a.n):
            await queue.enqueue(a.job, **job_kwargs(a.job, i))
            if a.mode == "paced":
                await asyncio.sleep(a.pause)
    elif a.mode == "gather":
        for s in range(0, a.n, a.window):
            await asyncio.gather(
                *(
                    queue.enqueue(a.job, **job_kwargs(a.job, i))
                    for i in range(s, min(s + a.window, a.n))
                )
            )
    else:
        raise SystemExit("saq has no bulk enqueue")
    secs = time.perf_counter() - t0
    await queue.disconnect()
    print(json.dumps({"n": a.n, "seconds": secs}), flush=True)


async def worker(a: argparse.Namespace) -> None:
    STATE["n"] = a.n
    fn = {"noop": noop, "sleep": sleep, "stamp": stamp}[a.job]
    queue = Queue.from_url(a.url, name=a.queue)
    await queue.connect()
    w = Worker(queue, functions=[(a.job, fn)], concurrency=a.concurrency)
    task = asyncio.create_task(w.start())
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
    await asyncio.wait_for(w.stop(), 10)
    await asyncio.gather(task, return_exceptions=True)
    await queue.disconnect()


def version() -> None:
    from importlib.metadata import version as v

    print(json.dumps({"version": v("saq")}), flush=True)


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
