"""Cron expressions on wall-clock time. Pure: no I/O, no clock, no time zones.

>>> expr = parse_cron("0 30 2 * * *")          # 6 fields, seconds first
>>> expr.next_match(datetime(2026, 3, 8))       # first matching naive datetime at or after
datetime.datetime(2026, 3, 8, 2, 30)

Grammar (Vixie cron, plus what croniter accepted so stored specs keep working): per field a
comma list of ``*``, ``N``, ``A-B``, ``*/S``, ``A-B/S``, ``A/S`` (A to the end, step S);
month names ``JAN``..``DEC`` and weekday names ``SUN``..``SAT`` (any case); weekday ``7`` is
Sunday; a range whose end is below its start wraps (``FRI-MON``, ``50-10``). Day of month
also takes ``L`` (last day), ``LW`` (last weekday) and ``NW`` (the weekday nearest day N);
day of week ``NL`` or ``LN`` (the last weekday N of the month) and ``N#K`` (the K-th).

Day of month and day of week follow Vixie cron: when both are restricted a day matches either;
when either field starts with ``*`` (``*``, ``*/2``) a day must match both.
"""

from __future__ import annotations

import calendar
import dataclasses
import itertools
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

__all__ = ["CronError", "CronExpr", "parse_cron"]

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# (low, high) per field: second minute hour day-of-month month day-of-week
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_HORIZON_YEARS = 400  # the Gregorian calendar repeats every 400 years


class CronError(ValueError):
    """A cron expression that cannot be parsed, or that never matches."""


def _number(token: str, index: int) -> int:
    if index == 4 and token in _MONTHS:
        return _MONTHS.index(token) + 1
    if index == 5 and token in _DAYS:
        return _DAYS.index(token)
    if not (token.isascii() and token.isdigit()):  # ("²" and "٣" are digits too)
        raise CronError(f"bad {_NAMES[index]} value {token!r}")
    value = int(token)
    low, high = _BOUNDS[index]
    if not low <= value <= high:
        raise CronError(f"{_NAMES[index]} {value} is out of range {low}-{high}")
    return value


def _values(item: str, index: int) -> list[int]:
    """The values of one list item (no specials), in order."""
    low, high = _BOUNDS[index]
    body, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
            raise CronError(f"bad step {step_text!r} in {_NAMES[index]} {item!r}")
        step = int(step_text)
    if body == "*":
        sequence = list(range(low, high + 1))
    elif "-" in body:
        start_text, _, end_text = body.partition("-")
        start, end = _number(start_text, index), _number(end_text, index)
        if start <= end:
            sequence = list(range(start, end + 1))
        else:  # wraps around: FRI-MON, 50-10
            sequence = [*range(start, high + 1), *range(low, end + 1)]
    else:
        start = _number(body, index)
        sequence = list(range(start, high + 1)) if slash else [start]
    return sequence[::step]


@dataclass(frozen=True)
class _Days:
    """Day-of-month and day-of-week specials."""

    last: bool = False  # L
    last_weekday: bool = False  # LW
    nearest_weekday: frozenset[int] = frozenset()  # NW
    last_dow: frozenset[int] = frozenset()  # NL (0 = Sunday)
    nth_dow: frozenset[tuple[int, int]] = frozenset()  # N#K


def _field(text: str, index: int, specials: dict[str, set[object]]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"empty item in {_NAMES[index]} {text!r}")
        if index == 3 and item in ("L", "LW"):
            specials[item].add(True)
        elif index == 3 and item.endswith("W") and item[:-1].isdigit():
            specials["W"].add(_number(item[:-1], 3))
        elif index == 5 and len(item) > 1 and "L" in (item[0], item[-1]):
            specials["DL"].add(_number(item.strip("L"), 5) % 7)
        elif index == 5 and "#" in item:
            day, _, nth = item.partition("#")
            if not (nth.isascii() and nth.isdigit()) or not 1 <= int(nth) <= 5:
                raise CronError(f"bad day-of-week {item!r}: N#K takes K in 1-5")
            specials["#"].add((_number(day, 5) % 7, int(nth)))
        else:
            values.update(_values(item, index))
    if index == 5:
        values = {v % 7 for v in values}
    return frozenset(values)


