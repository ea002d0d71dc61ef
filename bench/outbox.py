"""The transactional outbox: relay throughput (rows/s into Redis) and commit-to-start latency
with LISTEN/NOTIFY, on a private PostgreSQL (the pgserver wheel of the dev extra) and a private
Redis. Run from the repository root with the dev extra:

    PYTHONPATH=src python bench/outbox.py [--rows 100000] [--samples 200] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

from errands import Enqueuer, Job, WorkerPool
from errands.contrib.sqlalchemy_outbox import create_outbox_table, enqueue_in_outbox, outbox_table
from errands.contrib.sqlalchemy_relay import SQLAlchemySource
from errands.outbox import OutboxRelay, new_row
from errands.store.devserver import RedisServer


def database(sqlite: bool, root: Path) -> tuple[str, Any]:
    if sqlite:
        return f"sqlite:///{root / 'bench.db'}", None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(root / "pg", cleanup_mode="stop")
    return f"postgresql+psycopg://postgres@/postgres?host={root / 'pg'}", server


def fill(url: str, rows: int) -> None:
    engine = create_engine(url)
    create_outbox_table(engine)
    with engine.begin() as conn:
        for start in range(0, rows, 10_000):
            batch = [new_row("noop", {"i": i}) for i in range(start, min(rows, start + 10_000))]
            conn.execute(
                insert(outbox_table),
                [{"job_id": r.job_id, "name": r.name, "payload": r.payload,
                  "created_at": r.created_at} for r in batch],
            )  # fmt: skip
    engine.dispose()


async def throughput(url: str, redis_url: str, rows: int, batch: int) -> float:
    relay = OutboxRelay(SQLAlchemySource(url), batch=batch)
    async with Enqueuer.from_url(redis_url, namespace=f"tp{batch}", strict=None) as enqueuer:
        fill(url, 100)  # warm-up, not timed: connections, the claim compiled, the script loaded
        await relay.drain(enqueuer)
        fill(url, rows)
        t0 = time.perf_counter()
        moved = await relay.drain(enqueuer)
        elapsed = time.perf_counter() - t0
    await relay.source.aclose()
    assert moved == rows, moved
    return rows / elapsed


async def bulk_baseline(redis_url: str, rows: int, batch: int) -> float:
    """enqueue_many alone, the same jobs in the same chunks: the ceiling of the relay."""
    items: list[Any] = [("noop", {"i": i}, {"job_id": f"b{i}"}) for i in range(rows)]
    async with Enqueuer.from_url(redis_url, namespace=f"bulk{batch}", strict=None) as enqueuer:
        t0 = time.perf_counter()
        for start in range(0, rows, batch):
            await enqueuer.enqueue_many(items[start : start + batch])
        return rows / (time.perf_counter() - t0)


async def latency(url: str, redis_url: str, samples: int, pause: float) -> list[float]:
    """A pool with the relay attached (LISTEN on PostgreSQL, poll 1 s); a writer thread
    commits one row at a time; each job's start minus its transaction's commit return."""
    engine = create_engine(url)
    create_outbox_table(engine)
    pool = WorkerPool.from_url(redis_url, namespace="lat", concurrency=32)
    committed: dict[str, float] = {}
    started: dict[str, float] = {}

    @pool.job("ping")
    async def ping(job: Job) -> None:
        started[job.id] = time.time()

    OutboxRelay(SQLAlchemySource(url), poll_interval=1.0).attach(pool)

    def writer() -> None:
        with Session(engine) as session:
            for i in range(samples):
                job_id = enqueue_in_outbox(session, "ping", {"i": i})
                session.commit()
                committed[job_id] = time.time()
                time.sleep(pause)

    async with pool:
        await asyncio.sleep(1.0)  # idle: the relay waits on its LISTEN
        thread = threading.Thread(target=writer)
        thread.start()
        await asyncio.to_thread(thread.join)
        async with asyncio.timeout(30):
            while len(started) < samples:
                await asyncio.sleep(0.01)
    engine.dispose()
    return [(started[i] - committed[i]) * 1000 for i in committed][10:]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.02)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="errob") as tmp, RedisServer() as redis:
        url, server = database(args.sqlite, Path(tmp))
        try:
            out: dict[str, Any] = {"database": "sqlite" if args.sqlite else "postgresql"}
            for batch in (1000, 5000):
                out[f"relay rows/s (batch {batch})"] = round(
                    await throughput(url, redis.url, args.rows, batch)
                )
                out[f"enqueue_many alone rows/s (batch {batch})"] = round(
                    await bulk_baseline(redis.url, args.rows, batch)
                )
            ms = await latency(url, redis.url, args.samples, args.pause)
            qs = statistics.quantiles(ms, n=100)
            out["commit-to-start p50 ms"] = round(statistics.median(ms), 2)
            out["commit-to-start p99 ms"] = round(qs[98], 2)
            print(json.dumps(out, indent=1))
        finally:
            if server is not None:
                server.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
