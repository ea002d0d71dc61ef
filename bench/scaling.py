#!/usr/bin/env python3
"""How errands scales with worker processes on one Redis (see docs/scaling.md).

    .venv/bin/python bench/scaling.py                      # 1, 2, 4 processes, 3 runs each
    .venv/bin/python bench/scaling.py --processes 1,2,4,8 --runs 5 --jobs 40000

For every process count P and workload: a private redis-server (loopback, no persistence) gets
N jobs pre-enqueued on a paused job name; P worker processes (``WorkerPool``, concurrency 32,
uvloop, logging at WARNING) start and register; then the job name is unpaused and the clock
runs until the namespace's ``processed`` counter reaches N. Figures: jobs/s = N / that time
(median of the runs), and the CPU the Redis server and the worker processes (together) used
meanwhile (100 % = one core busy).

Workloads: ``noop`` (a handler that returns at once: pure framework + Redis cost) and
``sleep10ms`` (``await asyncio.sleep(0.01)``: I/O-bound handlers; one process tops out at
concurrency / 10 ms = 3,200 jobs/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path
from subprocess import DEVNULL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from redis.asyncio import Redis  # noqa: E402

from errands import Client, Enqueuer, Job, WorkerPool  # noqa: E402
from errands.store.devserver import RedisServer  # noqa: E402
from errands.store.keys import Keys  # noqa: E402

CONCURRENCY = 32
WORKLOADS = {"noop": 20_000, "sleep10ms": 10_000}


# -- worker process ------------------------------------------------------------------------------
def worker(url: str, namespace: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    pool = WorkerPool.from_url(url, namespace=namespace, concurrency=CONCURRENCY)

    @pool.job("noop")
    async def noop(job: Job) -> None:
        return None

    @pool.job("sleep10ms")
    async def sleep10ms(job: Job) -> None:
        await asyncio.sleep(0.01)

    pool.run()  # until SIGTERM; uvloop when installed


# -- one measurement -----------------------------------------------------------------------------
async def redis_cpu(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (Linux /proc; 0 elsewhere)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


async def measure(url: str, processes: int, workload: str, jobs: int) -> dict[str, float]:
    namespace = "scale-" + uuid.uuid4().hex[:8]
    keys = Keys(namespace)
    redis = Redis.from_url(url)
    client = Client(redis, namespace=namespace)
    enqueuer = Enqueuer(redis, namespace=namespace)
    await client.pause(workload)
    for start in range(0, jobs, 5000):
        await enqueuer.enqueue_many(
            [(workload, {"i": i}) for i in range(start, min(jobs, start + 5000))]
        )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", url, namespace, env=env, stdin=DEVNULL
        )
        for _ in range(processes)
    ]
    try:
        deadline = time.monotonic() + 60
        while await redis.zcard(keys.pools) < processes or await redis.scard(keys.idle) < processes:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            await asyncio.sleep(0.05)
        cpu0 = await redis_cpu(redis)
        pids = [p.pid for p in procs]
        workers0 = cpu_seconds(pids)
        t0 = time.perf_counter()
        await client.unpause(workload)
        while int(await redis.hget(keys.stats, "processed") or 0) < jobs:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
        cpu = await redis_cpu(redis) - cpu0
        workers_cpu = cpu_seconds(pids) - workers0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                async with asyncio.timeout(30):
                    await p.wait()
            except TimeoutError:
                p.kill()
                await p.wait()
        await redis.aclose()
    return {
        "jobs_per_s": jobs / elapsed,
        "redis_cpu_pct": 100 * cpu / elapsed,
        "workers_cpu_pct": 100 * workers_cpu / elapsed,
    }


async def main(args: argparse.Namespace) -> dict[str, dict[int, dict[str, object]]]:
    counts = [int(p) for p in args.processes.split(",")]
    workloads = args.workloads.split(",")
    results: dict[str, dict[int, dict[str, object]]] = {w: {} for w in workloads}
    with RedisServer() as server:
        version = await _version(server.url)
        for workload in workloads:
            jobs = args.jobs or WORKLOADS[workload]
            for p in counts:
                runs = [await measure(server.url, p, workload, jobs) for _ in range(args.runs)]
                rates = [r["jobs_per_s"] for r in runs]
                cpu = [r["redis_cpu_pct"] for r in runs]
                wcpu = [r["workers_cpu_pct"] for r in runs]
                results[workload][p] = {
                    "jobs": jobs,
                    "jobs_per_s": statistics.median(rates),
                    "runs": [round(r) for r in rates],
                    "redis_cpu_pct": statistics.median(cpu),
                    "workers_cpu_pct": statistics.median(wcpu),
                }
                print(
                    f"{workload:>10} {p} process(es): {statistics.median(rates):8.0f} jobs/s "
                    f"(runs {', '.join(f'{r:.0f}' for r in rates)}), "
                    f"Redis CPU {statistics.median(cpu):.0f}%, "
                    f"workers CPU {statistics.median(wcpu):.0f}%",
                    file=sys.stderr,
                    flush=True,
                )
    machine = f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    print(f"\n{machine}; Redis {version}; Python {platform.python_version()}\n")
    print("| workload | processes | jobs/s (median) | runs | Redis CPU | workers CPU |")
    print("|---|---:|---:|---|---:|---:|")
    for workload, rows in results.items():
        for p, row in rows.items():
            runs = ", ".join(str(r) for r in row["runs"])  # type: ignore[attr-defined]
            print(
                f"| {workload} | {p} | {row['jobs_per_s']:,.0f} | {runs} | "
                f"{row['redis_cpu_pct']:.0f} % | {row['workers_cpu_pct']:.0f} % |"
            )
    return results


async def _version(url: str) -> str:
    redis = Redis.from_url(url)
    try:
        return str((await redis.info("server"))["redis_version"])
    finally:
        await redis.aclose()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--workloads", default="noop,sleep10ms")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=0, help="jobs per run (default per workload)")
    parser.add_argument("--out", default="", help="also write the figures as JSON here")
    options = parser.parse_args()
    figures = asyncio.run(main(options))
    if options.out:
        Path(options.out).write_text(json.dumps(figures, indent=2))