@dataclass(frozen=True)
class CronExpr:
    """A parsed 6-field expression; sets of values per field."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    specials: _Days
    day_or: bool  # Vixie: OR only when neither day field starts with '*'
    hour_wildcard: bool  # the hour field starts with '*'
    plain_days: tuple[int, ...] = ()  # the days of month, when nothing else decides the day

    def matches_day(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom, dow = self._dom(d), self._dow(d)
        return (dom or dow) if self.day_or else (dom and dow)

    def _dom(self, d: date) -> bool:
        if d.day in self.days:
            return True
        s = self.specials
        if not (s.last or s.last_weekday or s.nearest_weekday):
            return False
        last = calendar.monthrange(d.year, d.month)[1]
        if s.last and d.day == last:
            return True
        if s.last_weekday and d.day == _nearest_weekday(d.year, d.month, last, last):
            return True
        return any(d.day == _nearest_weekday(d.year, d.month, n, last) for n in s.nearest_weekday)

    def _dow(self, d: date) -> bool:
        weekday = d.isoweekday() % 7
        if weekday in self.weekdays:
            return True
        s = self.specials
        if weekday in s.last_dow and d.day + 7 > calendar.monthrange(d.year, d.month)[1]:
            return True
        return (weekday, (d.day + 6) // 7) in s.nth_dow

    def next_match(self, start: datetime) -> datetime | None:
        """The first matching naive datetime at or after ``start`` (rounded up to a whole
        second); None when nothing matches within 400 years."""
        if start.microsecond:
            start = start.replace(microsecond=0) + timedelta(seconds=1)
        day, clock = start.date(), (start.hour, start.minute, start.second)
        horizon = day.year + _HORIZON_YEARS
        while day.year <= horizon:
            if day.month not in self.months:
                day = _next_month(day)
                clock = (0, 0, 0)
                continue
            if self.matches_day(day):
                found = self._next_time(*clock)
                if found is not None:
                    return datetime.combine(day, time(*found))
            day = self._next_day(day)
            clock = (0, 0, 0)
        return None

    def _next_day(self, day: date) -> date:
        """The next day that may match: with only plain days of month to match (``0 0 1 * *``),
        jump to the next of them; otherwise the day after."""
        plain = self.plain_days
        if plain:
            i = bisect_left(plain, day.day + 1)
            if i < len(plain) and plain[i] <= calendar.monthrange(day.year, day.month)[1]:
                return day.replace(day=plain[i])
            return _next_month(day)
        return day + timedelta(days=1)

    def _next_time(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        """The first matching time of day at or after hour:minute:second."""
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        i = bisect_left(hours, hour)
        if i < len(hours) and hours[i] == hour:
            j = bisect_left(minutes, minute)
            if j < len(minutes) and minutes[j] == minute:
                k = bisect_left(seconds, second)
                if k < len(seconds):
                    return hour, minute, seconds[k]
                j += 1
            if j < len(minutes):
                return hour, minutes[j], seconds[0]
            i += 1
        if i < len(hours):
            return hours[i], minutes[0], seconds[0]
        return None

    def hour_step(self) -> int:
        """Seconds between the two closest matching hours (the last and the first of the day
        count as 24 hours apart): 3600 for ``*``, 7200 for ``*/2``."""
        hours = self.hours
        gaps = [b - a for a, b in itertools.pairwise(hours)]
        return 3600 * min([*gaps, 24 - hours[-1] + hours[0]])


def _next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def _nearest_weekday(year: int, month: int, day: int, last: int) -> int:
    """The weekday (Mon-Fri) nearest ``day`` within its month (Quartz ``W``); 0 if no such day."""
    if day > last:
        return 0
    weekday = date(year, month, day).weekday()  # 0 = Monday
    if weekday == 5:  # Saturday: the Friday before, or the Monday after the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: the Monday after, or the Friday before the last day
        return day + 1 if day < last else day - 2
    return day


def parse_cron(text: str) -> CronExpr:
    """Parse 6 whitespace-separated fields, seconds first; raises :class:`CronError`."""
    fields = text.upper().split()
    if len(fields) != 6:
        raise CronError(f"expected 6 fields (seconds first), got {len(fields)}")
    specials: dict[str, set[object]] = {k: set() for k in ("L", "LW", "W", "DL", "#")}
    sets = [_field(f, i, specials) for i, f in enumerate(fields)]
    for index in (0, 1, 2, 4):
        if not sets[index]:
            raise CronError(f"{_NAMES[index]} {fields[index]!r} matches nothing")
    days = _Days(
        last=bool(specials["L"]),
        last_weekday=bool(specials["LW"]),
        nearest_weekday=frozenset(specials["W"]),  # type: ignore[arg-type]
        last_dow=frozenset(specials["DL"]),  # type: ignore[arg-type]
        nth_dow=frozenset(specials["#"]),  # type: ignore[arg-type]
    )
    expr = CronExpr(
        seconds=tuple(sorted(sets[0])),
        minutes=tuple(sorted(sets[1])),
        hours=tuple(sorted(sets[2])),
        days=sets[3],
        months=sets[4],
        weekdays=sets[5],
        specials=days,
        day_or=not (fields[3].startswith("*") or fields[5].startswith("*")),
        hour_wildcard=fields[2].startswith("*"),
    )
    if not expr.day_or and len(expr.weekdays) == 7 and days == _Days():
        expr = dataclasses.replace(expr, plain_days=tuple(sorted(expr.days)))
    if not (expr.day_or or days.last or days.last_weekday or days.nearest_weekday) and min(
        expr.days
    ) > max(calendar.monthrange(2000, m)[1] for m in expr.months):
        raise CronError(f"day {min(expr.days)} is in none of the months {fields[4]!r}")
    if expr.next_match(datetime(2000, 1, 1)) is None:
        raise CronError("never matches (no such day)")
    return expr
