#!/usr/bin/env python3
"""What the 1-I/O workload's own round trip costs, without any job queue: 32 coroutines each
awaiting ``bench/libs/_common.py``'s pipelined ``INCR`` (the client every library's 1-I/O
handler uses) in a loop, on uvloop, against a private redis-server. Prints the client's CPU per
``INCR`` (user + system) and Redis' (INFO cpu), the least any library's worker and Redis pay for
a 1-I/O job beyond a no-op one. Runs alternate ``--runs`` times; the median is printed.

    .venv/bin/python bench/incr_cost.py [--n 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "libs"))

import _common  # noqa: E402
from run import PrivateRedis, resp  # noqa: E402


def redis_cpu(port: int) -> float:
    text = resp(port, "INFO", "cpu").decode()
    info = dict(line.split(":", 1) for line in text.split() if ":" in line)
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def measure(url: str, port: int, n: int) -> tuple[float, float]:
    """(client µs, Redis µs) of CPU per INCR."""
    _common._IO.url = url
    await _common._IO.incr()  # (connects)

    async def loop() -> None:
        for _ in range(n // 32):
            await _common._IO.incr()

    cpu0, redis0 = time.process_time(), redis_cpu(port)
    await asyncio.gather(*(loop() for _ in range(32)))
    cpu1, redis1 = time.process_time(), redis_cpu(port)
    done = n // 32 * 32
    return (cpu1 - cpu0) / done * 1e6, (redis1 - redis0) / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with PrivateRedis() as redis:
        rows = []
        for run in range(args.runs):
            _common._IO = _common._Pipelined()  # a fresh connection each run
            client, server = uvloop.run(measure(redis.url, redis.port, args.n))
            rows.append((client, server))
            print(f"run {run + 1}: client {client:.1f} µs, Redis {server:.1f} µs per INCR")
        client = statistics.median(r[0] for r in rows)
        server = statistics.median(r[1] for r in rows)
        print(f"median of {args.runs}: client {client:.1f} µs, Redis {server:.1f} µs per INCR")


if __name__ == "__main__":
    main()
