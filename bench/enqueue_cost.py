"""What one-job enqueues cost in Redis: commands per ``await enqueuer.enqueue(...)`` (INFO
commandstats, the script call's own left out) and the Redis CPU of each script call (the
``usec`` of ``cmdstat_evalsha``, the commands it runs included: wall time, which a busy
machine's waits inflate; and the Redis process' CPU time per job, its I/O included), on a
private Redis server.
Jobs of one name, due now, no priority, unique key or partition: the common path.
``--idle`` keeps a pool registered idle on the name (each enqueue then wakes it: ZPOPMIN, TIME
and PUBLISH); ``--listen`` keeps an events() listener registered so that events are published.

    python bench/enqueue_cost.py [--jobs 5000] [--idle] [--listen] [--by-command]

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

from cmdstats import stats  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from errands import Enqueuer  # noqa: E402
from errands.store.devserver import RedisServer  # noqa: E402
from errands.store.keys import Keys  # noqa: E402

FAR = 10**15  # an idle pool's deadline far ahead (stored negated, lib/wake.lua)


async def cpu(redis: Redis) -> float:
    """The Redis process' CPU time so far, in us (user and system: the script calls' work and
    the connections' I/O), which a busy machine's waits do not count as commandstats' usec do."""
    got = await redis.info("cpu")
    return (float(got["used_cpu_user"]) + float(got["used_cpu_sys"])) * 1e6


async def run(url: str, jobs: int, idle: bool, listen: bool, by_command: bool) -> None:
    redis = Redis.from_url(url)
    await redis.flushall()
    keys = Keys("b" + uuid.uuid4().hex[:10])
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enq:
        await enq.enqueue("noop")  # loads the script, registers the name
        if listen:
            await redis.hset(keys.listening, "*", "9999999999999")
        before, calls0, usec0 = await stats(redis)
        cpu0 = await cpu(redis)
        for i in range(jobs):
            if idle:
                await redis.zadd(keys.idle_for("noop"), {"bench-pool": -FAR})
            await enq.enqueue("noop", {"i": i})
        spent = await cpu(redis) - cpu0
        after, calls, usec = await stats(redis)
        ran = {name: n - before.get(name, 0) for name, n in after.items()}
        ran["zadd"] -= jobs if idle else 0  # the bench's own registrations of the idle pool
        calls, usec = calls - calls0, usec - usec0
    await redis.aclose()
    total = sum(ran.values())
    print(f"jobs {jobs} idle pool {idle} listening {listen}")
    print(
        f"enqueue: {total / jobs:.2f} commands per job in {calls / jobs:.2f} script calls, "
        f"{usec / max(calls, 1):.1f} us per script call (commandstats), "
        f"{spent / jobs:.1f} us of Redis process CPU per job"
    )
    if by_command:
        for name, n in sorted(ran.items(), key=lambda kv: -kv[1]):
            if n:
                print(f"    {name:<16} {n:>8} {n / jobs:6.2f} per job")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--idle", action="store_true")
    parser.add_argument("--listen", action="store_true")
    parser.add_argument("--by-command", action="store_true")
    args = parser.parse_args()
    with RedisServer() as server:
        asyncio.run(run(server.url, args.jobs, args.idle, args.listen, args.by_command))


if __name__ == "__main__":
    main()
