"""What the worker's hot path costs in Redis commands: fetch.lua and ack.lua calls per job and
per call (INFO commandstats, the script calls' own left out), on a private Redis server. Jobs
are enqueued, then fetched ``--batch`` at a time and each batch acknowledged in one ack call,
as a worker pool does with short jobs (``--history`` records history as a pool does by default;
``--listen`` keeps an events() listener registered so that events are published;
``--partitions P`` spreads the jobs over P partitions, fetched with the limits spec ``--spec``,
``c=32`` by default: Concurrency(32, per_partition=True)). Also the script calls' own Redis time
(INFO commandstats' EVALSHA usec) per job.

    python bench/hotpath_cost.py [--jobs 20000] [--batch 100] [--history] [--listen] [--by-command]
        [--partitions 1000 [--spec c=32]]

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
from errands.store.scripts import Acked, Scripts  # noqa: E402


def show(
    label: str, ran: dict[str, int], jobs: int, calls: int, usec: int, by_command: bool
) -> None:
    total = sum(ran.values())
    print(
        f"{label}: {total} commands in {calls} calls for {jobs} jobs: "
        f"{total / jobs:.2f} per job, {total / calls:.1f} per call, {usec / jobs:.1f} us per job"
    )
    if by_command:
        for name, n in sorted(ran.items(), key=lambda kv: -kv[1]):
            print(f"    {name:<16} {n:>8} {n / jobs:6.2f} per job {n / calls:8.1f} per call")


async def run(
    url: str, jobs: int, batch: int, history: bool, listen: bool, by: bool, parts: int, spec: str
) -> None:
    redis = Redis.from_url(url)
    await redis.flushall()
    keys = Keys("b" + uuid.uuid4().hex[:10])
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enq:
        for start in range(0, jobs, 5000):
            await enq.enqueue_many(
                [
                    ("noop", {}, {"partition": f"p{i % parts}"} if parts else {})
                    for i in range(start, min(jobs, start + 5000))
                ]
            )
    specs = {"noop": spec} if parts else None
    if listen:
        await redis.hset(keys.listening, "*", "9999999999999")
    pool = "bench-pool"
    now = await scripts.heartbeat(pool, b"{}", 600_000, "register")
    fetch_ran: dict[str, int] = {}
    ack_ran: dict[str, int] = {}
    fetched = fetches = acks = 0
    usec = {"fetch": 0, "ack": 0}

    async def delta(
        into: dict[str, int], before: tuple[dict[str, int], int, int], what: str
    ) -> None:
        after = await stats(redis)
        for name, n in after[0].items():
            into[name] = into.get(name, 0) + n - before[0].get(name, 0)
        usec[what] += after[2] - before[2]

    await redis.config_resetstat()
    while True:
        before = await stats(redis)
        got = await scripts.fetch(pool, now, batch, [("noop", 0)], specs=specs)
        await delta(fetch_ran, before, "fetch")
        fetches += 1
        assert got is not None
        if not got:
            break
        fetched += len(got)
        done = [Acked(f.id, "noop", b"null", now, 86_400_000, 1, f.token) for f in got]
        before = await stats(redis)
        refused = await scripts.ack(pool, done, False, now, history)
        await delta(ack_ran, before, "ack")
        acks += 1
        assert not refused, refused
    print(f"jobs {jobs} batch {batch} history {history} listening {listen} partitions {parts}")
    show("fetch", fetch_ran, fetched, fetches, usec["fetch"], by)
    show("ack", ack_ran, fetched, acks, usec["ack"], by)
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--history", action="store_true")
    parser.add_argument("--listen", action="store_true")
    parser.add_argument("--by-command", action="store_true")
    parser.add_argument("--partitions", type=int, default=0)
    parser.add_argument("--spec", default="c=32")
    a = parser.parse_args()
    with RedisServer() as server:
        asyncio.run(
            run(
                server.url,
                a.jobs,
                a.batch,
                a.history,
                a.listen,
                a.by_command,
                a.partitions,
                a.spec,
            )
        )


if __name__ == "__main__":
    main()
