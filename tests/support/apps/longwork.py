"""Worker app with iterable jobs and short failure-detection timings (the long-work process
tests). ``python -m errands worker tests.support.apps.longwork:pool --redis URL --namespace NS``.
``LW_CHECKPOINT`` sets checkpoint_every (seconds, default 0.2); ``LW_BATCH_SLEEP`` how long
each batch of ``bulk`` sleeps (default 0)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import orjson

from errands import Job, WorkerPool

from . import UNSET_URL, record_key

pool = WorkerPool(
    url=UNSET_URL,
    concurrency=2,
    shutdown_grace=5.0,
    heartbeat_interval=0.25,
    dead_timeout=1.0,
    max_recoveries=100,
)


@pool.iterable_job("items", checkpoint_every=float(os.environ.get("LW_CHECKPOINT", "0.2")))
async def items(job: Job, cursor: int | None) -> AsyncIterator[int]:
    """Items 1..n, each taking ``delay`` seconds; each is recorded as "<pid>:<item>"."""
    n, delay = int(job.args["n"]), float(job.args.get("delay", 0.002))
    key = record_key(pool.namespace, "items")
    pid = os.getpid()
    for i in range((cursor or 0) + 1, n + 1):
        await asyncio.sleep(delay)
        await pool.redis.rpush(key, f"{pid}:{i}")
        yield i


@pool.batch_job("bulk", max_size=50, max_wait=0.1)
async def bulk(jobs: list[Job]) -> None:
    """Records each batch as {"pid", "ids"}, then sleeps ``LW_BATCH_SLEEP`` seconds."""
    entry = {"pid": os.getpid(), "ids": [j.id for j in jobs]}
    await pool.redis.rpush(record_key(pool.namespace, "batches"), orjson.dumps(entry))
    await asyncio.sleep(float(os.environ.get("LW_BATCH_SLEEP", "0")))
