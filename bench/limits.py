#!/usr/bin/env python3
"""What limits cost (see docs/limits.md): throughput with limits that do not bind next to the
same run without limits, and the fetch cost and memory of many partitions.

    .venv/bin/python bench/limits.py                       # everything, 3 runs each
    .venv/bin/python bench/limits.py --jobs 10000 --runs 1 --partitions 10000

On a private redis-server (loopback, no persistence):

1. **throughput**: N no-op jobs pre-enqueued on a paused job name, one pool (concurrency 32, in
   this process) starts, the name is unpaused, and the clock runs until the ``processed`` counter
   reaches N; for each variant: no limits; a type-wide ``Rate(10000/100ms)`` and
   ``Concurrency(1000)`` (far above the throughput: they never bind); the same jobs spread over
   1,000 partitions without limits (served in turn all the same) and with
   ``Concurrency(32, per_partition=True)`` (never reached either); and ``Concurrency(1000)``
   alone, which costs the scripts one HGET (before 17a7df7 any limit also stopped the pool from
   fetching ahead of its free slots: worker/lookahead.py). After a warm-up run, the variants take
   turns (A B C A B C ...); per variant the median of the runs of: jobs/s, the CPU time of this
   process (the pool) per job and Redis' CPU time per job (INFO cpu), and jobs/s as a share of
   the no-limits median and of the same jobs' median without limits (the partitioned one for the
   partitioned variants).
2. **partitions**: P partitions of one job each are enqueued; Redis ``used_memory`` per
   partition; then the time of a fetch script call (batch 32, straight through
   ``Scripts.fetch``, acking each batch) while they drain, and the Redis commands it ran
   (INFO commandstats), next to the same with 100 partitions; and the memory of every partition
   key once every job is done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from redis.asyncio import Redis  # noqa: E402

from errands import Client, Concurrency, Enqueuer, Job, Rate, WorkerPool  # noqa: E402
from errands.clock import to_ms  # noqa: E402
from errands.limits import compile_limits  # noqa: E402
from errands.store.devserver import RedisServer  # noqa: E402
from errands.store.keys import Keys  # noqa: E402
from errands.store.scripts import Acked, Scripts  # noqa: E402

VARIANTS = {
    "no limits": ([], False),
    "type-wide Rate + Concurrency, not binding": (
        # 10,000 per 100 ms: 100,000 a second, far above what one pool reaches (10,000 a second
        # did bind on a quiet machine: the pool ran 20,000 no-op jobs a second without limits)
        [Rate(10_000, per=timedelta(milliseconds=100)), Concurrency(1000)],
        False,
    ),
    "type-wide Concurrency(1000) alone, not binding": ([Concurrency(1000)], False),
    # partitions are served in turn with or without limits (docs/limits.md): this is the same
    # run as the next one without its limits, what that one's share is taken of
    "1,000 partitions, no limits": ([], True),
    "1,000 partitions, Concurrency(32) each, not binding": (
        [Concurrency(32, per_partition=True)],
        True,
    ),
}


async def redis_cpu(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def throughput(url: str, jobs: int, limits: list, partitioned: bool) -> dict[str, float]:
    namespace = "b" + uuid.uuid4().hex[:10]
    redis = Redis.from_url(url)
    client = Client(redis, namespace=namespace)
    await client.pause("noop")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for start in range(0, jobs, 5000):
            n = min(5000, jobs - start)
            if partitioned:
                items = [("noop", {}, {"partition": f"p{(start + i) % 1000}"}) for i in range(n)]
            else:
                items = [("noop", {}) for _ in range(n)]
            await enq.enqueue_many(items)  # type: ignore[arg-type]
    pool = WorkerPool.from_url(url, namespace=namespace, concurrency=32)

    @pool.job("noop", limits=limits)
    async def noop(job: Job) -> None:
        return None

    keys = Keys(namespace)
    async with pool:
        began, cpu, server = time.perf_counter(), time.process_time(), await redis_cpu(redis)
        await client.unpause("noop")
        while int(await redis.hget(keys.stats, "processed") or 0) < jobs:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - began
        cpu, server = time.process_time() - cpu, await redis_cpu(redis) - server
    await redis.aclose()
    return {
        "jobs_per_s": jobs / elapsed,
        "pool_cpu_us_per_job": cpu / jobs * 1e6,
        "redis_cpu_us_per_job": server / jobs * 1e6,
    }


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def script_commands(redis: Redis) -> int:
    """Commands Redis ran but INFO's and the script calls' own (those a script ran count)."""
    stats = await redis.info("commandstats")
    skip = ("cmdstat_info", "cmdstat_evalsha", "cmdstat_eval")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in skip)


async def partitions(url: str, count: int) -> dict[str, float]:
    redis = Redis.from_url(url)
    await redis.flushall()
    namespace = "p" + uuid.uuid4().hex[:10]
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("bench", b"{}", 3_600_000, mode="register")
    lease = 3_600_000  # (enqueuing 200,000 jobs takes longer than the default dead timeout)
    await scripts.fetch("bench", 0, 1, [("job", 0)], dead_timeout_ms=lease)  # scripts loaded
    empty = await used_memory(redis)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for start in range(0, count, 5000):
            n = min(5000, count - start)
            items = [("job", {}, {"partition": f"customer:{start + i}"}) for i in range(n)]
            await enq.enqueue_many(items)  # type: ignore[arg-type]
    queued = await used_memory(redis)
    # the same jobs without partitions, for the difference
    other = Keys("q" + namespace)
    async with Enqueuer(redis, namespace=other.namespace, strict=None) as enq:
        for start in range(0, count, 5000):
            await enq.enqueue_many([("job", {}) for _ in range(min(5000, count - start))])
    plain = await used_memory(redis) - queued
    specs = {"job": "c=1"}
    timings: list[float] = []
    commands: list[int] = []
    now = to_ms(time.time())
    while True:
        before = await script_commands(redis)
        t0 = time.perf_counter()
        got = await scripts.fetch(
            "bench", now, 32, [("job", 0)], specs=specs, dead_timeout_ms=lease
        )
        timings.append(time.perf_counter() - t0)
        commands.append(await script_commands(redis) - before)
        if not got:
            break
        done = [Acked(f.id, "job", b"null", now, 0, 1, f.token) for f in got]
        await scripts.ack("bench", done, False, now, False)
    families = ("partition_queue", "partitions_ready", "partitions_waiting")
    families += ("partitions_running", "rate_log", "rate_expiry")
    leftover_keys = [keys.partitions, keys.scan_cursor] + [
        getattr(keys, f)("job") for f in families
    ]
    left = 0
    for key in leftover_keys:
        left += int(await redis.memory_usage(key) or 0)  # None: the key is gone
    await redis.aclose()
    return {
        "partitions": count,
        "bytes_per_queued_job_with_partition": (queued - empty) / count,
        "bytes_per_queued_job_without": plain / count,
        "fetch_ms_mean": statistics.mean(timings[:-1]) * 1000,
        "fetch_ms_p99": sorted(timings)[int(len(timings) * 0.99) - 1] * 1000,
        "redis_commands_per_fetch": statistics.mean(commands[:-1]),
        "partition_bytes_left_after_drain": left,
        "partition_keys_left": sum([await redis.exists(k) for k in leftover_keys]),
    }


async def redis_cost(url: str, jobs: int, batch: int) -> dict[str, dict[str, float]]:
    """Redis' side alone: ``jobs`` jobs fetched ``batch`` at a time straight through the fetch
    and ack scripts, per variant: Redis commands and Redis CPU per job (no pool, no lookahead:
    the cost of the limit checks in the scripts)."""
    redis = Redis.from_url(url)
    out: dict[str, dict[str, float]] = {}
    for name, (limits, partitioned) in VARIANTS.items():
        keys = Keys("c" + uuid.uuid4().hex[:10])
        scripts = Scripts(redis, keys)
        await scripts.heartbeat("bench", b"{}", 3_600_000, mode="register")
        conc, spec = compile_limits(limits)
        async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enq:
            for start in range(0, jobs, 5000):
                n = min(5000, jobs - start)
                items = [
                    ("noop", {}, {"partition": f"p{(start + i) % 1000}"} if partitioned else {})
                    for i in range(n)
                ]
                await enq.enqueue_many(items)  # type: ignore[arg-type]
        now = to_ms(time.time())
        commands, cpu, done_jobs = await script_commands(redis), await redis_cpu(redis), 0
        while True:
            got = await scripts.fetch(
                "bench", now, batch, [("noop", conc)], specs={"noop": spec},
                dead_timeout_ms=3_600_000,
            )  # fmt: skip
            if not got:
                break
            done = [Acked(f.id, "noop", b"null", now, 0, 1, f.token) for f in got]
            await scripts.ack("bench", done, False, now, False)
            done_jobs += len(got)
        out[name] = {
            "redis_commands_per_job": (await script_commands(redis) - commands) / done_jobs,
            "redis_cpu_us_per_job": (await redis_cpu(redis) - cpu) / done_jobs * 1e6,
        }
    await redis.aclose()
    return out


async def main() -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=100_000)
    parser.add_argument("--redis-cost", action="store_true", help="only the scripts' cost")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out: dict[str, object] = {}
    with RedisServer() as server:
        # the variants take turns (A B C A B C ...), so that a change of the machine's load
        # falls on all of them alike
        if args.redis_cost:
            for batch in (4, 32):
                for rep in range(args.runs):
                    figures = await redis_cost(server.url, args.jobs, batch)
                    out[f"redis cost, batch {batch}, run {rep + 1}"] = figures
                    print(f"batch {batch}: {json.dumps(figures)}", flush=True)
            return out
        await throughput(server.url, min(args.jobs, 5000), [], False)  # warm-up, not counted
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
        for _ in range(args.runs):
            for name, (limits, partitioned) in VARIANTS.items():
                runs[name].append(await throughput(server.url, args.jobs, limits, partitioned))
        rate = {n: statistics.median(r["jobs_per_s"] for r in runs[n]) for n in VARIANTS}
        for name, measured in runs.items():
            figures = {
                f: statistics.median(r[f] for r in measured)
                for f in ("jobs_per_s", "pool_cpu_us_per_job", "redis_cpu_us_per_job")
            }
            same = "1,000 partitions, no limits" if VARIANTS[name][1] else "no limits"
            shares = {
                "of_no_limits": figures["jobs_per_s"] / rate["no limits"],
                "of_same_jobs_without_limits": figures["jobs_per_s"] / rate[same],
            }
            out[name] = {**figures, **shares, "runs": measured}
            print(f"{name}: {json.dumps(out[name])}", flush=True)
        if args.partitions == 0:
            return out
        for count in (100, args.partitions):
            figures = await partitions(server.url, count)
            out[f"{count} partitions"] = figures
            print(json.dumps(figures), flush=True)
    return out


if __name__ == "__main__":
    results = asyncio.run(main())
    (ROOT / "bench" / "limits-results.json").write_text(json.dumps(results, indent=2))
