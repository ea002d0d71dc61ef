"""Worker app of the dedup soak (``python -m tests.dedup.soak_app``, settings in the environment,
see ``tests/dedup/test_soak.py``). Each handler records its run in the oracle Redis (no fault
touches it): a list ``dedupsoak:<namespace>:runs`` of JSON objects ``{"id", "name", "key",
"seq", "pid", "start"}`` when a run starts, and the same with ``"end"`` when it ends."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import orjson
from redis.asyncio import Redis

from errands import Job, WorkerPool
from errands.store.connection import connect

PID = os.getpid()
URL = os.environ.get("ERRANDS_REDIS_URL", "redis://127.0.0.1:9/0")
NAMESPACE = os.environ.get("ERRANDS_NAMESPACE", "dedupsoak")
ORACLE_URL = os.environ.get("DEDUP_SOAK_ORACLE_URL", "redis://127.0.0.1:9/0")
RUNS_KEY = f"dedupsoak:{NAMESPACE}:runs"
# the job names, one per mode (see test_soak.MODES)
NAMES = ("started", "finished", "throttle", "debounce", "rerun")

pool = WorkerPool(
    connect(URL, socket_timeout=2.0),
    namespace=NAMESPACE,
    concurrency=8,
    heartbeat_interval=0.5,
    dead_timeout=3.0,
    shutdown_grace=2.0,
    poll_interval=0.5,
    max_recoveries=1000,  # a job killed many times is not buried: the oracle wants its run
)
oracle: Redis | None = None


@pool.on_startup
async def open_oracle(context: dict[str, Any]) -> None:
    global oracle
    oracle = Redis.from_url(ORACLE_URL)


async def run(job: Job, key: str, seq: int, ms: float) -> None:
    assert oracle is not None
    entry = {"id": job.id, "name": job.name, "key": key, "seq": seq, "pid": PID}
    start = time.time()
    await oracle.rpush(RUNS_KEY, orjson.dumps({**entry, "start": start}))
    await asyncio.sleep(ms / 1000)
    await oracle.rpush(RUNS_KEY, orjson.dumps({**entry, "start": start, "end": time.time()}))


for _name in NAMES:
    pool.job(_name)(run)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING, format=f"%(asctime)s {PID} %(levelname)s %(name)s: %(message)s"
    )
    pool.run()
