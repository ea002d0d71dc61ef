"""Exactly once across pool processes: three worker processes share a fake clock (a file the
test writes) and run the schedules of ``tests/support/apps/periodic.py`` through the 25-hour day of
2026-11-01 in New York; one of them is SIGKILLed mid-day. Every fire time is enqueued exactly
once and none is missing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from errands.store.keys import Keys
from tests.support.apps.fileclock import FileClock
from tests.support.apps.periodic import pool as app_pool
from tests.support.procs import Proc, Procs, eventually, live_pools

NOV1_NY = 1_793_505_600.0  # 2026-11-01T00:00:00-04:00
STEP = 600.0


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


async def states(redis: Redis, ns: str) -> dict[str, dict[str, str]]:
    out = {}
    for periodic in app_pool._periodic:
        raw = await redis.hgetall(Keys(ns).schedule_state(periodic.name))
        out[periodic.name] = {k.decode(): v.decode() for k, v in raw.items()}
    return out


async def fire_times(redis: Redis, ns: str, job_name: str) -> list[float]:
    keys = Keys(ns)
    ids = await redis.zrange(keys.queue(job_name), 0, -1)
    envelopes = await redis.hmget(keys.jobs, ids) if ids else []
    return sorted(orjson.loads(e)["m"]["fire_time"] for e in envelopes)


async def proc_of(redis: Redis, ns: str, pool_id: str, procs: list[Proc]) -> Proc:
    info = orjson.loads(await redis.get(Keys(ns).pool_info(pool_id)))
    return next(p for p in procs if p.pid == info["pid"])


async def caught_up(redis: Redis, ns: str, now: float) -> bool:
    """Every schedule has handled its latest fire time up to ``now``."""
    current = await states(redis, ns)
    for periodic in app_pool._periodic:
        last = int(current[periodic.name]["last"]) / 1000
        if periodic.schedule.next_fire(last) <= now:
            return False
    return True


@pytest.mark.faults
async def test_three_pools_enqueue_every_fire_time_exactly_once_through_a_kill(
    procs: Procs, tmp_path: Path, redis_url: str, namespace: str, redis: Redis
) -> None:
    clock = FileClock(tmp_path / "clock")
    now = NOV1_NY - STEP + 10  # 2026-10-31 23:50:10 EDT
    clock.set(now)
    args = ["-m", "errands", "worker", "tests.support.apps.periodic:pool"]
    args += ["--redis", redis_url, "--namespace", namespace]
    workers = [procs.start(args, {"ERRANDS_TEST_CLOCK": str(clock.path)}) for _ in range(3)]

    async def all_started() -> bool:
        started = all(s.get("last") for s in (await states(redis, namespace)).values())
        return started and len(await live_pools(redis, namespace)) == 3

    await eventually(all_started, 30, "three pools with their schedules started")
    first = {name: int(s["last"]) / 1000 for name, s in (await states(redis, namespace)).items()}
    killed: Proc | None = None
    began = time.monotonic()
    for step in range(int(25 * 3600 / STEP)):
        now += STEP
        clock.set(now)
        if step == 60:  # mid-day, 09:50 EST: kill the pool that enqueued the latest hourly run
            by = (await states(redis, namespace))["tick_hourly"]["by"]
            killed = await proc_of(redis, namespace, by, workers)
            killed.kill_group()
        await eventually(lambda t=now: caught_up(redis, namespace, t), 10, f"fire times to {now}")
    assert time.monotonic() - began < 40
    assert killed is not None and killed.poll() is not None
    assert sum(w.poll() is None for w in workers) == 2
    for periodic in app_pool._periodic:
        expected = periodic.schedule.fire_times(first[periodic.name], now)
        got = await fire_times(redis, namespace, periodic.job_name)
        assert got == expected, periodic.name
    hourly = await fire_times(redis, namespace, "tick_hourly")
    assert len([t for t in hourly if NOV1_NY <= t < NOV1_NY + 25 * 3600]) == 25
    assert await fire_times(redis, namespace, "tick_0130") == [NOV1_NY + 5400]  # 01:30 EDT
    assert len(await fire_times(redis, namespace, "tick_10m")) == 25 * 6
