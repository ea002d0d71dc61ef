"""Bad schedule values: refused where they are given, and one schedule that fails at a tick
does not stop the others of that tick."""

from __future__ import annotations

import dataclasses
import logging
import re
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError

from errands import Client, FakeClock, RegistrationError, WorkerPool
from errands.periodic.store import PeriodicSchedule, make_periodic
from tests.periodic.support import pool, queued_args

START = 1_767_225_600.0


async def test_a_failing_schedule_does_not_stop_the_others(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(START)
    good = make_periodic("@every 10s", "tick", {"who": "good"}, name="good")
    # a schedule that fails each time it is fired (a bool priority the script refuses)
    bad = dataclasses.replace(make_periodic("@every 10s", "tick", name="bad"), priority=True)
    e = pool(redis, namespace, clock, [bad, good], "p1")
    with caplog.at_level(logging.ERROR, "errands.periodic"):
        await e.tick_once()
        for _ in range(3):
            clock.advance(10)
            await e.tick_once()
    assert await queued_args(redis, namespace) == [{"who": "good"}] * 3
    failures = [r for r in caplog.records if "schedule 'bad' failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info  # once, with its traceback


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("grace", [NAN, INF, "60", None, True, 0.5])
def test_misfire_grace_must_be_finite_seconds(grace: object) -> None:
    with pytest.raises(RegistrationError, match="misfire_grace"):
        make_periodic("@every 1s", "j", misfire_grace=grace)  # type: ignore[arg-type]


def test_misfire_grace_takes_seconds_or_a_timedelta() -> None:
    assert make_periodic("@every 1s", "j", misfire_grace=timedelta(minutes=2)).misfire_grace == 120
    assert make_periodic("@every 1s", "j", misfire_grace=5).misfire_grace == 5


@pytest.mark.parametrize("value", ["no", 2, None])
def test_skip_if_running_must_be_a_bool(value: object) -> None:
    with pytest.raises(RegistrationError, match="skip_if_running must be True or False"):
        make_periodic("@every 1s", "j", skip_if_running=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_args_must_be_finite(value: float) -> None:
    with pytest.raises(RegistrationError, match=r"args of schedule .j.*x\[0\] is not a finite"):
        make_periodic("@every 1s", "j", {"x": [value]})


@pytest.mark.parametrize(
    "spec", ["0 ² * * *", "0 ٣ * * *", "*/² * * * *", "0 0 * * 1#²", "0 0 ²W * *"]
)
def test_cron_takes_ascii_digits_only(spec: str) -> None:
    with pytest.raises(RegistrationError, match=f"bad cron spec '{re.escape(spec)}'"):
        make_periodic(spec, "j")


@pytest.mark.parametrize(
    "spec", ["@every 99999999999999999999999h", "@every ٣s", timedelta(days=999_999_999)]
)
def test_every_spec_must_be_ascii_and_not_absurd(spec: str | timedelta) -> None:
    with pytest.raises(RegistrationError, match=r"duration|interval"):
        make_periodic(spec, "j")


def test_the_documented_defaults_of_a_schedule() -> None:
    """docs/periodic.md's options table: named after its job, UTC, misfire "skip" after 60 s
    late, skip_if_running False, priority 0, no dedup."""
    pool = WorkerPool.from_url("redis://localhost:1/0", namespace="x")
    got = pool.periodically_enqueue("0 3 * * *", "cleanup")
    assert (got.name, got.schedule.tz, got.misfire, got.misfire_grace) == (
        "cleanup",
        "UTC",
        "skip",
        60.0,
    )
    assert (got.skip_if_running, got.priority, got.dedup, got.args) == (False, 0, None, {})
    daily = pool.daily("report", hour=9, name="d")
    hourly = pool.hourly("report", name="h")
    assert (daily.schedule.text, hourly.schedule.text) == ("0 0 9 * * *", "0 0 * * * *")


async def test_every_refuses_bad_intervals(redis_url: str, namespace: str) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    for interval in (NAN, INF, None, True, "x", 0, -1, 1e13, timedelta(days=999_999_999)):
        with pytest.raises(RegistrationError, match=r"interval|duration"):
            pool.every(interval, "j")  # type: ignore[arg-type]
    assert pool.every(1.5, "j").schedule.interval_ms == 1500
    assert pool.every(timedelta(minutes=1), "k").schedule.interval_ms == 60_000
    assert pool.every("2s", "l").schedule.interval_ms == 2000


async def test_add_schedule_refuses_bad_values(client: Client) -> None:
    with pytest.raises(RegistrationError, match="enabled must be True or False"):
        await client.add_schedule("s", "j", "@every 1s", enabled="no")  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="priority"):
        await client.add_schedule("s", "j", "@every 1s", priority=True)
    with pytest.raises(RegistrationError, match="misfire_grace"):
        await client.add_schedule("s", "j", "@every 1s", misfire_grace=INF)
    with pytest.raises(RegistrationError, match="not a finite number"):
        await client.add_schedule("s", "j", "@every 1s", args={"x": NAN})
    assert await client.schedules() == []


async def test_a_refusal_of_the_server_is_not_blamed_on_one_schedule(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A demoted master's READONLY (or OOM, MISCONF...) is the server's state, not a schedule's:
    the tick raises it to the enqueuer's retry loop instead of logging each due schedule as a
    failed one (it did since the schedules of a tick were isolated)."""
    e = pool(redis, namespace, FakeClock(START), [make_periodic("@every 10s", "tick")], "p1")

    async def refused(*args: object) -> int:
        raise ReadOnlyError("You can't write against a read only replica.")

    e._handle = refused  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, "errands.periodic"), pytest.raises(ReadOnlyError):
        await e.tick_once()
    assert not [r for r in caplog.records if "failed" in r.getMessage()]


async def test_a_replaced_schedule_that_fails_is_logged_again(
    redis: Redis, namespace: str, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing runtime schedule is logged once; replaced by a Client, its new definition's
    failure is logged again (the flag outlived the definition it was about)."""
    clock = FakeClock(START)
    e = pool(redis, namespace, clock, [], "p1")
    real = e._handle

    async def failing(periodic: PeriodicSchedule, *args: object) -> int:
        if periodic.name == "rt":
            raise ValueError("this schedule cannot fire")
        return await real(periodic, *args)  # type: ignore[arg-type]

    e._handle = failing  # type: ignore[method-assign]
    await client.add_schedule("rt", "tick", "@every 10s")
    with caplog.at_level(logging.ERROR, "errands.periodic"):
        for _ in range(3):
            await e.tick_once()
            clock.advance(10)
        await client.add_schedule("rt", "tick", "@every 20s")
        for _ in range(2):
            await e.tick_once()
            clock.advance(20)
    failures = [r for r in caplog.records if "schedule 'rt' failed" in r.getMessage()]
    assert len(failures) == 2, failures


async def test_a_huge_misfire_grace_is_taken_and_listed(client: Client) -> None:
    """No upper bound on misfire_grace (only Python compares it): a schedule stored with
    timedelta.max by an older errands stays readable, listed and fired."""
    assert make_periodic("@every 1s", "j", misfire_grace=timedelta.max).misfire_grace > 8e13
    await client.add_schedule("s", "j", "@every 1s", misfire_grace=timedelta.max)
    assert [s.name for s in await client.schedules()] == ["s"]
