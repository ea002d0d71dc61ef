"""Figures of the long-work features (docs/long-jobs.md), against a private redis-server, with
worker processes of bench/longwork_app.py. Run with the project's python (errands importable):

    .venv/bin/python bench/longwork.py iterable --items 1000000 --term-every 10 --kill-every 60
    .venv/bin/python bench/longwork.py batch

iterable: one job over N items (one Redis call each); the worker gets SIGTERM every
``--term-every`` seconds and kill -9 every ``--kill-every`` seconds (then a new one starts) until
the job is finished. Reports: every item done, the replays after each SIGTERM (0 expected) and
after each kill -9 (at most the items of one checkpoint interval), next to the items of one
checkpoint interval at the rate measured just before the kill.

batch: (1) start latency at 10 jobs/s (each batch started by max_wait: start - oldest job's
enqueue, against max_wait + 50 ms); (2) mean batch size at 5,000 jobs/s offered (enqueue_many of
100 jobs every 20 ms; the rate reached is reported); (3) kill -9 of
the worker in the middle of batches, three times: jobs lost, and jobs acknowledged more than
once (finished history entries per job).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(SRC))
from run import PrivateRedis  # noqa: E402

from errands import Enqueuer  # noqa: E402
from errands.admin.records import record_of  # noqa: E402
from errands.store.keys import Keys  # noqa: E402

KEYS = Keys("bench")
LOGS = Path(tempfile.mkdtemp(prefix="errands-longwork-"))


def worker(url: str, gen: int, **env: str) -> subprocess.Popen[bytes]:
    environ = dict(os.environ, REDIS_URL=url, PYTHONPATH=f"{SRC}:{BENCH}", LW_GEN=str(gen))
    environ.update(env)
    cmd = [sys.executable, "-m", "errands", "worker", "longwork_app:pool"]
    out = (LOGS / f"worker{gen}.log").open("wb")
    return subprocess.Popen(
        [*cmd, "--log-level", "WARNING"], env=environ, stdout=out, stderr=subprocess.STDOUT
    )


async def iterable(args: argparse.Namespace) -> dict[str, Any]:
    with PrivateRedis() as server:
        redis = Redis.from_url(server.url)
        async with Enqueuer(redis, namespace="bench") as enqueuer:
            job = await enqueuer.enqueue("items", {"n": args.items})
        assert job is not None
        env = {"LW_CHECKPOINT": str(args.checkpoint)}
        gen = 0
        proc = worker(server.url, gen, **env)
        began = time.monotonic()
        next_term, next_kill = began + args.term_every, began + args.kill_every
        samples: list[tuple[float, int]] = []
        events: list[dict[str, Any]] = []
        while not await redis.exists(KEYS.done(job.id)):
            await asyncio.sleep(0.25)
            now = time.monotonic()
            samples.append((now, int(await redis.bitcount("bench:seen"))))
            if now >= next_kill:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                raw = await redis.hget(KEYS.checkpoints, job.id)
                cursor = orjson.loads(raw)["cursor"] if raw else 0
                old = [c for t, c in samples if t <= now - 5] or [0]
                rate = (samples[-1][1] - old[-1]) / 5
                done = int(await redis.bitcount("bench:seen"))
                events.append(
                    {
                        "event": "kill -9",
                        "gen": gen + 1,
                        "checkpoint": cursor,
                        "done": done,
                        "interval_items": round(rate * args.checkpoint),
                    }
                )
                next_kill += args.kill_every
                next_term = now + args.term_every
            elif now >= next_term:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
                events.append({"event": "SIGTERM", "gen": gen + 1})
                next_term += args.term_every
            else:
                continue
            gen += 1
            proc = worker(server.url, gen, **env)
        took = time.monotonic() - began
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        replays = sum([int(await redis.get(f"bench:replays:{g}") or 0) for g in range(gen + 1)])
        seen = int(await redis.bitcount("bench:seen"))
        await redis.aclose()
    # a kill costs the items its run did after its last checkpoint (done - checkpoint); a kill
    # of a worker that did not run the job (not yet given back by the reaper) costs nothing new
    kills, last_done = [], 0
    for e in events:
        if e["event"] == "kill -9":
            e["replay_due"] = e["done"] - e["checkpoint"] if e["done"] > last_done else 0
            kills.append(e)
            last_done = e["done"]
    due = sum(e["replay_due"] for e in kills)
    return {
        "items": args.items,
        "all_items_done": seen == args.items,
        "seconds": round(took, 1),
        "checkpoint_every_s": args.checkpoint,
        "sigterms": sum(e["event"] == "SIGTERM" for e in events),
        "kills": len(kills),
        "replays_total": replays,
        "replays_after_sigterms": replays - due,
        "replays_per_kill": [e["replay_due"] for e in kills],
        "items_per_checkpoint_interval_at_kill": [e["interval_items"] for e in kills],
    }


async def batch_latency(url: str, redis: Redis, max_wait: float) -> dict[str, Any]:
    proc = worker(url, 0, LW_MAX_WAIT=str(max_wait))
    await asyncio.sleep(3)
    async with Enqueuer(redis, namespace="bench") as enqueuer:
        ids = []
        for _ in range(200):
            job = await enqueuer.enqueue("bulk")
            assert job is not None
            ids.append(job.id)
            await asyncio.sleep(0.1)
    await _wait_done(redis, ids)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    batches = [orjson.loads(b) for b in await redis.lrange("bench:batches", 0, -1)]
    waits = sorted(b["t"] - b["oldest"] for b in batches)
    return {
        "jobs_per_s": 10,
        "max_wait": max_wait,
        "batches": len(batches),
        "start_after_oldest_p50_ms": round(statistics.median(waits) * 1000, 1),
        "start_after_oldest_max_ms": round(waits[-1] * 1000, 1),
        "within_max_wait_plus_50ms": sum(w <= max_wait + 0.05 for w in waits),
    }


async def batch_size(url: str, redis: Redis, rate: int, seconds: float) -> dict[str, Any]:
    proc = worker(url, 0, LW_MAX_WAIT="1.0")
    await asyncio.sleep(3)
    ids: list[str] = []
    chunk = rate // 50  # every 20 ms
    async with Enqueuer(redis, namespace="bench") as enqueuer:
        began = time.monotonic()
        tick = 0
        while time.monotonic() - began < seconds:
            jobs = await enqueuer.enqueue_many([("bulk", {})] * chunk)
            ids += [j.id for j in jobs if j is not None]
            tick += 1
            await asyncio.sleep(max(0.0, began + tick * 0.02 - time.monotonic()))
        offered = len(ids) / (time.monotonic() - began)
    await _wait_done(redis, ids)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    sizes = [orjson.loads(b)["size"] for b in await redis.lrange("bench:batches", 0, -1)]
    return {
        "offered_jobs_per_s": round(offered),
        "jobs": len(ids),
        "batches": len(sizes),
        "mean_batch_size": round(statistics.mean(sizes), 1),
        "full_batches": sum(s == 100 for s in sizes),
    }


async def batch_kills(url: str, redis: Redis, n: int, kills: int) -> dict[str, Any]:
    async with Enqueuer(redis, namespace="bench") as enqueuer:
        ids = [j.id for j in await enqueuer.enqueue_many([("bulk", {})] * n) if j is not None]
    for gen in range(kills):
        proc = worker(url, gen, LW_BATCH_SLEEP="0.3")
        while await redis.llen("bench:batches") <= gen * 3 + 2:
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # in the middle of a batch (each sleeps 0.3 s)
        proc.wait()
    proc = worker(url, kills, LW_BATCH_SLEEP="0.3")
    await _wait_done(redis, ids)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    finished: dict[str, int] = {}
    for member in await redis.zrange(KEYS.history, 0, -1):
        job_id = member.decode().rsplit(":", 1)[0]
        record = record_of(await redis.hget(KEYS.history_data, member), job_id) or {}
        if record.get("status") == "finished":
            finished[record["id"]] = finished.get(record["id"], 0) + 1
    lost = sum([not await redis.exists(KEYS.done(i)) for i in ids])
    return {
        "jobs": n,
        "kills": kills,
        "lost": lost,
        "acked_more_than_once": sum(c > 1 for c in finished.values()),
        "processed_counter": int(await redis.hget(KEYS.stats, "processed") or 0),
    }


async def _wait_done(redis: Redis, ids: list[str], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    left = list(ids)
    while left:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(left)} jobs not finished")
        async with redis.pipeline(transaction=False) as pipe:
            for i in left:
                pipe.exists(KEYS.done(i))
            found = await pipe.execute()
        left = [i for i, f in zip(left, found, strict=True) if not f]
        await asyncio.sleep(0.2)


async def batch(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, run in (
        ("latency", lambda url, r: batch_latency(url, r, args.max_wait)),
        ("size", lambda url, r: batch_size(url, r, args.rate, args.seconds)),
        ("kill", lambda url, r: batch_kills(url, r, 3000, 3)),
    ):
        with PrivateRedis() as server:
            redis = Redis.from_url(server.url)
            out[name] = await run(server.url, redis)
            await redis.aclose()
        print(name, orjson.dumps(out[name]).decode(), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    it = sub.add_parser("iterable")
    it.add_argument("--items", type=int, default=1_000_000)
    it.add_argument("--term-every", type=float, default=10.0)
    it.add_argument("--kill-every", type=float, default=60.0)
    it.add_argument("--checkpoint", type=float, default=2.0)
    b = sub.add_parser("batch")
    b.add_argument("--max-wait", type=float, default=0.5)
    b.add_argument("--rate", type=int, default=5000)
    b.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    result = asyncio.run(iterable(args) if args.what == "iterable" else batch(args))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(f"worker logs in {LOGS}", file=sys.stderr)


if __name__ == "__main__":
    main()
