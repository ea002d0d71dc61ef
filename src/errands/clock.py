"""The one clock errands reads, injectable so tests drive time instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from .checks import MAX_SECONDS
from .checks import seconds as check_seconds

__all__ = [
    "Clock",
    "FakeClock",
    "SystemClock",
    "due_time",
    "epoch_seconds",
    "positive_seconds",
]


class Clock(Protocol):
    """Wall-clock time in seconds since the epoch."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock (``time.time``); ``monotonic()`` measures elapsed time on a clock that
    never steps (``time.monotonic``), for what must not follow a step of the host's clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that only moves when told to: ``clock.advance(60)``."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds

    def set(self, when: float) -> None:
        self._now = float(when)


def to_ms(seconds: float) -> int:
    return int(seconds * 1000)


def due_time(now: float, delay: float | timedelta | None, at: datetime | None) -> float | None:
    """When a job enqueued at ``now`` with ``delay`` (seconds or timedelta: a real number, not
    a bool or a string, finite and >= 0) or ``at`` (a datetime; naive means UTC) is due; None
    for at once."""
    if delay is not None and at is not None:
        raise ValueError("give delay or at, not both")
    if delay is not None:  # (at most half the scripts' range: now + delay stays within it)
        return now + check_seconds("delay", delay, most=MAX_SECONDS / 2)
    if at is not None:
        if not isinstance(at, datetime):
            raise TypeError(
                f"at must be a datetime (naive = UTC), got {type(at).__name__} {at!r:.60}; "
                "use delay= for seconds"
            )
        return utc_timestamp(at)
    return None


def positive_seconds(value: float | timedelta | None, what: str) -> float | None:
    """``value`` (seconds or timedelta) in seconds, which must be > 0 (``what`` names it)."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds > 0:
        raise ValueError(f"{what} must be > 0 seconds, got {value!r}")
    return seconds


def epoch_seconds(at: datetime | float) -> float:
    """``at`` (a datetime, naive = UTC, or epoch seconds; 0 = now) in epoch seconds."""
    if isinstance(at, datetime):
        return utc_timestamp(at)
    return float(at) if at else time.time()


def utc_timestamp(at: datetime) -> float:
    """``at`` in epoch seconds, a naive datetime taken as UTC (``due_time``'s ``at``, and
    ``epoch_seconds``' datetime)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()
