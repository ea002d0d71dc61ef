"""Worker app for the stop semantics of plain-def handlers (tests/worker/test_thread_stop.py).
``python -m errands worker tests.support.apps.threads:pool --redis URL --namespace NS``; the
grace comes from ``$TEST_GRACE`` (seconds, default 0.5); with ``$TEST_SHUTDOWN_FAILS=1`` its
on_shutdown hook ``close_ledger`` raises; with ``$TEST_SHUTDOWN_HANGS=1`` its hook ``flush_ledger``
blocks the event loop for 120 s (a plain def calling a server that does not answer); with
``$TEST_STARTUP_HANGS=1`` its on_startup hook ``warm_cache`` waits 120 s (awaiting a server that
does not answer), and prints whether it was cancelled; with ``$TEST_STARTUP_BLOCKS=1`` it blocks
the event loop for 120 s instead (a plain ``time.sleep`` in an async hook)."""

from __future__ import annotations

import asyncio
import os
import time

import orjson
import redis

from errands import Job, WorkerPool

from . import UNSET_URL, record_key, timed

pool = WorkerPool(
    url=UNSET_URL,
    concurrency=4,
    shutdown_grace=float(os.environ.get("TEST_GRACE", "0.5")),
    heartbeat_interval=0.25,
    dead_timeout=1.0,
)


def record_sync(what: str, job: Job, **fields: float) -> None:
    """Append a record from a handler thread (a blocking client of its own)."""
    assert pool.url is not None
    entry = {"id": job.id, "pid": os.getpid(), **fields}
    with redis.Redis.from_url(pool.url) as client:
        client.rpush(record_key(pool.namespace, what), orjson.dumps(entry))


@pool.job("sync_work")
def sync_work(job: Job, seconds: float = 0.05) -> str:
    """A plain def: records its start, sleeps, records its (start, end) interval."""
    start = time.time()
    record_sync("starts", job, t=start)
    time.sleep(seconds)
    record_sync("intervals", job, start=start, end=time.time())
    return "slept"


@pool.job("work")
async def work(job: Job, seconds: float = 0.05) -> None:
    await timed(pool, job, seconds)


@pool.job("blocking")
async def blocking(job: Job, seconds: float = 0.05) -> None:
    """An async def that blocks the event loop (a plain sleep): a mistake, made often."""
    record_sync("starts", job, t=time.time())
    time.sleep(seconds)  # noqa: ASYNC251


@pool.on_shutdown
async def close_ledger(context: dict[str, object]) -> None:
    if os.environ.get("TEST_SHUTDOWN_FAILS") == "1":
        raise RuntimeError("the ledger would not close")


@pool.on_shutdown
def flush_ledger(context: dict[str, object]) -> None:
    if os.environ.get("TEST_SHUTDOWN_HANGS") == "1":
        print("flush_ledger: blocking", flush=True)
        time.sleep(120)


@pool.on_startup
async def warm_cache(context: dict[str, object]) -> None:
    if os.environ.get("TEST_STARTUP_BLOCKS") == "1":
        print("warm_cache: blocking", flush=True)
        time.sleep(120)  # noqa: ASYNC251
    if os.environ.get("TEST_STARTUP_HANGS") == "1":
        print("warm_cache: waiting", flush=True)
        try:
            await asyncio.sleep(120)
        except asyncio.CancelledError:
            print("warm_cache: cancelled", flush=True)
            raise
