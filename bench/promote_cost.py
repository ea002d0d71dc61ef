"""What one promote.lua call costs per job it moves: Redis commands (INFO commandstats, the
script calls' own left out) and the script's time (INFO commandstats' evalsha usec), on a
private Redis server. Jobs are enqueued with a delay (a quarter with a priority, ``--partitioned``
of them with a partition), then promoted with ``now`` past every due time, ``--batch`` per set
per call (the Requeuer's default 1,000), as a pool's requeuer does.

    python bench/promote_cost.py [--jobs 20000] [--batch 1000] [--partitioned 0.1] [--names 1]

ERRANDS_SRC names the errands sources to measure (default: this repository's src/), so that a
build of another commit can be measured with this same script.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("ERRANDS_SRC", str(ROOT / "src")))

from redis.asyncio import Redis  # noqa: E402

from errands import Enqueuer  # noqa: E402
from errands.store.devserver import RedisServer  # noqa: E402
from errands.store.keys import Keys  # noqa: E402
from errands.store.scripts import Scripts  # noqa: E402


async def commands(redis: Redis) -> tuple[int, int]:
    """(commands Redis ran but INFO's and the script calls', usec of the script calls)."""
    stats = await redis.info("commandstats")
    skip = ("cmdstat_info", "cmdstat_evalsha", "cmdstat_eval", "cmdstat_config")
    usec = sum(int(stats[k]["usec"]) for k in ("cmdstat_evalsha", "cmdstat_eval") if k in stats)
    return sum(int(v["calls"]) for k, v in stats.items() if k not in skip), usec


async def run(url: str, jobs: int, batch: int, partitioned: float, names: int) -> None:
    redis = Redis.from_url(url)
    await redis.flushall()
    keys = Keys("b" + uuid.uuid4().hex[:10])
    scripts = Scripts(redis, keys)
    every = round(1 / partitioned) if partitioned else 0
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enq:
        for start in range(0, jobs, 5000):
            items = []
            for i in range(start, min(jobs, start + 5000)):
                options: dict[str, object] = {"delay": 1}
                if i % 4 == 0:
                    options["priority"] = 5
                if every and i % every == 0:
                    options["partition"] = f"p{i % 100}"
                items.append((f"job{i % names}", {}, options))
            await enq.enqueue_many(items)  # type: ignore[arg-type]
    later = (int((await redis.time())[0]) + 3600) * 1000
    all_names = [f"job{i}" for i in range(names)]
    await scripts.promote(all_names, 0, 1)  # loaded, nothing due
    await redis.config_resetstat()
    calls = moved = 0
    while True:
        got, _earliest = await scripts.promote(all_names, later, batch)
        calls += 1
        moved += got
        if got < batch:
            break
    ran, usec = await commands(redis)
    print(
        f"jobs {jobs} batch {batch} names {names} partitioned {partitioned}: moved {moved} in "
        f"{calls} calls; {ran} commands, {ran / moved:.2f} per job; script time "
        f"{usec / moved:.2f} us per job, {usec / calls / 1000:.1f} ms per call"
    )
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--partitioned", type=float, default=0.0)
    parser.add_argument("--names", type=int, default=1)
    args = parser.parse_args()
    with RedisServer() as server:
        asyncio.run(run(server.url, args.jobs, args.batch, args.partitioned, args.names))


if __name__ == "__main__":
    main()
