"""Checks of the values users pass: whole numbers, durations, flags. Each returns the value (a
duration in seconds) or raises ``error`` (ValueError unless told) with a message naming the
argument, so that a bad value is refused where it is given instead of stored and misbehaving
later (a nan timeout passing every comparison, ``True`` taken for 1, ``"no"`` for true).
Pure: no I/O."""

from __future__ import annotations

import math
from datetime import timedelta

__all__ = ["MAX_SECONDS", "flag", "seconds", "whole"]

MAX_SECONDS = 2**53 / 1000  # the longest time the scripts take (lib/types.lua's MAX_MS)


def whole(
    name: str,
    value: object,
    *,
    least: int | None = None,
    most: int | None = None,
    error: type[Exception] = ValueError,
) -> int:
    """``value`` if it is an int (not a bool) within ``least``..``most``."""
    if isinstance(value, int) and not isinstance(value, bool):
        low, high = least is None or value >= least, most is None or value <= most
        if low and high:
            return value
    if least is not None and most is not None:
        bounds = f" in {least}..{most}"
    elif least is not None:
        bounds = f" >= {least}"
    elif most is not None:
        bounds = f" <= {most}"
    else:
        bounds = ""
    raise error(f"{name} must be an int{bounds}, got {value!r}")


def seconds(
    name: str,
    value: object,
    *,
    zero: bool = True,
    most: float = MAX_SECONDS,
    error: type[Exception] = ValueError,
) -> float:
    """``value`` in seconds, if it is a timedelta or a real number (not a bool): finite, at most
    ``most``, and above 0 (or 0 itself when ``zero``)."""
    secs = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(secs, (int, float)) and not isinstance(secs, bool):
        ok = math.isfinite(secs) and (secs >= 0 if zero else secs > 0) and secs <= most
        if ok:
            return float(secs)
    least = ">= 0" if zero else "> 0"
    raise error(
        f"{name} must be a number of seconds {least} (or a timedelta) up to {most:g}, got {value!r}"
    )


def flag(name: str, value: object, *, error: type[Exception] = ValueError) -> bool:
    """``value`` if it is a bool (``"no"`` or 0 are refused, not taken for true or false)."""
    if isinstance(value, bool):
        return value
    raise error(f"{name} must be True or False, got {value!r}")
