"""The worker app of bench/longwork.py (run as ``python -m errands worker longwork_app:pool``
with bench/ on PYTHONPATH). Short failure detection (dead_timeout 2 s) so kills recover fast.

- ``items``: an iterable job over items 1..n; each item is one Redis call, ``SETBIT seen i``:
  an item whose bit was already set is a replay, counted in ``replays:<LW_GEN>`` (the
  generation of the worker process, set by the driver).
- ``bulk``: a batch handler (max_size 100, max_wait ``LW_MAX_WAIT``); each batch is recorded
  (start time, size, the oldest job's enqueue time) and sleeps ``LW_BATCH_SLEEP`` seconds.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import orjson

from errands import Job, WorkerPool

pool = WorkerPool(
    url=os.environ.get("REDIS_URL", "redis://127.0.0.1:9/0"),
    namespace="bench",
    concurrency=32,
    shutdown_grace=5.0,
    heartbeat_interval=0.5,
    dead_timeout=2.0,
    max_recoveries=1000,
)
GEN = os.environ.get("LW_GEN", "0")


@pool.iterable_job("items", checkpoint_every=float(os.environ.get("LW_CHECKPOINT", "2")))
async def items(job: Job, cursor: int | None) -> AsyncIterator[int]:
    redis = pool.redis
    for i in range((cursor or 0) + 1, int(job.args["n"]) + 1):
        if await redis.setbit("bench:seen", i, 1):
            await redis.incr(f"bench:replays:{GEN}")
        yield i


@pool.batch_job("bulk", max_size=100, max_wait=float(os.environ.get("LW_MAX_WAIT", "0.5")))
async def bulk(jobs: list[Job]) -> None:
    started = time.time()
    oldest = min(j.enqueued_at for j in jobs)
    entry = {"t": started, "size": len(jobs), "oldest": oldest, "ids": [j.id for j in jobs]}
    await pool.redis.rpush("bench:batches", orjson.dumps(entry))
    await asyncio.sleep(float(os.environ.get("LW_BATCH_SLEEP", "0")))
