"""Checks of the values users pass: whole numbers, durations, flags. Each returns the value (a
duration in seconds) or raises ``error`` (ValueError unless told) with a message naming the
argument, so that a bad value is refused where it is given instead of stored and misbehaving
later (a nan timeout passing every comparison, ``True`` taken for 1, ``"no"`` for true).
Pure: no I/O."""

from __future__ import annotations

import math
import numbers
import operator
from datetime import timedelta
from decimal import Decimal

__all__ = ["MAX_SECONDS", "flag", "function_instead", "seconds", "whole"]

MAX_SECONDS = 2**53 / 1000  # the longest time the scripts take (lib/types.lua's MAX_MS)


def whole(
    name: str,
    value: object,
    *,
    least: int | None = None,
    most: int | None = None,
    error: type[Exception] = ValueError,
) -> int:
    """``value`` as a plain int, if it is one (not a bool) or stands for one (an IntEnum, a
    numpy integer: ``operator.index``), within ``least``..``most``."""
    n = None if isinstance(value, bool) else _index(value)
    if n is not None and (least is None or n >= least) and (most is None or n <= most):
        return n
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
    """``value`` in seconds, if it is a timedelta or a real number (not a bool: an int, a float,
    a Decimal, a Fraction, a numpy number): finite, at most ``most``, and above 0 (or 0 itself
    when ``zero``)."""
    secs = value.total_seconds() if isinstance(value, timedelta) else _real(value)
    if secs is not None:
        ok = math.isfinite(secs) and (secs >= 0 if zero else secs > 0) and secs <= most
        if ok:
            return secs
    least = ">= 0" if zero else "> 0"
    raise error(
        f"{name} must be a number of seconds {least} (or a timedelta) up to {most:g}, got {value!r}"
    )


def flag(name: str, value: object, *, error: type[Exception] = ValueError) -> bool:
    """``value`` as a bool, if it is one, or the int 0 or 1 (``"no"``, which is true, and other
    values are refused)."""
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise error(f"{name} must be True or False, got {value!r}")


def _index(value: object) -> int | None:
    """``value`` as an int when it is an integer of some kind (``operator.index``), else None."""
    if type(value) is int:  # (the common case, without a call)
        return value
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def _real(value: object) -> float | None:
    """``value`` as a float when it is a real number (not a bool), else None (an int too large
    for a float included)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)):
        return None
    try:
        return float(value)
    except (OverflowError, ValueError):
        return None


def function_instead(fn: object) -> str:
    """(the error path only) What to pass instead of the function ``fn`` given as a job name:
    for a handler registered by ``@pool.job`` (a ``JobFunction``, typed.py, whose ``name`` is
    the job's), its name, or its own ``enqueue``, whose arguments are checked against the
    handler's signature (by mypy too)."""
    registered = getattr(fn, "name", None)
    function = getattr(fn, "__name__", "handler")
    if isinstance(registered, str):
        return (
            f"a job function, not a job name: pass its name ({registered!r}), or call "
            f"{function}.enqueue(...) (its arguments checked against the handler's signature)"
        )
    return "a function, not a job name: pass the name it is registered under (@pool.job(...))"
