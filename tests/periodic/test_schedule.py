"""Pure tests of schedule specs and fire times (no Redis, no clock, no sleeping)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from errands import RegistrationError
from errands.periodic.spec import format_duration, parse_duration, parse_schedule

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def ny(*args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=NY, fold=fold).timestamp()  # type: ignore[misc]


def fires(spec: str, start: float, end: float, tz: str = "UTC") -> list[float]:
    return parse_schedule(spec, tz=tz).fire_times(start, end)


# -- parsing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expr"),
    [
        ("0 0 * * * *", "0 0 * * * *"),  # 6 fields: seconds first
        ("*/5 * * * *", "0 */5 * * * *"),  # 5 fields: at second 0
        ("0 0 0 * * ?", "0 0 0 * * *"),  # '?' accepted as '*'
        ("0 0 12 ? * MON-FRI", "0 0 12 * * MON-FRI"),
        ("  15 10 * * 1  ", "0 15 10 * * 1"),
        ("@yearly", "0 0 0 1 1 *"),
        ("@annually", "0 0 0 1 1 *"),
        ("@monthly", "0 0 0 1 * *"),
        ("@weekly", "0 0 0 * * 0"),
        ("@daily", "0 0 0 * * *"),
        ("@midnight", "0 0 0 * * *"),
        ("@HOURLY", "0 0 * * * *"),
    ],
)
def test_cron_forms(spec: str, expr: str) -> None:
    assert parse_schedule(spec).expr == expr


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1h30m", 5_400_000),
        ("90s", 90_000),
        ("250ms", 250),
        ("1.5h", 5_400_000),
        ("1m30s500ms", 90_500),
        (" 2h 5m ", 7_500_000),
    ],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration(text) == ms
    assert parse_schedule(f"@every {text}").interval_ms == ms
    assert parse_duration(format_duration(ms)) == ms


def test_timedelta_is_an_interval() -> None:
    schedule = parse_schedule(timedelta(minutes=5))
    assert schedule.interval_ms == 300_000
    assert schedule.text == "@every 5m"


@pytest.mark.parametrize(
    "spec",
    [
        "* * *",
        "0 0 0 0 * * * *",
        "61 * * * *",
        "0 0 25 * * *",
        "0 0 0 30 2 *",  # never fires
        "bogus spec here x y",
        "@fortnightly",
        "@every",
        "@every 10",
        "@every 5 minutes",
        "@every 0s",
        "",
    ],
)
def test_bad_specs_raise_with_the_text(spec: str) -> None:
    with pytest.raises(RegistrationError) as info:
        parse_schedule(spec)
    assert spec.strip() in str(info.value) or not spec.strip()


def test_unknown_time_zone() -> None:
    with pytest.raises(RegistrationError, match="Mars/Olympus"):
        parse_schedule("@daily", tz="Mars/Olympus")


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(seconds=-5)])
def test_bad_intervals(bad: timedelta) -> None:
    with pytest.raises(RegistrationError, match="positive"):
        parse_schedule(bad)


def test_named_schedules() -> None:
    named = {
        "workhours_15m": "0 */15 9-17 * * ?",
        "cron.nightly": "@daily",
        "cron": {"nested": "*/5 * * * *"},
        "alias": "cron.nightly",
    }
    assert parse_schedule("cron.workhours_15m", named=named).expr == "0 */15 9-17 * * *"
    assert parse_schedule("cron.nightly", named=named).expr == "0 0 0 * * *"
    assert parse_schedule("cron.nested", named=named).expr == "0 */5 * * * *"
    assert parse_schedule("cron.alias", named=named).expr == "0 0 0 * * *"
    assert parse_schedule("cron.workhours_15m", named=named).spec == "cron.workhours_15m"
    with pytest.raises(RegistrationError, match=r"cron\.missing.*known: .*workhours_15m"):
        parse_schedule("cron.missing", named=named)
    with pytest.raises(RegistrationError, match="refers to itself"):
        parse_schedule("cron.loop", named={"loop": "cron.loop"})
    with pytest.raises(RegistrationError, match="nope nope"):
        parse_schedule("cron.bad", named={"bad": "nope nope"})


# -- fire times -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        ("0 0 * * * *", utc(2026, 1, 1, 10, 0, 0), utc(2026, 1, 1, 11)),
        ("0 0 * * * *", utc(2026, 1, 1, 10, 59, 59) + 0.5, utc(2026, 1, 1, 11)),
        ("*/5 * * * *", utc(2026, 1, 1, 10, 3), utc(2026, 1, 1, 10, 5)),
        ("*/10 * * * * *", utc(2026, 1, 1, 10, 0, 10) - 0.001, utc(2026, 1, 1, 10, 0, 10)),
        ("@monthly", utc(2026, 1, 15), utc(2026, 2, 1)),
        ("@weekly", utc(2026, 1, 1), utc(2026, 1, 4)),  # 2026-01-01 is a Thursday
        ("@yearly", utc(2026, 1, 1), utc(2027, 1, 1)),
        ("0 0 12 * * MON-FRI", utc(2026, 1, 2, 13), utc(2026, 1, 5, 12)),
        ("@every 1h30m", utc(2026, 1, 1, 0, 10), utc(2026, 1, 1, 1, 30)),
        ("@every 1h30m", utc(2026, 1, 1, 1, 30), utc(2026, 1, 1, 3)),
        ("@every 250ms", 1000.1, 1000.25),
    ],
)
def test_next_fire(spec: str, after: float, expected: float) -> None:
    assert parse_schedule(spec).next_fire(after) == expected


def test_time_zone_shifts_cron_fields() -> None:
    berlin = parse_schedule("@midnight", tz="Europe/Berlin")
    assert berlin.next_fire(utc(2026, 1, 1, 12)) == utc(2026, 1, 1, 23)  # CET = UTC+1
    assert berlin.next_fire(utc(2026, 7, 1, 12)) == utc(2026, 7, 1, 22)  # CEST = UTC+2


def test_latest_fire() -> None:
    s = parse_schedule("*/10 * * * *")
    assert s.latest_fire(utc(2026, 1, 1, 0, 10), utc(2026, 1, 3, 5, 7)) == utc(2026, 1, 3, 5)
    assert s.latest_fire(utc(2026, 1, 1, 0, 10), utc(2026, 1, 1, 0, 10)) == utc(2026, 1, 1, 0, 10)
    yearly = parse_schedule("@yearly")
    assert yearly.latest_fire(utc(2027, 1, 1), utc(2030, 6, 1)) == utc(2030, 1, 1)
    every = parse_schedule("@every 45m")
    assert every.latest_fire(2700.0, 10_000.0) == 8100.0


# -- DST policy, America/New_York -------------------------------------------------------------
def test_fall_back_hourly_fires_once_per_real_hour() -> None:
    got = fires("@hourly", ny(2026, 11, 1, 0, 30), ny(2026, 11, 1, 3, 30), "America/New_York")
    assert got == [
        utc(2026, 11, 1, 5),  # 01:00 EDT
        utc(2026, 11, 1, 6),  # 01:00 EST (the repeated hour)
        utc(2026, 11, 1, 7),  # 02:00 EST
        utc(2026, 11, 1, 8),  # 03:00 EST
    ]
    day = fires("@hourly", ny(2026, 11, 1) - 1, ny(2026, 11, 2) - 1, "America/New_York")
    assert len(day) == 25


def test_fall_back_fixed_hour_fires_once_at_first_occurrence() -> None:
    got = fires("30 1 * * *", ny(2026, 10, 31), ny(2026, 11, 3), "America/New_York")
    assert got == [
        utc(2026, 10, 31, 5, 30),  # 01:30 EDT
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT, first occurrence only
        utc(2026, 11, 2, 6, 30),  # 01:30 EST
    ]


def test_fall_back_from_inside_the_repeated_hour() -> None:
    s = parse_schedule("@hourly", tz="America/New_York")
    first_0130 = ny(2026, 11, 1, 1, 30, fold=0)
    assert s.next_fire(first_0130) == utc(2026, 11, 1, 6)  # 01:00 EST, still ahead
    assert s.next_fire(ny(2026, 11, 1, 1, 30, fold=1)) == utc(2026, 11, 1, 7)  # 02:00 EST
    fixed = parse_schedule("0 1 * * *", tz="America/New_York")
    assert fixed.next_fire(first_0130) == utc(2026, 11, 2, 6)  # not again at 01:00 EST


def test_spring_forward_skipped_time_fires_at_end_of_gap() -> None:
    got = fires("30 2 * * *", ny(2026, 3, 7), ny(2026, 3, 10), "America/New_York")
    assert got == [
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 8, 7, 0),  # 02:30 does not exist: 03:00 EDT, the first instant after
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]
    hourly = fires("@hourly", ny(2026, 3, 8) - 1, ny(2026, 3, 9) - 1, "America/New_York")
    assert len(hourly) == 23
    assert hourly[1:3] == [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7)]  # 01:00 EST, 03:00 EDT


def test_every_is_absolute_across_dst() -> None:
    got = fires("@every 1h", utc(2026, 11, 1, 4), utc(2026, 11, 2, 4), "America/New_York")
    assert got == [utc(2026, 11, 1, 5) + 3600 * i for i in range(24)]
    got = fires("@every 1h", utc(2026, 3, 8, 4), utc(2026, 3, 9, 4), "America/New_York")
    assert got == [utc(2026, 3, 8, 5) + 3600 * i for i in range(24)]  # across the jump too


def reference(
    matches: Callable[[datetime], bool], wildcard_hour: bool, start: float, end: float
) -> list[float]:
    """Every fire time in (start, end] by the documented policy, by walking real time minute by
    minute with zoneinfo: a real instant fires when its wall time matches (only the first
    occurrence of a repeated wall time unless the hour field is a wildcard); the first instant
    after a spring-forward gap fires when any skipped wall time matches and the hour field is
    not a wildcard. (New York's changes are whole hours: no wildcard run comes too soon.)"""
    out: list[float] = []
    t = int(start) // 60 * 60 + 60
    prev_wall = datetime.fromtimestamp(t - 60, NY).replace(tzinfo=None)
    while t <= end:
        local = datetime.fromtimestamp(t, NY)
        wall = local.replace(tzinfo=None)
        skipped = []
        gap = wall - prev_wall - timedelta(minutes=1)
        while gap > timedelta(0):  # wall times jumped over by spring forward
            skipped.append(wall - gap)
            gap -= timedelta(minutes=1)
        fires_here = matches(wall) and (wildcard_hour or local.fold == 0)
        if fires_here or (not wildcard_hour and any(matches(w) for w in skipped)):
            out.append(float(t))
        prev_wall = wall
        t += 60
    return out


@pytest.mark.parametrize(
    ("spec", "matches", "wildcard_hour"),
    [
        ("@hourly", lambda w: w.minute == 0, True),
        ("*/20 * * * *", lambda w: w.minute % 20 == 0, True),
        ("15 */2 * * *", lambda w: w.minute == 15 and w.hour % 2 == 0, True),
        ("30 2 * * *", lambda w: (w.hour, w.minute) == (2, 30), False),
        ("30 1 * * *", lambda w: (w.hour, w.minute) == (1, 30), False),
        ("0 1 * * *", lambda w: (w.hour, w.minute) == (1, 0), False),
        ("45 1 * * *", lambda w: (w.hour, w.minute) == (1, 45), False),
        ("*/30 1-3 * * *", lambda w: w.minute % 30 == 0 and 1 <= w.hour <= 3, False),
        ("@daily", lambda w: (w.hour, w.minute) == (0, 0), False),
    ],
)
@pytest.mark.parametrize("day", [(2026, 3, 8), (2026, 11, 1)])
def test_dst_days_match_zoneinfo_reference(
    spec: str,
    matches: Callable[[datetime], bool],
    wildcard_hour: bool,
    day: tuple[int, int, int],
) -> None:
    start = ny(*day) - 2 * 3600
    end = start + 30 * 3600
    expected = reference(matches, wildcard_hour, start, end)
    assert fires(spec, start, end, "America/New_York") == expected


# -- property: next_fire(t) > t, and nothing fires in between --------------------------------
SPECS = [
    "* * * * * *",
    "*/7 * * * * *",
    "0 */5 * * * *",
    "@hourly",
    "30 2 * * *",
    "0 1 * * *",
    "*/20 1-3 * * *",
    "0 0 12 * * MON-FRI",
    "@monthly",
    "0 0 0 29 2 *",
    "@every 1h30m",
    "@every 250ms",
    "@every 7s",
]
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"]


def test_next_fire_is_always_after_now() -> None:
    rng = random.Random(20260308)
    dst_days = [ny(2026, 3, 8), ny(2026, 11, 1), utc(2026, 3, 29), utc(2026, 10, 25)]
    for _ in range(1500):
        schedule = parse_schedule(rng.choice(SPECS), tz=rng.choice(ZONES))
        if rng.random() < 0.5:
            t = rng.choice(dst_days) + rng.uniform(-6, 6) * 3600
        else:
            t = rng.uniform(utc(2020, 1, 1), utc(2035, 1, 1))
        nxt = schedule.next_fire(t)
        assert nxt > t, (schedule, t)
        between = t + (nxt - t) * rng.random()
        assert schedule.next_fire(between) == nxt or between >= nxt, (schedule, t, between)
