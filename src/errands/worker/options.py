"""WorkerPool's options checked at construction: a bad value raises RegistrationError there,
naming the option, instead of misbehaving once the pool runs (a negative poll interval
spinning, a nan timeout passing every comparison, ``"no"`` taken for true)."""

from __future__ import annotations

import math
from datetime import timedelta

from ..errors import RegistrationError

__all__ = ["MAX_SECONDS", "check_pool_options"]

MAX_SECONDS = 2**53 / 1000  # the longest time the scripts take (lib/types.lua's MAX_MS)


def check_pool_options(
    *,
    concurrency: object,
    shutdown_grace: object,
    poll_interval: object,
    heartbeat_interval: object,
    dead_timeout: object,
    max_recoveries: object,
    dead_max_jobs: object,
    dead_max_age: object,
    schedule_refresh: object,
    history: object,
    history_retention: object,
    history_max: object,
    redis_functions: object,
) -> None:
    """Raise RegistrationError naming the first bad option: a duration (a timedelta or seconds)
    that is not finite, above MAX_SECONDS, or negative (0 too for the intervals and
    ``dead_timeout``); a count that is not an int or below its least; a flag not a bool; a
    ``dead_timeout`` under twice ``heartbeat_interval``."""
    _count("concurrency", concurrency, 1)
    for name, value in (("shutdown_grace", shutdown_grace), ("dead_max_age", dead_max_age)):
        _duration(name, value, zero=True)
    _duration("history_retention", history_retention, zero=True)
    for name, value in (("poll_interval", poll_interval), ("schedule_refresh", schedule_refresh)):
        _duration(name, value, zero=False)
    hb = _duration("heartbeat_interval", heartbeat_interval, zero=False)
    if _duration("dead_timeout", dead_timeout, zero=False) < 2 * hb:
        raise RegistrationError("dead_timeout must be at least twice heartbeat_interval")
    _count("max_recoveries", max_recoveries, 1)
    _count("dead_max_jobs", dead_max_jobs, 0)
    _count("history_max", history_max, 0)
    for name, value in (("history", history), ("redis_functions", redis_functions)):
        if not isinstance(value, bool):
            raise RegistrationError(f"{name} must be True or False, got {value!r}")


def _count(name: str, value: object, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise RegistrationError(f"{name} must be an int >= {least}, got {value!r}")


def _duration(name: str, value: object, *, zero: bool) -> float:
    """``value`` in seconds, if a timedelta or a real number: finite, at most MAX_SECONDS, above
    0 (or 0 itself when ``zero``); else RegistrationError."""
    secs = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(secs, (int, float)) and not isinstance(secs, bool):
        ok = math.isfinite(secs) and (secs >= 0 if zero else secs > 0) and secs <= MAX_SECONDS
        if ok:
            return float(secs)
    least = ">= 0" if zero else "> 0"
    raise RegistrationError(f"{name} must be a number of seconds {least}, got {value!r}")
