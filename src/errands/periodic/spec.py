"""Schedule specs and fire times. Pure: no I/O, no clock (times are passed in).

>>> s = parse_schedule("30 2 * * *", tz="America/New_York")
>>> s.next_fire(after=1_772_900_000.0)      # epoch seconds -> next fire time, epoch seconds

Spec forms: 6 cron fields (seconds first), 5 cron fields (standard, at second 0), ``?`` as ``*``,
``@yearly @annually @monthly @weekly @daily @midnight @hourly``, ``@every 1h30m`` (Go-style
duration: ``h m s ms``, decimals allowed) or a ``timedelta``, and ``cron.NAME`` looked up in
a mapping of named schedules.

Cron fields match the LOCAL wall-clock time of the schedule's time zone (default UTC); the
daylight-saving policy is in :mod:`errands.periodic.wallclock`. ``@every`` is absolute, aligned
on the Unix epoch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..checks import MAX_SECONDS
from ..errors import RegistrationError
from ..store.keys import NAME_RULE, check_job_name
from .cron import CronError, CronExpr, parse_cron
from .wallclock import NoFireTime, named_next, wildcard_next

__all__ = [
    "MACROS",
    "Schedule",
    "check_names",
    "format_duration",
    "is_named",
    "parse_duration",
    "parse_schedule",
    "resolve_named",
]

MACROS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_UNITS_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)", re.ASCII)  # (ASCII digits only)
_MAX_INTERVAL_MS = round(MAX_SECONDS * 1000)  # the longest time the scripts take
_NAMED_PREFIX = "cron."


def check_names(job_name: str, name: str) -> None:
    """A schedule's job name and name follow the rules of job names: a RegistrationError says
    which is wrong, and when it looks like a cron spec or an interval, the order of the
    arguments (the spec comes first to ``periodically_enqueue``, last to ``add_schedule``)."""
    for what, value in (("job name", job_name), ("schedule name", name)):
        try:
            check_job_name(value)
        except ValueError:
            hint = ""
            if isinstance(value, str) and (len(value.split()) in (5, 6) or "@every" in value):
                hint = (
                    " (a schedule spec? the arguments go periodically_enqueue(spec, job_name),"
                    " add_schedule(name, job_name, spec), errands schedules add NAME JOB SPEC)"
                )
            raise RegistrationError(f"invalid {what} {value!r}: {NAME_RULE}{hint}") from None


def is_named(spec: object) -> bool:
    """Whether ``spec`` names a schedule of the configuration (``cron.NAME``)."""
    return isinstance(spec, str) and spec.strip().startswith(_NAMED_PREFIX)


def parse_duration(text: str) -> int:
    """``"1h30m"`` -> milliseconds. Go-style: units h, m, s, ms; decimals such as ``1.5h``."""
    compact = text.strip().replace(" ", "")
    pos, total = 0, 0.0
    while pos < len(compact):
        match = _DURATION.match(compact, pos)
        if match is None:
            raise RegistrationError(
                f"bad duration {text!r}: expected e.g. '1h30m', '45s', '250ms' (units h m s ms)"
            )
        total += float(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    ms = round(total)
    if not compact or ms <= 0:
        raise RegistrationError(f"bad duration {text!r}: must be at least 1ms")
    if ms > _MAX_INTERVAL_MS:  # (a schedule that would never fire)
        raise RegistrationError(f"bad duration {text!r}: must be at most {MAX_SECONDS:g}s")
    return ms


def format_duration(ms: int) -> str:
    """Milliseconds -> ``"1h30m"`` (the inverse of :func:`parse_duration`)."""
    parts = []
    for unit in ("h", "m", "s", "ms"):
        amount, ms = divmod(ms, _UNITS_MS[unit])
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: ``next_fire(after)`` gives the first fire time strictly after
    ``after`` (both epoch seconds)."""

    spec: str  # as given (``cron.NAME``, a macro, ...)
    tz: str = "UTC"
    expr: str | None = None  # 6 cron fields, seconds first
    interval_ms: int | None = None
    text: str = ""  # the spec after resolving ``cron.NAME`` (what is stored in Redis)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    wildcard_hour: bool = field(init=False, repr=False, compare=False)
    _cron: CronExpr | None = field(init=False, repr=False, compare=False)
    _hour_step: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", _zone(self.tz))
        if not self.text:
            object.__setattr__(self, "text", self.spec)
        cron = None
        if self.expr:
            try:
                cron = parse_cron(self.expr)
            except CronError as exc:
                raise RegistrationError(f"bad cron spec {self.text!r}: {exc}") from None
        object.__setattr__(self, "_cron", cron)
        object.__setattr__(self, "wildcard_hour", cron is None or cron.hour_wildcard)
        object.__setattr__(self, "_hour_step", cron.hour_step() if cron else 0)

    def next_fire(self, after: float) -> float:
        """The first fire time after ``after`` (epoch seconds), following the DST policy."""
        if self.interval_ms is not None:
            step = self.interval_ms
            return (math.floor(after * 1000) // step + 1) * step / 1000
        assert self._cron is not None
        try:
            if self.wildcard_hour:
                return wildcard_next(self._cron, self.zone, self._hour_step, after)
            return named_next(self._cron, self.zone, after)
        except NoFireTime as exc:
            raise RegistrationError(f"schedule {self.spec!r}: {exc}") from None

    def fire_times(self, after: float, until: float) -> list[float]:
        """Every fire time in ``(after, until]``."""
        out: list[float] = []
        t = self.next_fire(after)
        while t <= until:
            out.append(t)
            t = self.next_fire(t)
        return out

    def latest_fire(self, first: float, now: float) -> float:
        """The last fire time ``<= now``, given ``first``, a fire time ``<= now``.

        A bisection on ``next_fire`` (which never decreases): some 40 calls however far
        ``first`` is (stepping through every fire time took 9.5 s for ``* * * 1-7 * *`` after
        an 18-day outage)."""
        if self.interval_ms is not None:
            step = self.interval_ms
            return max(first, math.floor(now * 1000) // step * step / 1000)
        lo, hi = first, now
        if self.next_fire(lo) > now:
            return first
        # next_fire(lo) <= now < next_fire(hi): the answer is in (lo, hi]; cron fire times are
        # whole seconds, so once hi - lo < 1 it is the only one there, next_fire(lo)
        while hi - lo >= 1.0:
            mid = (lo + hi) / 2
            if self.next_fire(mid) <= now:
                lo = mid
            else:
                hi = mid
        return self.next_fire(lo)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise RegistrationError(f"unknown time zone {tz!r}: {exc}") from None


def resolve_named(spec: str, named: Mapping[str, Any] | None) -> str:
    """Replace ``cron.NAME`` by its spec from ``named`` (keys ``NAME`` or ``cron.NAME``)."""
    seen: list[str] = []
    while spec.startswith(_NAMED_PREFIX):
        name = spec[len(_NAMED_PREFIX) :]
        if spec in seen:
            raise RegistrationError(f"named schedule {spec!r} refers to itself: {seen}")
        seen.append(spec)
        table = named or {}
        value = table.get(name, table.get(spec))
        nested = table.get("cron")
        if value is None and isinstance(nested, Mapping):
            value = nested.get(name)
        if not isinstance(value, str):
            known = sorted(k for k in table if isinstance(table[k], str))
            raise RegistrationError(
                f"unknown named schedule {spec!r} (known: {', '.join(known) or 'none'})"
            )
        spec = value.strip()
    return spec


def parse_schedule(
    spec: str | timedelta, *, tz: str = "UTC", named: Mapping[str, Any] | None = None
) -> Schedule:
    """Parse a spec; raises :class:`RegistrationError` quoting the offending text."""
    if isinstance(spec, timedelta):
        ms = round(spec.total_seconds() * 1000)
        if not 0 < ms <= _MAX_INTERVAL_MS:
            raise RegistrationError(
                f"interval {spec!r} must be positive and at most {MAX_SECONDS:g}s"
            )
        return Schedule(f"@every {format_duration(ms)}", tz, interval_ms=ms)
    if not isinstance(spec, str) or not spec.strip():
        raise RegistrationError(f"empty or non-string schedule spec {spec!r}")
    text = resolve_named(spec.strip(), named)
    lowered = text.lower()
    if lowered.startswith("@every"):
        try:
            interval = parse_duration(text[len("@every") :])
        except RegistrationError as exc:
            raise RegistrationError(f"bad schedule {text!r}: {exc}") from None
        return Schedule(spec, tz, interval_ms=interval, text=text)
    if lowered.startswith("@"):
        if lowered not in MACROS:
            raise RegistrationError(
                f"unknown schedule macro {text!r} (known: {', '.join(MACROS)}, @every DURATION)"
            )
        return _checked(Schedule(spec, tz, expr=MACROS[lowered], text=text))
    fields = ["*" if f == "?" else f for f in text.split()]
    if len(fields) == 5:
        fields.insert(0, "0")
    if len(fields) != 6:
        raise RegistrationError(
            f"bad cron spec {text!r}: expected 5 fields (minute first) or 6 (seconds first), "
            f"got {len(fields)}"
        )
    return _checked(Schedule(spec, tz, expr=" ".join(fields), text=text))


def _checked(schedule: Schedule) -> Schedule:
    """Reject specs that never fire (``0 0 0 30 2 *``)."""
    schedule.next_fire(1_767_225_600.0)
    return schedule
