"""Checks of the values the Client's callers pass (pages, counts, times, ids), made before any
Redis call: a bad value is refused with an error naming the argument, instead of reaching
Redis as garbage (a ResponseError, a DataError) or being read as something else (a ``limit``
of 0 as "everything", ``None`` as "now", epoch milliseconds as a date in the year 58,000)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import orjson

from ..checks import whole
from ..clock import utc_timestamp
from ..serialization import dumps_json
from ..store.keys import Keys

__all__ = [
    "MAX_AT",
    "MAX_PAGE",
    "at_seconds",
    "checked_id",
    "count",
    "encoded_args",
    "page_number",
    "reading",
    "text_arg",
]

MAX_PAGE = 2**40  # any page past this one is past the end of every listing (Redis sets: 2**32)
MAX_AT = 253_402_300_799.0  # 9999-12-31T23:59:59Z: later "epoch seconds" are milliseconds


def page_number(page: object) -> int:
    """``page`` if it is a whole number (one below 1 reads as page 1, as it always did)."""
    return max(1, whole("page", page))


def reading(page: int) -> int:
    """The page to read from Redis for ``page`` (checked): a page past ``MAX_PAGE`` reads
    as that one, empty, instead of a range Redis refuses."""
    return min(page, MAX_PAGE)


def count(name: str, value: object, most: int = 2**31) -> int:
    """``value`` if it is a whole number in 1..``most`` (a ``limit``, a number of minutes)."""
    return whole(name, value, least=1, most=most)


def text_arg(name: str, value: object) -> str:
    """``value`` if it is a str (TypeError naming ``name`` otherwise)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    return value


def checked_id(keys: Keys, job_id: str) -> str:
    """``job_id`` if it is a non-empty str without braces, newlines or NUL (the checks of the
    ids that make keys), before Redis sees it."""
    keys.done(job_id)
    return job_id


def encoded_args(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` as ``enqueue`` stores them (for ``update_job``): NaN, infinities and what JSON
    cannot hold refused (SerializationError naming the args), int keys made strings."""
    decoded: dict[str, Any] = orjson.loads(dumps_json(dict(args), f"the args of job {name!r}"))
    return decoded


def at_seconds(at: object) -> float:
    """``at`` (a datetime, naive = UTC, or epoch seconds) in epoch seconds. Refused: None and
    bools (once read as "now" and 1970), dates, timedeltas, strings, NaN and infinities, and
    numbers past the year 9999 (epoch milliseconds given for seconds)."""
    if isinstance(at, datetime):
        return utc_timestamp(at)
    if isinstance(at, bool) or not isinstance(at, int | float):
        hint = " (for a delay, pass time.time() + seconds)" if not isinstance(at, date) else ""
        raise TypeError(
            f"at must be a datetime or epoch seconds, got {type(at).__name__} {at!r}{hint}"
        )
    when: Any = float(at) if isinstance(at, float) or abs(at) < 2**63 else math.inf
    if not math.isfinite(when) or when < 0 or when > MAX_AT:
        raise ValueError(
            f"at must be epoch seconds in 0..{MAX_AT:.0f} (up to the year 9999; epoch "
            f"milliseconds are 1000 times too big), got {at!r}"
        )
    return float(when)
