"""Periodic schedules against a real Redis, driven by fake clocks (no sleeping for time to pass)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import (
    Client,
    Dedup,
    FakeClock,
    Job,
    RegistrationError,
    ScheduleNotFoundError,
    WorkerPool,
)
from errands.clock import SystemClock
from errands.periodic.enqueuer import PeriodicEnqueuer
from errands.periodic.spec import check_names
from errands.periodic.store import PeriodicSchedule, make_periodic
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from tests.support.procs import eventually

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NOV1_NY = 1_793_505_600.0  # 2026-11-01T00:00:00-04:00


def enqueuer(redis: Redis, ns: str, clock: Any, *schedules: PeriodicSchedule) -> PeriodicEnqueuer:
    keys = Keys(ns)
    return PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), schedules, pool_id=str(id(clock)))


async def runs(redis: Redis, ns: str, job_name: str) -> list[dict[str, Any]]:
    """The meta of every job of ``job_name`` still on its queue, in queue order."""
    keys = Keys(ns)
    ids = await redis.zrange(keys.queue(job_name), 0, -1)
    envelopes = await redis.hmget(keys.jobs, ids) if ids else []
    return [orjson.loads(e)["m"] for e in envelopes]


async def fire_times(redis: Redis, ns: str, job_name: str) -> list[float]:
    return sorted(m["fire_time"] for m in await runs(redis, ns, job_name))


async def state(redis: Redis, ns: str, name: str) -> dict[str, str]:
    raw = await redis.hgetall(Keys(ns).schedule_state(name))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_pool_runs_schedules_on_a_fake_clock(redis_url: str, namespace: str) -> None:
    clock = FakeClock(START + 5)
    pool = WorkerPool.from_url(redis_url, namespace=namespace, clock=clock)
    seen: list[tuple[str, float]] = []

    @pool.job("report")
    async def report(job: Job) -> None:
        seen.append((job.meta["schedule"], job.meta["fire_time"]))

    pool.daily("report", hour=6, minute=30, name="morning")
    pool.hourly("report", minute=15, name="rollup")
    pool.periodically_enqueue("@every 20m", "report", name="sync")
    async with pool:
        assert pool.periodic is not None
        await pool.periodic.tick_once()  # new schedules start from now
        for _ in range(8 * 12):  # 8 hours in 5-minute steps
            clock.advance(300)
            await pool.periodic.tick_once()
        await pool.drain(timeout=10)
    hour = 3600.0
    assert sorted(t for n, t in seen if n == "morning") == [START + 6.5 * hour]
    assert sorted(t for n, t in seen if n == "rollup") == [START + h * hour + 900 for h in range(8)]
    assert sorted(t for n, t in seen if n == "sync") == [START + k * 1200 for k in range(1, 25)]


async def test_exactly_once_with_skewed_clocks(redis: Redis, namespace: str) -> None:
    """Four enqueuers whose clocks are a few seconds apart tick in random order over a
    simulated day: every fire time is enqueued exactly once, none is missing."""
    schedules = [
        make_periodic("*/5 * * * *", "five"),
        make_periodic("@every 7m", "seven", misfire_grace=3600),
        make_periodic("@hourly", "hourly", tz="America/New_York"),
        make_periodic("30 */10 * * * *", "ten", misfire_grace=3600),
    ]
    clocks = [FakeClock(NOV1_NY - 290 + skew) for skew in (-3.0, 0.0, 2.5, 4.0)]
    enqueuers = [enqueuer(redis, namespace, c, *schedules) for c in clocks]
    await asyncio.gather(*(e.tick_once() for e in enqueuers))  # one of them starts the state
    first = {s.name: await last_slot(redis, namespace, s.name) for s in schedules}
    rng = random.Random(7)
    for _ in range(25 * 12):  # in 5-minute steps through the 25-hour day of 2026-11-01
        for c in clocks:
            c.advance(300)
        await asyncio.gather(*(e.tick_once() for e in rng.sample(enqueuers, len(enqueuers))))
    for s in schedules:
        got = await fire_times(redis, namespace, s.job_name)
        expected = s.schedule.fire_times(first[s.name], await last_slot(redis, namespace, s.name))
        assert got == expected, s.name
        assert len(expected) > 140 or s.name in ("hourly", "ten")
    assert len(await fire_times(redis, namespace, "hourly")) == 25  # 01:00 twice


async def last_slot(redis: Redis, ns: str, name: str) -> float:
    return int((await state(redis, ns, name))["last"]) / 1000


async def test_misfire_skip_drops_stale_runs(redis: Redis, namespace: str) -> None:
    clock = FakeClock(START)
    e = enqueuer(redis, namespace, clock, make_periodic("*/10 * * * *", "job", misfire_grace=60))
    await e.tick_once()
    clock.advance(3 * 3600 + 120)  # every pool down for 3 hours; the latest slot 2 min ago
    assert await e.tick_once() == 0
    st = await state(redis, namespace, "job")
    assert (st["misfires"], int(st["last"])) == ("1", (START + 3 * 3600) * 1000)
    assert int(st["next"]) == (START + 3 * 3600 + 600) * 1000
    clock.advance(600 - 120 + 30)
    assert await e.tick_once() == 1
    assert await fire_times(redis, namespace, "job") == [START + 3 * 3600 + 600]


async def test_misfire_skip_runs_latest_slot_within_grace(redis: Redis, namespace: str) -> None:
    clock = FakeClock(START)
    e = enqueuer(redis, namespace, clock, make_periodic("*/10 * * * *", "job", misfire_grace=300))
    await e.tick_once()
    clock.advance(3 * 3600 + 120)
    assert await e.tick_once() == 1  # one run, for the latest fire time only
    meta = (await runs(redis, namespace, "job"))[0]
    assert meta["fire_time"] == START + 3 * 3600
    assert meta["missed_since"] == START + 600


async def test_misfire_catch_up_runs_once(redis: Redis, namespace: str) -> None:
    clock = FakeClock(START)
    e = enqueuer(redis, namespace, clock, make_periodic("@hourly", "job", misfire="catch_up"))
    await e.tick_once()
    clock.advance(26 * 3600 + 1800)  # down for a day
    assert await e.tick_once() == 1
    assert await e.tick_once() == 0
    [meta] = await runs(redis, namespace, "job")
    assert (meta["fire_time"], meta["missed_since"]) == (START + 26 * 3600, START + 3600)


async def test_skip_if_running(redis: Redis, namespace: str) -> None:
    clock = FakeClock(START)
    periodic = make_periodic("@every 1m", "job", skip_if_running=True)
    e = enqueuer(redis, namespace, clock, periodic)
    await e.tick_once()
    clock.advance(60)
    assert await e.tick_once() == 1  # queued, never fetched: still "running"
    for _ in range(3):
        clock.advance(60)
        assert await e.tick_once() == 0
    st = await state(redis, namespace, "job")
    assert st["skipped"] == "3"
    keys = Keys(namespace)
    await redis.zrem(keys.queue("job"), st["job"])  # as if a pool ran it:
    await redis.hdel(keys.jobs, st["job"])  # ack drops the envelope of a finished job
    clock.advance(60)
    assert await e.tick_once() == 1
    await redis.zadd(keys.dead, {(await state(redis, namespace, "job"))["job"]: 1})
    clock.advance(60)
    assert await e.tick_once() == 1  # a dead previous run does not block the schedule
    assert await fire_times(redis, namespace, "job") == [START + 300, START + 360]
    assert (await state(redis, namespace, "job"))["runs"] == "3"


async def test_runtime_schedules_are_picked_up_by_a_running_pool(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    clock = FakeClock(START)
    pool = WorkerPool.from_url(redis_url, namespace=namespace, clock=clock, schedule_refresh=0.05)
    pool.register("other", lambda job: None)
    client = Client.from_url(redis_url, namespace=namespace, clock=clock)
    async with pool:
        await client.add_schedule("nightly", "cleanup", "@every 1h", {"deep": True})
        await eventually(lambda: state(redis, namespace, "nightly"), 5, "runtime schedule seen")
        clock.advance(3600)
        await eventually(lambda: fire_times(redis, namespace, "cleanup"), 5, "first run")
        assert (await runs(redis, namespace, "cleanup"))[0]["schedule"] == "nightly"

        await client.disable_schedule("nightly")
        clock.advance(3600)

        async def advanced() -> bool:
            return (await state(redis, namespace, "nightly"))["last"] == str(
                int(START * 1000) + 7_200_000
            )

        await eventually(advanced, 5, "disabled schedule moves on without running")
        await client.enable_schedule("nightly")
        clock.advance(3600)
        await eventually(
            lambda: _count(fire_times(redis, namespace, "cleanup"), 2), 5, "run after enable"
        )
        assert await fire_times(redis, namespace, "cleanup") == [START + 3600, START + 3 * 3600]

        assert await client.delete_schedule("nightly")
        await eventually(lambda: _no_runtime(pool), 5, "deleted schedule dropped")
        clock.advance(3600)
        await asyncio.sleep(0.2)
        assert len(await fire_times(redis, namespace, "cleanup")) == 2
        assert not await redis.exists(Keys(namespace).schedule_state("nightly"))
    await client.aclose()


async def _count(values: Any, n: int) -> bool:
    return len(await values) >= n


async def _no_runtime(pool: WorkerPool) -> bool:
    return pool.periodic is not None and not pool.periodic.runtime


async def test_client_reports_state_and_runs_now(redis_url: str, namespace: str) -> None:
    clock = FakeClock(START)
    pool = WorkerPool.from_url(redis_url, namespace=namespace, clock=clock)

    @pool.job("report")
    async def report(job: Job) -> None:
        pass

    @pool.job("broken", max_fails=1)
    async def broken(job: Job) -> None:
        raise RuntimeError("boom")

    pool.hourly("report", minute=30)
    client = Client.from_url(redis_url, namespace=namespace, clock=clock)
    async with pool:
        assert pool.periodic is not None
        await client.add_schedule("fragile", "broken", "0 0 * * *", skip_if_running=True)
        await pool.periodic.tick_once()
        await client.pause("report")  # keep the run on its queue for a moment
        clock.advance(1800)
        await pool.periodic.tick_once()
        info = await client.schedule("report")
        assert (info.source, info.prev_fire, info.next_fire) == ("code", START + 1800, START + 5400)
        assert info.last_outcome == "queued" and info.runs == 1
        await client.unpause("report")
        await pool.drain(timeout=10)
        assert (await client.schedule("report")).last_outcome == "finished"

        job_id = await client.run_schedule_now("fragile")
        await pool.drain(timeout=10)
        fragile = await client.schedule("fragile")
        assert (fragile.source, fragile.last_job_id, fragile.last_outcome) == (
            "runtime",
            job_id,
            "dead",
        )
        assert fragile.next_fire == START + 86400 and fragile.skip_if_running
        assert [i.name for i in await client.schedules()] == ["fragile", "report"]
        with pytest.raises(ScheduleNotFoundError, match="nope"):
            await client.run_schedule_now("nope")
        with pytest.raises(RegistrationError, match="defined in a pool's code"):
            await client.add_schedule("report", "report", "@daily")
        assert await client.delete_schedule("report")  # a schedule in code is only reset
        assert [i.name for i in await client.schedules()] == ["fragile"]
        await pool.periodic.tick_once()
        info = await client.schedule("report")
        assert (info.runs, info.prev_fire, info.next_fire) == (0, None, START + 5400)
        assert not await client.delete_schedule("never-existed")
    await client.aclose()


async def test_a_manual_run_says_so_in_its_meta(redis_url: str, namespace: str) -> None:
    """run_schedule_now's runs have meta["manual"] = True (a schedule in code, a runtime one, one
    deduplicated); the runs of fire times have no "manual"; every run names its schedule."""
    clock = FakeClock(START)
    pool = WorkerPool.from_url(redis_url, namespace=namespace, clock=clock)
    seen: dict[str, dict[str, Any]] = {}

    @pool.job("report")
    async def report(job: Job) -> None:
        seen[job.id] = dict(job.meta)

    pool.hourly("report", minute=30, name="in-code")
    client = Client.from_url(redis_url, namespace=namespace, clock=clock)
    async with pool:
        assert pool.periodic is not None
        await client.add_schedule("runtime", "report", "@hourly")
        await client.add_schedule("deduped", "report", "@daily", dedup=Dedup("d"))
        await pool.periodic.tick_once()  # new schedules start from now
        clock.advance(1800)
        manual = {n: await client.run_schedule_now(n) for n in ("in-code", "runtime", "deduped")}
        await pool.periodic.tick_once()  # in-code's fire time, START + 1800
        await pool.drain(timeout=10)
        fired = (await client.schedule("in-code")).last_job_id
    await client.aclose()
    assert set(seen) == {*manual.values(), fired}
    for name, job_id in manual.items():
        assert seen.pop(job_id) == {"schedule": name, "fire_time": START + 1800, "manual": True}
    assert list(seen.values()) == [{"schedule": "in-code", "fire_time": START + 1800}]


async def test_bad_registrations_raise_with_the_text(redis_url: str, namespace: str) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, schedules={"ok": "@daily"})
    for spec in ("0 0 25 * * *", "cron.missing", "@every 5 parsecs", "1 2 3"):
        with pytest.raises(RegistrationError, match=spec.replace(".", r"\.")):
            pool.periodically_enqueue(spec, "job")
    with pytest.raises(RegistrationError, match="hour"):
        pool.daily("job", hour=24)
    with pytest.raises(RegistrationError, match="misfire"):
        pool.hourly("job", misfire="burst")
    with pytest.raises(RegistrationError, match="invalid schedule name 'has space'"):
        pool.hourly("job", name="has space")
    # the value is quoted as given (the message was patched: 'a schedule name')
    with pytest.raises(RegistrationError, match=r"^invalid schedule name 'a job name': use 1-200"):
        check_names("send", "a job name")
    with pytest.raises(RegistrationError, match=r"^invalid job name 'job name x': use 1-200"):
        check_names("job name x", "ok")
    # the spec and the job name swapped: the error says which name, and what it looks like
    with pytest.raises(RegistrationError, match=r"invalid job name '\*/5 .*\(a schedule spec\?"):
        pool.periodically_enqueue("ping", "*/5 * * * *")
    assert pool.periodically_enqueue("cron.ok", "job").schedule.expr == "0 0 0 * * *"
    with pytest.raises(RegistrationError, match="already registered"):
        pool.every(60, "job")
    client = Client.from_url(redis_url, namespace=namespace)
    with pytest.raises(RegistrationError, match=r"61 \* \* \* \*"):
        await client.add_schedule("bad", "job", "61 * * * *")
    with pytest.raises(RegistrationError, match="Nowhere/Land"):
        await client.add_schedule("bad", "job", "@daily", tz="Nowhere/Land")
    assert await client.schedules() == []
    await client.aclose()


def test_named_schedules_from_project_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.errands.schedules]\nworkhours_15m = "0 */15 9-17 * * ?"\nnightly = "@daily"\n'
    )
    (tmp_path / "errands.toml").write_text('[schedules]\nnightly = "0 30 2 * * *"\n')
    monkeypatch.chdir(tmp_path)
    pool = WorkerPool.from_url(redis_url, schedules={"hourly": "@hourly"})
    assert pool.periodically_enqueue("cron.workhours_15m", "a").schedule.expr == (
        "0 */15 9-17 * * *"
    )
    assert pool.periodically_enqueue("cron.nightly", "b").schedule.expr == "0 30 2 * * *"
    assert pool.periodically_enqueue("cron.hourly", "c").schedule.expr == "0 0 * * * *"
    (tmp_path / "errands.toml").write_text("[schedules\n")
    with pytest.raises(RegistrationError, match=r"errands\.toml"):
        pool.periodically_enqueue("cron.nightly", "d")


class FastHostClock(SystemClock):
    """The clock of a host running 90 s ahead."""

    def now(self) -> float:
        return time.time() + 90.0


async def test_fire_times_follow_the_redis_clock_not_the_hosts(
    redis: Redis, namespace: str
) -> None:
    """Issue 12 (defect 9): each pool decided fire times by its own host's clock, so a host
    running ahead fired early (and hosts disagreed); they follow the Redis clock now, as the
    heartbeats do."""
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, clock=FastHostClock())

    @pool.job("tick")
    async def tick(job: Job) -> None: ...

    pool.every(60, "tick", name="minutely")
    async with pool:

        async def started() -> bytes | None:
            value: bytes | None = await redis.hget(keys.schedule_state("minutely"), "last")
            return value

        last = await eventually(started, 5, "the schedule to start")
    redis_now = (await redis.time())[0]
    assert abs(int(last) / 1000 - redis_now) < 5, (int(last) / 1000, redis_now)
