"""Worker app of the fault soak, run as ``python -m tests.soak.app`` with its settings in the
environment (set by ``tests/soak/driver.py``).

Every handler records its run in the oracle, a Redis of its own that no fault touches: a list
``soak:<namespace>:runs`` of JSON objects ``{"id", "name", "pid", "start"}`` when a run starts and
``{"id", "name", "pid", "start", "end", "outcome"}`` when it ends (outcome ok, error, cancelled;
``stopped`` for an iterable job whose generator the runner closed between two items).
Plain ``def`` handlers record from their own thread, so a thread that outlives its task is seen.
The deduplicated job type adds its ``key`` and ``seq`` (its arguments) to both entries, the
iterable one the ``cursor`` it started from; each item of the iterable job is recorded, before its
cursor is yielded (so before any checkpoint can hold it), in ``soak:<namespace>:items`` as
``{"id", "pid", "start" (its run's), "item", "at"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import orjson
import redis
from redis.asyncio import Redis

from errands import Concurrency, Job, Rate, WorkerPool
from errands.store.connection import connect
from tests.soak.plan import CAPS, ITERABLE, PARTITIONED

PID = os.getpid()
URL = os.environ.get("ERRANDS_REDIS_URL", "redis://127.0.0.1:9/0")
NAMESPACE = os.environ.get("ERRANDS_NAMESPACE", "soak")
ORACLE_URL = os.environ.get("SOAK_ORACLE_URL", "redis://127.0.0.1:9/0")
RUNS_KEY = f"soak:{NAMESPACE}:runs"
ITEMS_KEY = f"soak:{NAMESPACE}:items"

TICK_EVERY = 2.0  # seconds between fires of the periodic schedule


def _env(name: str, default: float) -> float:
    return float(os.environ.get("SOAK_" + name, default))


pool = WorkerPool(
    connect(URL, socket_timeout=_env("SOCKET_TIMEOUT", 2.0)),
    namespace=NAMESPACE,
    concurrency=int(_env("CONCURRENCY", 8)),
    heartbeat_interval=_env("HEARTBEAT", 0.5),
    dead_timeout=_env("DEAD_TIMEOUT", 3.0),
    shutdown_grace=_env("GRACE", 2.0),
    poll_interval=0.5,
    schedule_refresh=1.0,
)
oracle: Redis | None = None
sync_oracle = redis.Redis.from_url(ORACLE_URL)


def _entry(job: Job, start: float, **more: Any) -> bytes:
    return orjson.dumps({"id": job.id, "name": job.name, "pid": PID, "start": start, **more})


@contextlib.asynccontextmanager
async def recorded(job: Job, **more: Any) -> AsyncIterator[float]:
    """``more``: fields of both entries (a partitioned job's partition and attempt token); yields
    the run's start (its entries' ``start``)."""
    assert oracle is not None
    start = time.time()
    await oracle.rpush(RUNS_KEY, _entry(job, start, **more))
    outcome = "error"
    try:
        yield start
        outcome = "ok"
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    except GeneratorExit:  # an iterable job's generator closed by its runner (Suspend)
        outcome = "stopped"
        raise
    finally:
        await asyncio.shield(
            oracle.rpush(RUNS_KEY, _entry(job, start, end=time.time(), outcome=outcome, **more))
        )


@contextlib.contextmanager
def recorded_sync(job: Job) -> Iterator[None]:
    start = time.time()
    sync_oracle.rpush(RUNS_KEY, _entry(job, start))
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        sync_oracle.rpush(RUNS_KEY, _entry(job, start, end=time.time(), outcome=outcome))


@pool.on_startup
async def open_oracle(context: dict[str, Any]) -> None:
    global oracle
    oracle = Redis.from_url(ORACLE_URL)


def _retry_soon(fails: int) -> float:
    return 0.3


@pool.job("soak_async", backoff=_retry_soon)
async def soak_async(job: Job, seconds: float = 0.1) -> str:
    async with recorded(job):
        await asyncio.sleep(seconds)
    return job.id


@pool.job("soak_sync", backoff=_retry_soon)
def soak_sync(job: Job, seconds: float = 0.1) -> str:
    with recorded_sync(job):
        time.sleep(seconds)
    return job.id


@pool.job("soak_capped", max_concurrency=CAPS["soak_capped"], backoff=_retry_soon)
async def soak_capped(job: Job, seconds: float = 0.1) -> None:
    async with recorded(job):
        await asyncio.sleep(seconds)


@pool.job("soak_serial", max_concurrency=CAPS["soak_serial"], backoff=_retry_soon)
async def soak_serial(job: Job, seconds: float = 0.1) -> None:
    async with recorded(job):
        await asyncio.sleep(seconds)


@pool.job("soak_unique", backoff=_retry_soon)
async def soak_unique(job: Job, key: int = 0) -> None:
    async with recorded(job):
        await asyncio.sleep(0.3)


@pool.job("soak_flaky", backoff=_retry_soon, max_fails=4)
async def soak_flaky(job: Job, fail: int = 1, seconds: float = 0.05) -> None:
    """Fails its first ``fail`` attempts: exercises the retry set."""
    async with recorded(job):
        await asyncio.sleep(seconds)
        if job.attempt <= fail:
            raise RuntimeError(f"attempt {job.attempt} fails on purpose")


@pool.job("soak_long", backoff=_retry_soon)
async def soak_long(job: Job, seconds: float = 5.0) -> None:
    """A long job that checks in every second."""
    async with recorded(job):
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            with contextlib.suppress(Exception):  # a check-in lost to a fault is fine
                await job.checkin(f"{seconds - max(left - 1.0, 0.0):.0f}s of {seconds:.0f}s")


@pool.job(
    PARTITIONED.name,
    limits=[
        Concurrency(1, per_partition=True),
        Rate(PARTITIONED.rate, per=timedelta(seconds=PARTITIONED.per), per_partition=True),
    ],
    backoff=_retry_soon,
)
async def soak_part(job: Job, seconds: float = 0.05, fail: int = 0) -> None:
    """Flow control: records its partition and its attempt token, which carries the Redis ms its
    start was counted at in the partition's rate ("<n>@<ms>", see lua/fetch.lua)."""
    async with recorded(job, part=job.partition, token=job._attempt):
        await asyncio.sleep(seconds)
        if job.attempt <= fail:
            raise RuntimeError(f"attempt {job.attempt} fails on purpose")


