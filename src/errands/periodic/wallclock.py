"""From cron matches on the wall clock to real fire times: the daylight-saving policy.
Pure: no I/O, no clock (times are passed in, epoch seconds).

* Hour field naming hours (``2``, ``1-3``, ``0,12``): every matching wall time fires once a
  day. A wall time that occurs twice (clocks go back) fires at its first occurrence; the wall
  times skipped when clocks go forward fire together, once, at the first instant after the gap.
* Hour field starting with ``*`` (``*``, ``*/2``): the schedule follows real time. A skipped
  wall time does not fire. A repeated one fires at its second occurrence too when the clock
  went back by at least the hour field's step, which keeps the schedule's cadence: ``@hourly``
  runs at 01:00 EDT and 01:00 EST, but ``0 */2 * * *`` runs at 02:00 CEST and not again an
  hour later at 02:00 CET, and ``40 * * * *`` on Lord Howe Island (clocks go back 30 minutes)
  runs at the first 01:40 only.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, tzinfo

from .cron import CronExpr

__all__ = ["NoFireTime", "named_next", "transition", "wildcard_next"]

_SECOND = timedelta(seconds=1)
_MAX_STEPS = 10_000  # matches examined per call; only clock changes take more than a few


class NoFireTime(ValueError):
    """The expression has no fire time after the given instant (within 400 years)."""


def _match(cron: CronExpr, start: datetime) -> datetime:
    found = cron.next_match(start)
    if found is None:
        raise NoFireTime(f"no fire time after {start}")
    return found


def _instants(wall: datetime, zone: tzinfo) -> tuple[int, int]:
    """(fold=0, fold=1) instants of a wall time: equal when it occurs once, early < late when
    it occurs twice, early > late when it is skipped."""
    early = wall.replace(tzinfo=zone, fold=0).timestamp()
    late = wall.replace(tzinfo=zone, fold=1).timestamp()
    return math.floor(early), math.floor(late)


def _wall(instant: int, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(instant, zone).replace(tzinfo=None)


def _offset(instant: float, zone: tzinfo) -> timedelta | None:
    return datetime.fromtimestamp(instant, zone).utcoffset()


def transition(lo: int, hi: int, zone: tzinfo) -> int:
    """The first instant in (lo, hi] whose UTC offset differs from lo's (one must)."""
    before = _offset(lo, zone)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(mid, zone) == before:
            lo = mid
        else:
            hi = mid
    return hi


def named_next(cron: CronExpr, zone: tzinfo, after: float) -> float:
    """First fire time after ``after`` when the hour field names hours."""
    wall = _wall(math.floor(after), zone)
    for _ in range(_MAX_STEPS):
        wall = _match(cron, wall)
        early, late = _instants(wall, zone)
        if early > late:  # skipped: the gap's one run, at its end (always ahead of `after`)
            return float(transition(late, early, zone))
        if early > after:
            return float(early)
        if early < late and transition(early, late, zone) <= after:
            # `after` is in the repeated hour: the rest of it fired the first time round
            wall = max(wall, _wall(transition(early, late, zone) - 1, zone))
        wall += _SECOND
    raise NoFireTime(f"no fire time found after {after}")


def wildcard_next(cron: CronExpr, zone: tzinfo, hour_step: int, after: float) -> float:
    """First fire time after ``after`` when the hour field starts with ``*``: the first
    instant whose wall time matches. The second occurrence of a repeated wall time counts only
    when the clock went back by at least ``hour_step`` seconds (the hour field's step), so that
    it keeps the schedule's cadence; a skipped wall time never fires."""
    base = math.floor(after)
    local = datetime.fromtimestamp(base, zone)
    wall = local.replace(tzinfo=None)
    best = math.inf
    here, other = local.utcoffset(), wall.replace(tzinfo=zone, fold=1).utcoffset()
    if local.fold == 0 and here is not None and other is not None and other < here:
        # in a wall hour that occurs again after the change: walls up to now occur again
        shift = int((here - other).total_seconds())
        if shift >= hour_step:
            change = transition(base, base + shift, zone)
            again = _match(cron, _wall(change, zone))
            if again <= wall:
                best = float(_instants(again, zone)[1])
        wall += _SECOND
    for _ in range(_MAX_STEPS):
        wall = _match(cron, wall)
        early, late = _instants(wall, zone)
        if early > late:  # skipped: nothing fires; go on from the end of the gap
            wall = _wall(transition(late, early, zone), zone)
            continue
        if early > after:
            return min(best, float(early))
        if late > after:  # `after` is in the second occurrence of the repeated hour
            if late - early >= hour_step:
                return min(best, float(late))
            wall = max(wall, _wall(transition(early, late, zone) - 1, zone))
        wall += _SECOND
    raise NoFireTime(f"no fire time found after {after}")
