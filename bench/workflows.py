"""Workflow release latency: from the moment a member's last dependency returned (its
acknowledgement, which releases the member in the same script, comes after) to the start of
the member's handler, on an idle pool. One process: a pool (concurrency 32) and the enqueuer
on one event loop, against a private redis-server; runs are enqueued one at a time, each
after the previous one finished, 5 ms apart.

    python bench/workflows.py                 # chains a -> b and fan-ins of 10 -> merge
    python bench/workflows.py --runs 300 --width 1,10,100
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from errands import Enqueuer, Job, WorkerPool, Workflow
from errands.store.devserver import RedisServer


async def measure(url: str, runs: int, width: int) -> list[float]:
    pool = WorkerPool.from_url(url, namespace=f"bench{width}", concurrency=32)
    ended: dict[str, float] = {}
    gaps: list[float] = []

    @pool.job("dep")
    async def dep(job: Job) -> None:
        assert job.workflow_id is not None
        ended[job.workflow_id] = max(ended.get(job.workflow_id, 0.0), time.perf_counter())

    @pool.job("after")
    async def after(job: Job) -> None:
        assert job.workflow_id is not None
        gaps.append(time.perf_counter() - ended[job.workflow_id])

    async with pool, Enqueuer.from_url(url, namespace=f"bench{width}", strict=None) as enqueuer:
        await asyncio.sleep(1.0)  # the pool idle, waiting for work
        for i in range(runs):
            wf = Workflow()
            deps = [wf.add("dep", {}, id=f"d{j}") for j in range(width)]
            wf.add("after", {}, id="after", after=deps)
            await enqueuer.enqueue_workflow(wf)
            while len(gaps) <= i:
                await asyncio.sleep(0.0005)
            await asyncio.sleep(0.005)
    return gaps[10:]  # the first ones warm the connections up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--width", default="1,10", help="dependencies per member, comma-separated")
    args = parser.parse_args()
    with RedisServer() as server:
        for width in (int(w) for w in args.width.split(",")):
            gaps = sorted(g * 1000 for g in asyncio.run(measure(server.url, args.runs, width)))
            p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
            print(
                f"{width:>4} dependencies: release latency p50 {statistics.median(gaps):.2f} ms, "
                f"p99 {p99:.2f} ms ({len(gaps)} runs)"
            )


if __name__ == "__main__":
    main()
