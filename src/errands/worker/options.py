"""WorkerPool's options checked at construction: a bad value raises RegistrationError there,
naming the option, instead of misbehaving once the pool runs (a negative poll interval
spinning, a nan timeout passing every comparison, ``"no"`` taken for true)."""

from __future__ import annotations

import math

from ..checks import flag, seconds, whole
from ..errors import RegistrationError

__all__ = ["check_pool_options"]


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
    that is not finite, above 2**53 ms, or negative (0 too for the intervals and
    ``dead_timeout``); a count that is not an int or below its least; a flag not a bool; a
    ``dead_timeout`` under twice ``heartbeat_interval``."""
    e = RegistrationError
    whole("concurrency", concurrency, least=1, error=e)
    seconds("shutdown_grace", shutdown_grace, most=math.inf, error=e)  # (inf: wait for them)
    seconds("dead_max_age", dead_max_age, error=e)
    seconds("history_retention", history_retention, error=e)
    for name, value in (("poll_interval", poll_interval), ("schedule_refresh", schedule_refresh)):
        seconds(name, value, zero=False, error=e)
    hb = seconds("heartbeat_interval", heartbeat_interval, zero=False, error=e)
    if seconds("dead_timeout", dead_timeout, zero=False, error=e) < 2 * hb:
        raise RegistrationError("dead_timeout must be at least twice heartbeat_interval")
    whole("max_recoveries", max_recoveries, least=1, error=e)
    whole("dead_max_jobs", dead_max_jobs, least=0, error=e)
    whole("history_max", history_max, least=0, error=e)
    flag("history", history, error=e)
    flag("redis_functions", redis_functions, error=e)
