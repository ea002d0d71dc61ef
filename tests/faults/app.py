"""Worker app of the fault suite, run as ``python -m tests.faults.app`` with its settings in the
environment (see ``FleetConfig`` in ``common.py``).

Handlers record every start and every end in a separate "oracle" Redis (``FAULT_ORACLE_URL``),
never in the Redis under test, so the record survives when that one is killed, stalled or
black-holed. Records are lists ``fault:<namespace>:<what>`` of space-separated fields:
``starts`` "id pid t run_at", ``ends`` "id pid start end", ``fetched`` "id pid t",
``wrong`` "id pid got" (a reply that belonged to another command).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from errands import Concurrency, Job, Rate, WorkerPool
from errands.middleware import Next
from errands.store.connection import connect

PID = os.getpid()
URL = os.environ.get("ERRANDS_REDIS_URL", "redis://127.0.0.1:9/0")
NAMESPACE = os.environ.get("ERRANDS_NAMESPACE", "errands")
ORACLE_URL = os.environ.get("FAULT_ORACLE_URL", "redis://127.0.0.1:9/0")
GATE = os.environ.get("FAULT_GATE", "") == "1"


def _setting(name: str, kind: type = float) -> dict[str, Any]:
    value = os.environ.get("FAULT_" + name.upper())
    return {} if value in (None, "") else {name: kind(value)}


timings = {
    **_setting("heartbeat_interval"),
    **_setting("dead_timeout"),
    **_setting("shutdown_grace"),
    **_setting("poll_interval"),
    **_setting("max_recoveries", int),
}
pool = WorkerPool(
    connect(URL, **_setting("socket_timeout")),
    namespace=NAMESPACE,
    concurrency=int(os.environ.get("FAULT_CONCURRENCY", "10")),
    **timings,
)
oracle: Redis | None = None


def _key(what: str) -> str:
    return f"fault:{NAMESPACE}:{what}"


async def record(what: str, *fields: object) -> None:
    assert oracle is not None
    await oracle.rpush(_key(what), " ".join(str(f) for f in fields))


@pool.on_startup
async def open_oracle(context: dict[str, Any]) -> None:
    global oracle
    oracle = Redis.from_url(ORACLE_URL)
    await record("pids", PID, time.time())


async def timed(job: Job, seconds: float, echo: bool = False) -> str:
    start = time.time()
    await record("starts", job.id, PID, start, job.run_at or 0)
    await asyncio.sleep(seconds)
    if echo:
        # a reply read off a connection that was reset or timed out must never be handed to
        # another command: ask Redis to echo a token unique to this run and compare
        token = f"{job.id}:{PID}:{start}"
        for _ in range(300):
            try:
                got = await pool.redis.echo(token)
                break
            except (RedisError, OSError):
                await asyncio.sleep(0.1)
        else:
            got = b"<no reply>"
        if got != token.encode():
            await record("wrong", job.id, PID, repr(got).replace(" ", "_"))
    await record("ends", job.id, PID, start, time.time())
    return job.id


def _retry_soon(fails: int) -> float:
    return 0.2


@pool.job("work", backoff=_retry_soon)
async def work(job: Job, seconds: float = 0.0, echo: bool = False) -> str:
    return await timed(job, seconds, echo)


@pool.job("serial", max_concurrency=1, backoff=_retry_soon)
async def serial(job: Job, seconds: float = 0.0) -> str:
    return await timed(job, seconds)


@pool.job("capped", max_concurrency=3, backoff=_retry_soon)
async def capped(job: Job, seconds: float = 0.0) -> str:
    return await timed(job, seconds)


@pool.job(
    "partitioned",
    backoff=_retry_soon,
    limits=[
        Concurrency(1, per_partition=True),
        Rate(5, per=timedelta(seconds=1), per_partition=True),
    ],
)
async def partitioned(job: Job, seconds: float = 0.0) -> str:
    # the start the rate counted, on the Redis clock (the attempt token's "@<ms>", lua/fetch.lua)
    await record("counted", job.id, PID, job._attempt.partition("@")[2] or "-")
    return await timed(job, seconds)


@pool.job("gated", backoff=_retry_soon)
async def gated(job: Job, gate: float = 0.0, seconds: float = 0.1) -> str:
    return await timed(job, seconds)


@pool.job("noop")
async def noop(job: Job) -> None:
    await record("starts", job.id, PID, time.time(), job.run_at or 0)


@pool.job("sink", backoff=_retry_soon)
async def sink(job: Job, **data: Any) -> int:
    """Takes any arguments (a 10 MB one, say) and reports their size."""
    size = sum(len(str(v)) for v in data.values())
    await timed(job, 0.0)
    return size


@pool.job("die")
async def die(job: Job) -> None:
    """Kills its own process, every attempt (a poison job)."""
    await record("starts", job.id, PID, time.time(), 0)
    os.kill(PID, signal.SIGKILL)


@pool.job("wf_child", max_fails=5, backoff=_retry_soon)
async def wf_child(job: Job, i: int, seconds: float = 0.0, fail_times: int = 0) -> int:
    """A workflow member: fails its first ``fail_times`` attempts, then returns ``i``."""
    await timed(job, seconds)
    if job.attempt <= fail_times:
        raise RuntimeError(f"planned failure {job.attempt} of {fail_times}")
    return i


@pool.job("wf_merge", backoff=_retry_soon)
async def wf_merge(job: Job) -> int:
    """The fan-in: records how many results, and how many values, it saw."""
    results = await job.dependency_results()
    values = sum(1 for v in results.values() if isinstance(v, int))
    await record("merges", job.id, PID, len(results), values)
    return values


@pool.job("wf_done")
async def wf_done(job: Job) -> None:
    """The on_success callback."""
    await record("callbacks", job.id, PID, time.time())


@pool.middleware
async def gate(job: Job, next: Next) -> Any:
    """For ``gated`` jobs: the window between fetch and the handler's start, held open for
    ``gate`` seconds (in processes started with FAULT_GATE=1)."""
    if job.name == "gated":
        await record("fetched", job.id, PID, time.time())
        if GATE:
            await asyncio.sleep(float(job.args.get("gate", 0.0)))
    return await next()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {PID} %(levelname)s %(name)s: %(message)s",
    )
    pool.run()
