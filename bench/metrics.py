"""Cost of the activity counters (errands/store/metrics.py) that every pool keeps for the
dashboard's Activity page: the in-memory update per job start and end (on the hot path), and
one flush of a pool's 5 s of counts (one pipeline of HINCRBY + EXPIRE) against a private
redis-server. Prints one JSON object.

    PYTHONPATH=src:. .venv/bin/python bench/metrics.py [--jobs 100000] [--names 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.metrics import Counters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PrivateRedis


def hot_path(jobs: int, names: int) -> float:
    """Nanoseconds per job for one started() and one ended() call (the loop's own cost
    measured apart and taken off)."""
    counters = Counters()
    start = 1_767_225_600.0
    job_names = [f"job-{i % names}" for i in range(names)]
    began = time.perf_counter()
    for i in range(jobs):
        at = start + i * 0.001
        counters.started(job_names[i % names], 0.002, at)
        counters.ended("done", at)
    spent = time.perf_counter() - began
    began = time.perf_counter()
    for i in range(jobs):
        at = start + i * 0.001
        _ = job_names[i % names], at
    return (spent - (time.perf_counter() - began)) / jobs * 1e9


async def flush(url: str, names: int, repeats: int) -> list[float]:
    """Milliseconds per flush of 5 s of counts of ``names`` job names (2 buckets)."""
    redis = Redis.from_url(url)
    keys = Keys("bench")
    times = []
    for r in range(repeats):
        counters = Counters()
        for i in range(names * 50):
            counters.started(f"job-{i % names}", 0.002, 1_767_225_600.0 + r * 5)
            counters.ended("done", 1_767_225_600.0 + r * 5)
        began = time.perf_counter()
        await counters.flush(redis, keys)
        times.append((time.perf_counter() - began) * 1000)
    await redis.aclose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--names", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    hot = [hot_path(args.jobs, args.names) for _ in range(3)]
    with PrivateRedis() as server:
        flushes = asyncio.run(flush(server.url, args.names, args.repeats))
    print(json.dumps({
        "hot_path_ns_per_job": round(statistics.median(hot)),
        "flush_ms_median": round(statistics.median(flushes), 3),
        "flush_ms_p90": round(sorted(flushes)[int(len(flushes) * 0.9)], 3),
        "names": args.names,
        "fields_per_flush": 2 * (1 + 2 * args.names),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
