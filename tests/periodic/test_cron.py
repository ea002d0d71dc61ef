"""The cron evaluator and the daylight-saving policy, case by case (pure: no Redis, no clock).
Times are local wall times of the schedule's zone; ``b`` marks the second occurrence of a
repeated wall time (fold=1)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from errands import RegistrationError
from errands.periodic.cron import CronError, parse_cron
from errands.periodic.spec import parse_schedule


def at(tz: str, text: str) -> float:
    """``"2026-03-29 03:10"`` (``"... b"``: the second occurrence) in ``tz`` -> epoch seconds."""
    fold = 1 if text.endswith(" b") else 0
    wall = datetime.fromisoformat(text.removesuffix(" b"))
    return wall.replace(tzinfo=ZoneInfo(tz), fold=fold).timestamp()


def local(tz: str, instant: float) -> str:
    moment = datetime.fromtimestamp(instant, ZoneInfo(tz))
    text = moment.replace(tzinfo=None).isoformat(sep=" ", timespec="minutes")
    if moment.second:
        text = moment.replace(tzinfo=None).isoformat(sep=" ")
    return text + (" b" if moment.fold else "")


def runs(spec: str, tz: str, start: str, count: int) -> list[str]:
    schedule = parse_schedule(spec, tz=tz)
    out, t = [], at(tz, start)
    for _ in range(count):
        t = schedule.next_fire(t)
        out.append(local(tz, t))
    return out


# -- issue 13, defect 1: a single-value range is that value, not '*' ---------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("2-59 8-8 * * *", ["2026-01-01 08:02", "2026-01-01 08:03"]),
        ("58-58 * * * 2", ["2026-01-06 00:58", "2026-01-06 01:58"]),  # Tuesdays at :58
        ("20 * 26-26 * *", ["2026-01-26 00:20", "2026-01-26 01:20"]),
        ("0 9-9 * * *", ["2026-01-01 09:00", "2026-01-02 09:00"]),
        ("30-30 0 9-9/3 * * *", ["2026-01-01 09:00:30", "2026-01-02 09:00:30"]),
        ("0 0 1 6-6 *", ["2026-06-01 00:00", "2027-06-01 00:00"]),
    ],
)
def test_single_value_ranges(spec: str, expected: list[str]) -> None:
    assert runs(spec, "UTC", "2026-01-01 00:00", 2) == expected


# -- issue 13, defect 2: day of month with day of week, as Vixie cron --------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # '*/7' starts with '*': both must match (days 1, 8, 15, 22, 29 that are Sun-Wed)
        ("47 8 */7 * 0-3", ["2026-02-01", "2026-02-08", "2026-02-15", "2026-02-22"]),
        ("0 0 */10 * FRI", ["2026-05-01", "2026-07-31", "2026-08-21", "2026-09-11"]),
        ("0 0 * * MON", ["2026-02-02", "2026-02-09", "2026-02-16", "2026-02-23"]),
        ("0 0 ? * MON", ["2026-02-02", "2026-02-09", "2026-02-16", "2026-02-23"]),
        ("0 0 10 * *", ["2026-02-10", "2026-03-10", "2026-04-10", "2026-05-10"]),
        ("0 0 10 * */3", ["2026-05-10", "2026-06-10", "2026-10-10", "2027-01-10"]),  # Sun/Wed/Sat
        # both restricted: either matches (the 13th, and every Friday)
        ("0 0 13 * FRI", ["2026-02-06", "2026-02-13", "2026-02-20", "2026-02-27"]),
        ("0 0 1-7 * MON", ["2026-02-01", "2026-02-02", "2026-02-03", "2026-02-04"]),
    ],
)
def test_day_of_month_and_day_of_week(spec: str, expected: list[str]) -> None:
    got = runs(spec, "UTC", "2026-01-31 23:59", 4)
    assert [g[:10] for g in got] == expected


# -- grammar ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0 12 * JAN,jul sun", ["2026-01-04 12:00", "2026-01-11 12:00"]),
        ("0 12 * * 7", ["2026-01-04 12:00", "2026-01-11 12:00"]),  # 7 is Sunday
        ("0 12 * * FRI-MON", ["2026-01-02 12:00", "2026-01-03 12:00", "2026-01-04 12:00"]),
        ("50-10/10 0 * * *", ["2026-01-01 00:10", "2026-01-01 00:50", "2026-01-02 00:00"]),
        ("5/20 0 * * *", ["2026-01-01 00:05", "2026-01-01 00:25", "2026-01-01 00:45"]),
        ("0 0 L * *", ["2026-01-31 00:00", "2026-02-28 00:00", "2026-03-31 00:00"]),
        ("0 0 LW * *", ["2026-01-30 00:00", "2026-02-27 00:00", "2026-03-31 00:00"]),
        ("0 0 1W * *", ["2026-02-02 00:00", "2026-03-02 00:00", "2026-04-01 00:00"]),
        ("0 0 31W * *", ["2026-01-30 00:00", "2026-03-31 00:00", "2026-05-29 00:00"]),
        ("0 0 * * 5L", ["2026-01-30 00:00", "2026-02-27 00:00", "2026-03-27 00:00"]),
        ("0 0 * * L5", ["2026-01-30 00:00", "2026-02-27 00:00", "2026-03-27 00:00"]),
        ("0 0 * * MON#2", ["2026-01-12 00:00", "2026-02-09 00:00", "2026-03-09 00:00"]),
        ("0 0 * 2 SUN#5", ["2032-02-29 00:00", "2060-02-29 00:00", "2088-02-29 00:00"]),
        ("0 0 29 2 *", ["2028-02-29 00:00", "2032-02-29 00:00", "2036-02-29 00:00"]),
        ("*/20 * * * * *", ["2026-01-01 00:00:20", "2026-01-01 00:00:40", "2026-01-01 00:01"]),
    ],
)
def test_grammar(spec: str, expected: list[str]) -> None:
    assert runs(spec, "UTC", "2026-01-01 00:00", len(expected)) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("*/0 * * * *", "bad step"),
        ("60 * * * *", "out of range"),
        ("0 24 * * *", "out of range"),
        ("0 0 0 * *", "out of range"),
        ("0 0 * 13 *", "out of range"),
        ("0 0 * * 8", "out of range"),
        ("0 0 * * 1#6", "N#K"),
        ("0 0 L-2 * *", "bad day-of-month"),
        ("5- * * * *", "bad minute"),
        ("1,,2 * * * *", "empty item"),
        ("0 0 * * FUNDAY", "bad day-of-week"),
        ("0 0 31 2,4 *", "none of the months"),
        ("0 0 30 2 *", "none of the months"),
        ("0 0 30W 2 *", "never matches"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(RegistrationError, match=message) as info:
        parse_schedule(spec)
    assert spec in str(info.value)


@pytest.mark.parametrize(
    ("hours", "step"),
    [("*", 3600), ("*/2", 7200), ("*/5", 4 * 3600), ("3", 86_400), ("1,23", 7200)],
)
def test_hour_step(hours: str, step: int) -> None:
    assert parse_cron(f"0 0 {hours} * * *").hour_step() == step


def test_cron_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="expected 6 fields"):
        parse_cron("0 0 * * *")
    assert issubclass(CronError, ValueError)


# -- the daylight-saving policy, zone by zone ---------------------------------------------------
BERLIN, NEW_YORK, LORD_HOWE = "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"
SANTIAGO, SYDNEY, KOLKATA = "America/Santiago", "Australia/Sydney", "Asia/Kolkata"


@pytest.mark.parametrize(
    ("spec", "tz", "start", "expected"),
    [
        # issue 13, defect 3: 02:10 does not exist on 2026-03-29; no extra run at 03:00
        ("10 * * * *", BERLIN, "2026-03-29 00:30", ["2026-03-29 01:10", "2026-03-29 03:10"]),
        ("*/20 * * * *", BERLIN, "2026-03-29 01:30", ["2026-03-29 01:40", "2026-03-29 03:00"]),
        ("0 */3 * * *", BERLIN, "2026-03-28 23:30", ["2026-03-29 00:00", "2026-03-29 03:00"]),
        # named hours: the skipped wall times run once, right after the gap
        ("30 2 * * *", BERLIN, "2026-03-29 00:00", ["2026-03-29 03:00", "2026-03-30 02:30"]),
        ("*/20 2 * * *", BERLIN, "2026-03-29 00:00", ["2026-03-29 03:00", "2026-03-30 02:00"]),
        ("30 1-3 * * *", NEW_YORK, "2026-03-08 00:00", ["2026-03-08 01:30", "2026-03-08 03:00"]),
        # named hours, '*' minutes: still once a day per wall time (cron daemons differ)
        (
            "*/15 1 * * *",
            NEW_YORK,
            "2026-11-01 00:50",
            [
                "2026-11-01 01:00",
                "2026-11-01 01:15",
                "2026-11-01 01:30",
                "2026-11-01 01:45",
                "2026-11-02 01:00",
            ],
        ),
        ("*/15 2 * * *", NEW_YORK, "2026-03-08 00:00", ["2026-03-08 03:00", "2026-03-09 02:00"]),
        # clocks back an hour: '*' hours run both times, '*/2' once, named hours once
        ("@hourly", BERLIN, "2026-10-25 01:30", ["2026-10-25 02:00", "2026-10-25 02:00 b"]),
        (
            "0 */2 * * *",
            BERLIN,
            "2026-10-24 23:30",
            ["2026-10-25 00:00", "2026-10-25 02:00", "2026-10-25 04:00"],
        ),
        ("0 */2 * * *", BERLIN, "2026-10-25 02:30 b", ["2026-10-25 04:00", "2026-10-25 06:00"]),
        ("30 2 * * *", BERLIN, "2026-10-25 02:00 b", ["2026-10-26 02:30", "2026-10-27 02:30"]),
        # Lord Howe Island: clocks go back 30 minutes (02:00 -> 01:30) on 2026-04-05 ...
        (
            "40 * * * *",
            LORD_HOWE,
            "2026-04-05 00:00",
            ["2026-04-05 00:40", "2026-04-05 01:40", "2026-04-05 02:40"],
        ),
        ("*/20 * * * *", LORD_HOWE, "2026-04-05 01:30", ["2026-04-05 01:40", "2026-04-05 02:00"]),
        ("45 1 * * *", LORD_HOWE, "2026-04-05 01:50 b", ["2026-04-06 01:45", "2026-04-07 01:45"]),
        # ... and forward 30 minutes (02:00 -> 02:30) on 2026-10-04
        ("15 2 * * *", LORD_HOWE, "2026-10-04 00:00", ["2026-10-04 02:30", "2026-10-05 02:15"]),
        ("15 * * * *", LORD_HOWE, "2026-10-04 01:00", ["2026-10-04 01:15", "2026-10-04 03:15"]),
        ("45 * * * *", LORD_HOWE, "2026-10-04 01:00", ["2026-10-04 01:45", "2026-10-04 02:45"]),
        # Santiago changes at midnight: 2026-09-06 00:00 -> 01:00, 2026-04-05 00:00 -> 04-04 23:00
        ("@daily", SANTIAGO, "2026-09-05 12:00", ["2026-09-06 01:00", "2026-09-07 00:00"]),
        ("*/30 * * * *", SANTIAGO, "2026-09-05 23:10", ["2026-09-05 23:30", "2026-09-06 01:00"]),
        ("@daily", SANTIAGO, "2026-04-04 12:00", ["2026-04-05 00:00", "2026-04-06 00:00"]),
        ("30 23 * * *", SANTIAGO, "2026-04-04 12:00", ["2026-04-04 23:30", "2026-04-05 23:30"]),
        ("30 * * * *", SANTIAGO, "2026-04-04 23:00", ["2026-04-04 23:30", "2026-04-04 23:30 b"]),
        # southern hemisphere, whole hours: Sydney goes forward 2026-10-04 02:00 -> 03:00
        ("30 2 * * *", SYDNEY, "2026-10-04 00:00", ["2026-10-04 03:00", "2026-10-05 02:30"]),
        ("30 * * * *", SYDNEY, "2026-10-04 01:00", ["2026-10-04 01:30", "2026-10-04 03:30"]),
        # a 30-minute offset without clock changes
        ("0 9 * * *", KOLKATA, "2026-01-01 00:00", ["2026-01-01 09:00", "2026-01-02 09:00"]),
    ],
)
def test_daylight_saving_policy(spec: str, tz: str, start: str, expected: list[str]) -> None:
    assert runs(spec, tz, start, len(expected)) == expected


def test_kolkata_is_utc_plus_five_thirty() -> None:
    schedule = parse_schedule("0 9 * * *", tz=KOLKATA)
    assert schedule.next_fire(at("UTC", "2026-01-01 00:00")) == at("UTC", "2026-01-01 03:30")


@pytest.mark.parametrize(
    ("spec", "tz", "day", "count"),
    [
        ("@hourly", BERLIN, "2026-10-25", 25),
        ("@hourly", BERLIN, "2026-03-29", 23),
        ("0 */2 * * *", BERLIN, "2026-10-25", 12),
        ("@hourly", LORD_HOWE, "2026-04-05", 24),  # 24.5 real hours: the repeat is too soon
        ("@hourly", LORD_HOWE, "2026-10-04", 23),  # 23.5 real hours: 02:00 does not exist
        ("*/30 * * * *", LORD_HOWE, "2026-10-04", 47),
        ("@hourly", SANTIAGO, "2026-04-04", 25),
    ],
)
def test_runs_per_day(spec: str, tz: str, day: str, count: int) -> None:
    """Runs on one local date."""
    schedule = parse_schedule(spec, tz=tz)
    begin = at(tz, f"{day} 00:00") - 1
    end = begin + 86_400 + 2 * 3600
    fires = [t for t in schedule.fire_times(begin, end) if local(tz, t)[:10] == day]
    assert len(fires) == count
