"""A `last` ahead of the clock (written while the Redis clock was ahead) is judged by the fire
times it hides, not by the period after it."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import FakeClock
from errands.periodic.enqueuer import AHEAD_TOLERANCE, PeriodicEnqueuer
from errands.periodic.store import PeriodicSchedule, make_periodic
from errands.serialization import JSONSerializer
from errands.store.keys import Keys

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday


pytestmark = pytest.mark.usefixtures("invariants")


def pool(
    redis: Redis, namespace: str, clock: FakeClock, code: list[PeriodicSchedule], pool_id: str
) -> PeriodicEnqueuer:
    return PeriodicEnqueuer(redis, Keys(namespace), clock, JSONSerializer(), code, pool_id=pool_id)


IRREGULAR = [
    "0 0 * * 1,2",  # Monday and Tuesday: gaps of 1 and 6 days
    "0 0 1,15 * *",  # 14 days, then 13 to 17
    "10,50 * * * * *",  # seconds: gaps of 40 s and 20 s
    "0 9-17 * * MON-FRI",  # hourly by day, 16 h overnight, 64 h over the weekend
    "@monthly",  # 28 to 31 days
    "0 0 0 L * *",  # the last day of each month
    "0 30 2 * * *",  # daily, in New York: 23 h and 25 h across the changes
]


@pytest.mark.parametrize("spec", IRREGULAR)
async def test_a_last_ahead_is_flagged_exactly_when_it_hides_fire_times(
    redis: Redis, namespace: str, spec: str, caplog: Any
) -> None:
    """A `last` ahead of the clock (written while the Redis clock was ahead) silences the
    schedule until the fire time after it: the fire times between now and `last` never run.
    _check_future compared `last - now` with the period *after* last: for an irregular spec
    it flagged a `last` that hides nothing (a long gap before it, a short one after) and
    missed one that hides fire times (a short gap before, a long one after)."""
    tz = "America/New_York" if spec == "0 30 2 * * *" else "UTC"
    periodic = make_periodic(spec, "tick", name="s", tz=tz)
    schedule = periodic.schedule
    e = pool(redis, namespace, FakeClock(START), [periodic], "p1")
    rng = random.Random(f"{spec}")
    for _ in range(300):
        base = START + rng.uniform(0, 2 * 366 * 86_400)
        slots = [schedule.next_fire(base)]
        for _ in range(7):
            slots.append(schedule.next_fire(slots[-1]))
        last = slots[rng.randrange(1, len(slots))]  # a handled fire time, ahead of now
        now = rng.uniform(base, last)
        hidden = [t for t in schedule.fire_times(now, last) if t < last]  # never run
        expected = bool(hidden) and last - now > AHEAD_TOLERANCE
        following = schedule.next_fire(last)
        e._logged.clear()
        with caplog.at_level("ERROR", logger="errands.periodic"):
            caplog.clear()
            got = e._check_future(periodic, last, following, now)
        assert got == expected, (spec, datetime.fromtimestamp(now, UTC), hidden)
        assert ("ahead of the clock" in caplog.text) == expected


async def test_a_last_ahead_that_hides_a_monday_run_is_logged(
    redis: Redis, namespace: str, caplog: Any
) -> None:
    """Monday and Tuesday runs; the Redis clock ran 1.5 days ahead and Tuesday's fired on
    Sunday. Monday's run will not happen: that is logged, and the state is read again at
    each refresh (a delete_schedule restarts it)."""
    sunday_noon = datetime(2026, 1, 4, 12, tzinfo=UTC).timestamp()
    tuesday = datetime(2026, 1, 6, tzinfo=UTC).timestamp()
    clock = FakeClock(sunday_noon)
    periodic = make_periodic("0 0 * * 1,2", "tick", name="mon-tue")
    e = pool(redis, namespace, clock, [periodic], "p1")
    await e.refresh()
    keys = Keys(namespace)
    await redis.hset(keys.schedule_state("mon-tue"), mapping={"last": round(tuesday * 1000)})
    with caplog.at_level("ERROR", logger="errands.periodic"):
        assert await e._tick() == 0
    assert "ahead of the clock" in caplog.text
    assert e._due["mon-tue"] == sunday_noon + e.refresh_interval
