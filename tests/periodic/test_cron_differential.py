"""Differential test: errands' cron schedules against an independent implementation.

Random specs (ranges, steps, lists, single-value ranges, names, day of month with day of week,
seconds fields) x time zones x starting instants around their clock changes: the next fire
times errands computes must equal those of ``tests/support/cron_reference.py`` (cronsim for
the fields, the documented daylight-saving policy applied by brute force).

Seeded: ``ERRANDS_CRON_SEED`` picks another seed, ``ERRANDS_CRON_CASES`` runs more cases
(default 3000; a failure prints the spec, zone and instant to reproduce it).
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError

from errands import RegistrationError
from errands.periodic.spec import parse_schedule
from tests.support.cron_reference import reference_fires

SEED = int(os.environ.get("ERRANDS_CRON_SEED", "20261013"))
CASES = int(os.environ.get("ERRANDS_CRON_CASES", "3000"))
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute clock changes, southern hemisphere
    "America/Santiago",  # southern hemisphere, changes at midnight
    "Australia/Sydney",  # southern hemisphere
    "Australia/Adelaide",  # 30-minute offset (+09:30/+10:30)
    "America/St_Johns",  # 30-minute offset (-03:30/-02:30)
    "Asia/Kolkata",  # 30-minute offset, no clock changes
]
FIELDS = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def transitions(tz: str) -> list[int]:
    """The instants in 2025-2027 when ``tz``'s UTC offset changes."""
    zone = ZoneInfo(tz)

    def offset(t: int) -> object:
        return datetime.fromtimestamp(t, zone).utcoffset()

    out = []
    t = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2028, 1, 1, tzinfo=UTC).timestamp())
    while t < end:
        lo, hi = t, t + 6 * 3600
        if offset(lo) != offset(hi):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == offset(lo) else (lo, mid)
            out.append(hi)
        t += 6 * 3600
    return out


def value(rng: random.Random, index: int) -> str:
    low, high = FIELDS[index]
    v = rng.randint(low, high)
    if index == 4 and rng.random() < 0.2:
        return MONTHS[v - 1]
    if index == 5 and v < 7 and rng.random() < 0.2:
        return DAYS[v]
    return str(v)


def item(rng: random.Random, index: int) -> str:
    low, high = FIELDS[index]
    kind = rng.choice(["one", "range", "same", "step", "range-step", "start-step"])
    if kind == "one":
        return value(rng, index)
    a = rng.randint(low, high)
    b = rng.randint(a, high)
    step = rng.randint(1, max(1, (high - low) // 2))
    if kind == "range":
        return f"{a}-{b}"
    if kind == "same":  # a single-value range
        return f"{a}-{a}" + (f"/{step}" if rng.random() < 0.3 else "")
    if kind == "step":
        return f"*/{step}"
    if kind == "range-step":
        return f"{a}-{b}/{step}"
    return f"{a}/{step}"


def field(rng: random.Random, index: int, star: float) -> str:
    if rng.random() < star:
        return "*"
    return ",".join(item(rng, index) for _ in range(rng.choice([1, 1, 1, 2, 3])))


def random_spec(rng: random.Random) -> str:
    """Mostly specs that fire every day, so that the clock-change days are exercised."""
    parts = [
        field(rng, 1, 0.15),
        field(rng, 2, 0.45),
        field(rng, 3, 0.75),
        field(rng, 4, 0.85),
        field(rng, 5, 0.75),
    ]
    if rng.random() < 0.3:
        parts.insert(0, field(rng, 0, 0.1))
    return " ".join(parts)


def six(spec: str) -> str:
    fields = spec.split()
    return " ".join(["0", *fields] if len(fields) == 5 else fields)


def cases() -> list[tuple[str, str, float]]:
    rng = random.Random(SEED)
    changes = {tz: transitions(tz) for tz in ZONES}
    out = []
    for _ in range(CASES):
        tz = rng.choice(ZONES)
        if changes[tz] and rng.random() < 0.85:
            after = rng.choice(changes[tz]) + rng.uniform(-8, 3) * 3600
        else:
            after = rng.uniform(1_735_689_600, 1_830_297_600)  # 2025..2027
        if rng.random() < 0.5:
            after = float(int(after))
        out.append((random_spec(rng), tz, after))
    return out


def test_random_specs_match_the_reference() -> None:
    failures = []
    for spec, tz, after in cases():
        try:
            CronSim(six(spec), datetime(2026, 1, 1))
        except CronSimError:
            with pytest.raises(RegistrationError):  # both refuse it
                parse_schedule(spec, tz=tz)
            continue
        schedule = parse_schedule(spec, tz=tz)
        ours: list[float] = []
        t = after
        for _ in range(4):
            t = schedule.next_fire(t)
            ours.append(t)
        expected = reference_fires(six(spec), tz, after, 4)
        if ours != expected:
            failures.append((spec, tz, after, ours, expected))
    assert not failures, (
        "\n".join(
            f"{spec!r} tz={tz} after={after!r}: errands {ours} reference {expected}"
            for spec, tz, after, ours, expected in failures[:10]
        )
        + f"\n({len(failures)} of {CASES} differ)"
    )


@pytest.mark.parametrize("tz", ZONES)
def test_zones_have_the_expected_changes(tz: str) -> None:
    """The cases really start around clock changes (tzdata present and as expected)."""
    count = len(transitions(tz))
    assert count == (0 if tz in ("UTC", "Asia/Kolkata") else 6), count
