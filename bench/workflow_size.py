"""What storing one workflow run costs Redis: the time of the one wf_enqueue.lua call
(``INFO commandstats``, the script's own time: other clients wait that long), by shape, at
the largest size a run may have (``MAX_SIZE`` members, dependency edges and callbacks in all).
Against a private redis-server; the median of ``--reps`` runs of each shape.

    python bench/workflow_size.py                    # 50,000 (MAX_SIZE)
    python bench/workflow_size.py --units 20000 --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from errands import Enqueuer, Workflow
from errands.store.devserver import RedisServer
from errands.workflows.graph import MAX_SIZE


def build(shape: str, units: int, run: str) -> Workflow:
    """``units`` members and edges in all (at most): every member ready at once, a fan-in of
    units/2 members into one, or a chain of units/2 members."""
    wf = Workflow("size", id=run)
    if shape == "ready":
        for i in range(units):
            wf.add("work", {"i": i}, id=f"p{i}")
    elif shape == "fan-in":
        parts = [wf.add("work", {"i": i}, id=f"p{i}") for i in range(units // 2 - 1)]
        wf.add("merge", {}, id="m", after=parts)
    else:
        prev = wf.add("work", {"i": 0}, id="p0")
        for i in range(1, units // 2):
            prev = wf.add("work", {"i": i}, id=f"p{i}", after=[prev])
    return wf


async def measure(url: str, units: int, reps: int) -> None:
    async with Enqueuer.from_url(url, namespace="benchsize", strict=None) as enqueuer:
        redis = enqueuer.redis
        await enqueuer.enqueue_workflow(build("ready", 1, "warm"))  # (the script loaded)
        for shape in ("ready", "fan-in", "chain"):
            ms = []
            for rep in range(reps):
                wf = build(shape, units, f"{shape}{rep}")
                await redis.config_resetstat()
                await enqueuer.enqueue_workflow(wf)
                stats = (await redis.info("commandstats"))["cmdstat_evalsha"]
                ms.append(stats["usec"] / stats["calls"] / 1000)
            n, e = len(wf.nodes), len(wf.edges())
            print(
                f"{shape:>6}: {n} members + {e} edges: one call of "
                f"{statistics.median(ms):.0f} ms (median; {', '.join(f'{m:.0f}' for m in ms)})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=MAX_SIZE)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with RedisServer() as server:
        asyncio.run(measure(server.url, args.units, args.reps))


if __name__ == "__main__":
    main()
