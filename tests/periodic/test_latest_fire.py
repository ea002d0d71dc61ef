"""Hunt 1: Schedule.latest_fire stepped through every fire time from ``first`` to now when
``first`` was older than its look-back, so plan() for '* * * 1-7 * *' (every second on days
1-7) after the pools were down from 2 to 20 March took 9.5 s, blocking the event loop of every
pool at once. It bisects now; these check it still gives exactly the last fire time <= now."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from errands.errors import RegistrationError
from errands.periodic import spec as spec_module
from errands.periodic.spec import parse_schedule
from tests.periodic.test_cron_differential import random_spec, transitions

ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago"]
ZONES += ["America/St_Johns", "UTC"]


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_a_long_outage_costs_a_few_next_fire_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = spec_module.wildcard_next

    def counting(*args: Any) -> float:
        nonlocal calls
        calls += 1
        return real(*args)

    monkeypatch.setattr(spec_module, "wildcard_next", counting)
    s = parse_schedule("* * * 1-7 * *")
    first, now = utc(2026, 3, 2), utc(2026, 3, 20) + 0.5
    assert s.latest_fire(first, now) == utc(2026, 3, 7, 23, 59, 59)
    assert calls < 100, calls  # was one call per second of 2-7 March: 518,400


def test_latest_fire_is_the_last_of_the_fire_times_up_to_now() -> None:
    """Against stepping forward with next_fire, over random specs in zones with clock changes
    (windows around the changes of 2025-2027), seeded; cases with more than 300 fire times
    in the window are passed over to keep the test short."""
    rng = random.Random(20261205)
    changes = {tz: transitions(tz) for tz in ZONES}
    checked = 0
    for _ in range(1000):
        tz = rng.choice(ZONES)
        try:
            s = parse_schedule(random_spec(rng), tz=tz)
        except RegistrationError:
            continue
        base = rng.choice(changes[tz]) if changes[tz] else 1_790_000_000
        span = 3 * 86_400 if rng.random() < 0.8 else 40 * 86_400
        last = base - rng.randrange(0, span)
        now = base + rng.randrange(0, span) + rng.choice([0.0, rng.random()])
        first = s.next_fire(last)
        if first > now:
            continue
        expected, count = first, 0
        while (following := s.next_fire(expected)) <= now and count < 300:
            assert following > expected, (s.spec, tz, expected)
            expected, count = following, count + 1
        if count >= 300:
            continue
        assert s.latest_fire(first, now) == expected, (s.spec, tz, first, now)
        checked += 1
    assert checked > 400, checked
