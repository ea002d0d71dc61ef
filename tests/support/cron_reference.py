"""An independent reference for cron fire times: cronsim (a separate cron implementation, the
one behind Healthchecks.io) enumerates the matching wall-clock times, and the documented
daylight-saving policy (docs/periodic.md) is applied to each of them by brute force with
zoneinfo. Shares no code with errands.periodic."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

UTC_ZONES = {"UTC", "Etc/UTC"}


def wall_matches(expr: str, start: datetime) -> Iterator[datetime]:
    """Naive wall times matching a 6-field expression (seconds first), from ``start`` on."""
    return iter(CronSim(expr, start - timedelta(seconds=1)))


def hour_step(expr: str) -> int:
    """Seconds between the two closest hours of the hour field cronsim parsed (the last and
    the first of the day are 24 hours apart)."""
    hours = sorted(CronSim(expr, datetime(2001, 1, 1)).hours)
    return 3600 * min([b - a for a, b in itertools.pairwise(hours)] + [24 - hours[-1] + hours[0]])


def offset(instant: int, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(instant, zone).utcoffset()


def occurrences(wall: datetime, zone: ZoneInfo) -> list[int]:
    """The real instants whose local time is ``wall``, found by checking both UTC offsets
    around it (none when clocks skip it)."""
    candidates = {int(wall.replace(tzinfo=zone, fold=fold).timestamp()) for fold in (0, 1)}
    return sorted(
        t for t in candidates if datetime.fromtimestamp(t, zone).replace(tzinfo=None) == wall
    )


def end_of_gap(wall: datetime, zone: ZoneInfo) -> int:
    """The first real instant after the gap that skipped ``wall``: walk minute by minute, then
    second by second."""
    t = int(wall.replace(tzinfo=zone, fold=1).timestamp())  # before the change
    before = offset(t, zone)
    while offset(t + 60, zone) == before:
        t += 60
    while offset(t, zone) == before:
        t += 1
    return t


def reference_fires(
    expr: str,
    tz: str,
    after: float,
    count: int,
    *,
    wildcard: bool | None = None,
    every: bool = False,
) -> list[float]:
    """The next ``count`` fire times after ``after`` by the documented policy. ``wildcard``
    overrides which schedules follow real time (default: the hour field starts with ``*``);
    ``every=True`` runs every second occurrence (as cron daemons do)."""
    zone = ZoneInfo(tz)
    if wildcard is None:
        wildcard = expr.split()[2].startswith("*")
    step = 0 if every else hour_step(expr)
    # a wall time's instants lie between (wall read as UTC) - (largest or smallest offset)
    offsets = [offset(int(after) + k * 30 * 86_400, zone) or timedelta() for k in range(-2, 15)]
    largest = max(offsets)
    first = datetime.fromtimestamp(int(after) - 3 * 3600, UTC).replace(tzinfo=None)
    start = first + min(offsets)  # no earlier wall time has an instant after `first`
    instants: set[int] = set()
    ahead: list[int] = []
    for wall in wall_matches(expr, start):
        real = occurrences(wall, zone)
        if not real:
            found = [] if wildcard else [end_of_gap(wall, zone)]
        elif not wildcard:
            found = real[:1]
        else:  # the second occurrence when the clock went back at least a step of the hours
            found = [t for t in real if t == real[0] or t - real[0] >= step]
        for t in found:
            if t not in instants:
                instants.add(t)
                if t > after:
                    bisect.insort(ahead, t)
        bound = (wall - largest - timedelta(seconds=1)).replace(tzinfo=UTC).timestamp()
        if len(ahead) > count + 2 and bound > ahead[count + 2]:
            break
    return [float(t) for t in ahead][:count]