@pool.job("soak_wf", backoff=_retry_soon)
async def soak_wf(job: Job, seconds: float = 0.05, fail: int = 0) -> None:
    """A workflow member (job id "<run>.<node>") or callback ("<run>!on_success")."""
    async with recorded(job):
        await asyncio.sleep(seconds)
        if job.attempt <= fail:
            raise RuntimeError(f"attempt {job.attempt} fails on purpose")


@pool.job("soak_dedup", backoff=_retry_soon)
async def soak_dedup(job: Job, key: str = "", seq: int = 0, seconds: float = 0.1,
                     fail: int = 0) -> None:  # fmt: skip
    """Enqueued with ``Dedup(key, until="finished", rerun_latest=True)``: ``seq`` tells which
    enqueue's arguments ran."""
    async with recorded(job, key=key, seq=seq):
        await asyncio.sleep(seconds)
        if job.attempt <= fail:
            raise RuntimeError(f"attempt {job.attempt} fails on purpose")


@pool.iterable_job(
    ITERABLE.name, checkpoint_every=ITERABLE.checkpoint_every, backoff=_retry_soon, max_fails=4
)
async def soak_iter(job: Job, cursor: int | None) -> AsyncIterator[int]:
    """Items ``0..items-1``; the cursor is the last item done. Fails at item ``fail_at`` on its
    first attempt (-1: never)."""
    assert oracle is not None
    items, seconds = int(job.args["items"]), float(job.args["seconds"])
    fail_at = int(job.args.get("fail_at", -1))
    async with recorded(job, cursor=cursor, items=items) as start:
        for item in range(0 if cursor is None else cursor + 1, items):
            await asyncio.sleep(seconds)
            if item == fail_at and job.attempt <= 1:
                raise RuntimeError(f"item {item} fails on purpose")
            entry = {"id": job.id, "pid": PID, "start": start, "item": item, "at": time.time()}
            await oracle.rpush(ITEMS_KEY, orjson.dumps(entry))
            yield item


@pool.job("soak_tick")
async def soak_tick(job: Job) -> None:
    async with recorded(job):
        await asyncio.sleep(0.05)


pool.every(TICK_EVERY, "soak_tick")


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {PID} %(levelname)s %(name)s: %(message)s",
    )
    pool.run()
