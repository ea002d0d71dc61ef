"""Limit specs and their compiled form.

A job type's limits are checked by the fetch script, atomically with taking a job:

- ``Concurrency(n)``: at most ``n`` jobs of the type run at once across every pool (the same
  counter as ``max_concurrency``); ``Concurrency(n, per_partition=True)``: at most ``n`` per
  partition.
- ``Rate(n, per=...)``: at most ``n`` starts in any window of length ``per`` (a sliding log of
  starts on the Redis clock, in buckets of ``per / RATE_BUCKETS`` rounded up to a whole ms: a
  start is counted as if it happened when the last start of its bucket did, so a start may be
  let in up to that width later than an exact log would; never earlier), type-wide or per
  partition.

The compiled form handed to Lua is ``(max_concurrency, spec)``: the type-wide concurrency goes to
the ``max_concurrency`` counter; ``spec`` is a ``;``-separated list of ``c=<n>`` (concurrency per
partition), ``r=<n>/<ms>`` (type-wide rate) and ``R=<n>/<ms>`` (rate per partition).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from ..checks import flag, seconds

__all__ = [
    "Concurrency",
    "Limit",
    "Rate",
    "check_partition",
    "compile_limits",
    "describe_limit",
    "has_rate",
    "limit_from_dict",
    "limit_to_dict",
    "parse_limit",
]

# the longest rate window: a year and a day (lib/limits.lua's LIM_MAX_PER refuses a longer one
# before a script's first write: a window of 10^20 ms passed the spec check, and PEXPIRE of the
# rate log raised after the fetch had taken the job)
MAX_PER_MS = 366 * 86_400_000
# starts per window: a rate log's counts are of 10 digits (lib/ratelog.lua, started again from 0
# past 9e9; lib/limits.lua's LIM_MAX_RATE refuses more before the first write). The log's size
# does not depend on it: at most a record per bucket of its window (RATE_BUCKETS + 2).
MAX_RATE = 1_000_000_000
# jobs running at once under a Concurrency, type-wide or per partition: lib/limits.lua's
# lim_spec refuses a per-partition count of more than 15 digits, and a fetch given such a spec
# fails as a whole (every name of the pool stops fetching); the same cap as MAX_RATE for both
# kinds, far above any pool's reach
MAX_CONCURRENCY = 1_000_000_000
# buckets per rate window (lib/ratelog.lua's LIM_BUCKETS): the starts of one bucket, of
# per / RATE_BUCKETS ms rounded up (ms t is in bucket t // width), share a record
RATE_BUCKETS = 1000
# distinct rate windows of one kind (type-wide, per partition): a fetch and a settle read and
# write each window's log (lib/limits.lua's LIM_MAX_WINDOWS refuses more before the first write)
MAX_WINDOWS = 16
_PARTITION = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def check_partition(partition: str) -> str:
    """Partitions: 1-200 characters, no control characters."""
    if not isinstance(partition, str) or not _PARTITION.fullmatch(partition):
        raise ValueError(
            f"invalid partition {partition!r}: use 1-200 characters without control characters"
        )
    return partition


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``limit`` (1 to ``MAX_CONCURRENCY``, 10^9) jobs running at once: of the whole
    job type, or of each partition (``per_partition=True``), across every pool."""

    limit: int
    per_partition: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool):
            raise ValueError(f"Concurrency limit must be an int, got {self.limit!r}")
        if not 1 <= self.limit <= MAX_CONCURRENCY:
            raise ValueError(f"Concurrency limit must be 1..{MAX_CONCURRENCY}, got {self.limit}")
        flag("Concurrency per_partition", self.per_partition)  # ("no" is true)


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``limit`` (1 to ``MAX_RATE``, 10^9) starts in any window of length ``per`` (a
    sliding window: never more, wherever the window is put), of the whole job type or of each
    partition. Starts are counted in buckets of ``per / 1000`` (rounded up to a whole ms: 1 ms
    for windows up to a second, 86.4 s for a day): a start counts as if it happened at the last
    start of its bucket, so when the limit is reached the next start may come up to one bucket
    width later than an exact sliding log would let it; never earlier."""

    limit: int
    per: timedelta = timedelta(seconds=1)
    per_partition: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool):
            raise ValueError(f"Rate limit must be an int, got {self.limit!r}")
        if not 1 <= self.limit <= MAX_RATE:
            raise ValueError(f"Rate limit must be 1..{MAX_RATE}, got {self.limit}")
        object.__setattr__(self, "per", _window(self.per))
        flag("Rate per_partition", self.per_partition)  # ("no" is true)

    @property
    def per_ms(self) -> int:
        return self.per // _MS


_MS = timedelta(milliseconds=1)


def _window(per: object) -> timedelta:
    """A Rate's ``per`` as a timedelta of whole ms: a fraction of a ms rounded up (a longer
    window: never looser than asked; truncated, 1.9 ms allowed the count in 1 ms, and what
    registration took differed from what set_limits stores)."""
    try:
        secs = seconds("Rate per", per)  # (a timedelta or a finite number, not a bool)
    except ValueError:
        raise ValueError(
            f"Rate per must be a timedelta or seconds, 1 ms to 366 days, got {per!r}"
        ) from None
    micros = per // timedelta(microseconds=1) if isinstance(per, timedelta) else round(secs * 1e6)
    if micros < 1000:
        raise ValueError(f"Rate per must be at least 1 ms, got {per!r}")
    window = -(-micros // 1000)
    if window > MAX_PER_MS:
        raise ValueError(f"Rate per must be at most 366 days, got {per!r}")
    return timedelta(milliseconds=window)


Limit = Concurrency | Rate


def compile_limits(limits: Iterable[Limit], max_concurrency: int = 0) -> tuple[int, str]:
    """``(max_concurrency, spec)`` for the fetch script: the lowest type-wide concurrency (with
    ``max_concurrency``; 0 = none) and the spec string of the others ('' = none). Rates of one
    kind (type-wide or per partition) with the same window are one rate, the lowest: they would
    share a start log (and count each start twice). ValueError: more than ``MAX_WINDOWS`` (16)
    distinct windows of one kind."""
    conc = max_concurrency
    rates: dict[tuple[str, int], int] = {}
    per_partition_conc = 0
    for limit in limits:
        if isinstance(limit, Concurrency):
            if limit.per_partition:
                per_partition_conc = min(per_partition_conc or limit.limit, limit.limit)
            else:
                conc = min(conc or limit.limit, limit.limit)
        elif isinstance(limit, Rate):
            window = ("R" if limit.per_partition else "r", limit.per_ms)
            rates[window] = min(rates.get(window, limit.limit), limit.limit)
        else:
            raise TypeError(f"limits take Concurrency and Rate, got {limit!r}")
    for kind, what in (("r", "type-wide"), ("R", "per-partition")):
        if (count := sum(k == kind for k, _ in rates)) > MAX_WINDOWS:
            raise ValueError(
                f"at most {MAX_WINDOWS} {what} rate windows (distinct per=) per job type, "
                f"got {count}"
            )
    parts = [f"{kind}={n}/{per}" for (kind, per), n in rates.items()]
    if per_partition_conc:
        parts.insert(0, f"c={per_partition_conc}")
    return conc, ";".join(parts)


def has_rate(spec: str) -> bool:
    """Whether a compiled spec (``compile_limits``) has a rate, type-wide or per partition."""
    return any(part[:2] in ("r=", "R=") for part in spec.split(";"))


def limit_to_dict(limit: Limit) -> dict[str, object]:
    """The JSON form of a limit (stored by ``Client.set_limits``)."""
    if isinstance(limit, Concurrency):
        return {"concurrency": limit.limit, "per_partition": limit.per_partition}
    return {"rate": limit.limit, "per_ms": limit.per_ms, "per_partition": limit.per_partition}


def limit_from_dict(data: dict[str, object]) -> Limit:
    """Inverse of :func:`limit_to_dict`; ValueError on anything else (a count of ``true``
    too: the limits' own check, not ``int()``, which would read it as 1)."""
    per_partition = bool(data.get("per_partition", False))
    if isinstance(limit := data.get("concurrency"), int):
        return Concurrency(limit, per_partition)
    per_ms = data.get("per_ms")
    if isinstance(limit := data.get("rate"), int) and type(per_ms) is int:  # (not a bool)
        return Rate(limit, timedelta(milliseconds=per_ms), per_partition)
    raise ValueError(f"not a limit: {data!r}")


_TEXT = re.compile(
    r"(rate|concurrency)=(\d+)(?:/(\d+(?:\.\d+)?)(ms|s|m|h))?(:partition)?", re.ASCII
)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_limit(text: str) -> Limit:
    """The CLI's form: ``rate=10/1s``, ``rate=5/1s:partition``, ``concurrency=1:partition``
    (units ms, s, m, h)."""
    m = _TEXT.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m or (m.group(1) == "rate") != (m.group(3) is not None):
        raise ValueError(
            f"not a limit: {text!r} (use rate=10/1s, rate=5/1s:partition, concurrency=2, "
            "concurrency=1:partition)"
        )
    per_partition = m.group(5) is not None
    if m.group(1) == "concurrency":
        return Concurrency(int(m.group(2)), per_partition)
    per = float(m.group(3)) * _UNITS[m.group(4)]  # (seconds: Rate checks the window's bounds)
    return Rate(int(m.group(2)), per, per_partition)  # type: ignore[arg-type]


def describe_limit(limit: Limit) -> str:
    """``rate=10/1000ms``, ``concurrency=1:partition``: the CLI's form, read back."""
    suffix = ":partition" if limit.per_partition else ""
    if isinstance(limit, Concurrency):
        return f"concurrency={limit.limit}{suffix}"
    return f"rate={limit.limit}/{limit.per_ms}ms{suffix}"
