"""arq workloads for bench/run.py (run with bench/.venvs/arq/bin/python).

Same CLI/JSON-line protocol as errands_bench.py; extra worker option --poll-delay.
arq has no bulk enqueue API.
"""

import argparse
import asyncio
import json
import logging
import time

import uvloop
from arq import Worker, create_pool, func
from arq.connections import RedisSettings

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


async def noop(ctx: dict, i: int) -> None:
    _started()
    _finished()


async def sleep(ctx: dict, i: int) -> None:
    _started()
    await asyncio.sleep(0.01)
    _finished()


async def stamp(ctx: dict, t: float) -> None:
    STATE["lat"].append((time.time() - t) * 1000)
    _started()
    _finished()


def job_arg(kind: str, i: int) -> float:
    return time.time() if kind == "stamp" else i


async def enqueue(a: argparse.Namespace) -> None:
    redis = await create_pool(RedisSettings.from_dsn(a.url), default_queue_name=a.queue)
    for i in range(a.warmup):
        await redis.enqueue_job(a.job, job_arg(a.job, i))
    t0 = time.perf_counter()
    if a.mode in ("serial", "paced"):
        for i in range(a.n):
            await redis.enqueue_job(a.job, job_arg(a.job, i))
            if a.mode == "paced":
                await asyncio.sleep(a.pause)
    elif a.mode == "gather":
        for s in range(0, a.n, a.window):
            await asyncio.gather(
                *(
                    redis.enqueue_job(a.job, job_arg(a.job, i))
                    for i in range(s, min(s + a.window, a.n))
                )
            )
    else:
        raise SystemExit("arq has no bulk enqueue")
    secs = time.perf_counter() - t0
    await redis.aclose()
    print(json.dumps({"n": a.n, "seconds": secs}), flush=True)


async def worker(a: argparse.Namespace) -> None:
    STATE["n"] = a.n
    fn = {"noop": noop, "sleep": sleep, "stamp": stamp}[a.job]
    w = Worker(
        functions=[func(fn, name=a.job)],
        redis_settings=RedisSettings.from_dsn(a.url),
        queue_name=a.queue,
        max_jobs=a.concurrency,
        poll_delay=a.poll_delay,
        handle_signals=False,
    )
    task = asyncio.create_task(w.async_run())
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
    await asyncio.wait_for(w.close(), 10)  # cancels main task and job tasks
    await asyncio.gather(task, return_exceptions=True)


def version() -> None:
    import arq

    print(json.dumps({"version": arq.VERSION}), flush=True)


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
    p.add_argument("--poll-delay", type=float, default=0.5)  # arq's default
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if a.cmd == "version":
        version()
    else:
        uvloop.run(enqueue(a) if a.cmd == "enqueue" else worker(a))


if __name__ == "__main__":
    main()
