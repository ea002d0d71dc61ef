"""``Dedup``: which enqueues of a job name count as the same, and for how long one holds the
others off. Pure: no I/O.

>>> Dedup("user:7")                                        # until the job starts
>>> Dedup("user:7", until="finished")                      # also while it runs and retries
>>> Dedup("reindex", throttle=timedelta(seconds=30))       # at most one accepted per 30 s
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

__all__ = ["MODES", "Dedup", "check_dedup_key"]

Until = Literal["started", "finished"]
# the mode letters the Lua knows (lib/dedup.lua): until started, until finished, throttle
MODES = {"s": "until started", "f": "until finished", "t": "throttle"}
MAX_KEY = 1000


def check_dedup_key(key: str) -> str:
    """Dedup keys: 1-1000 characters, no braces, newlines or NUL (they become part of a Redis
    key under the namespace's hash tag)."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
        raise ValueError(f"dedup key must be a string of 1-{MAX_KEY} characters, got {key!r:.80}")
    if any(c in key for c in "{}\n\r\x00"):
        raise ValueError(f"dedup key {key!r:.80} must not contain braces, newlines or NUL")
    return key


@dataclass(frozen=True, slots=True)
class Dedup:
    """Enqueue a job only if no other job of the same name holds ``key``.

    * ``until="started"`` (default): the key is held from the enqueue until the job starts.
    * ``until="finished"``: held until the job's life ends (succeeded, dead, cancelled or
      deleted): also while it runs and waits for a retry.
    * ``throttle=timedelta(...)`` (or seconds): at most one job accepted per window, counted
      from the accepted enqueue on the Redis clock, whatever becomes of that job.

    Keys are per job name: ``Dedup("user:7")`` on ``sync_user`` and on ``notify`` are two keys.
    """

    key: str
    until: Until = "started"
    throttle: timedelta | float | None = None

    def __post_init__(self) -> None:
        check_dedup_key(self.key)
        if self.until not in ("started", "finished"):
            raise ValueError(f"until must be 'started' or 'finished', got {self.until!r}")
        if self.throttle is not None:
            if not isinstance(self.throttle, timedelta):  # seconds: kept as a timedelta
                object.__setattr__(self, "throttle", timedelta(seconds=float(self.throttle)))
            if self.window_ms < 1:
                raise ValueError(f"throttle must be at least 1 ms, got {self.throttle!r}")
            if self.until != "started":
                raise ValueError("throttle counts accepted enqueues per window: drop until=")

    @property
    def mode(self) -> str:
        """The mode letter of lib/dedup.lua."""
        if self.throttle is not None:
            return "t"
        return "f" if self.until == "finished" else "s"

    @property
    def window_ms(self) -> int:
        """The throttle window in ms (0 without throttle)."""
        if self.throttle is None:
            return 0
        t = self.throttle
        seconds = t.total_seconds() if isinstance(t, timedelta) else float(t)
        return round(seconds * 1000)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored with a schedule)."""
        out: dict[str, Any] = {"key": self.key, "until": self.until}
        if self.throttle is not None:
            out["throttle_ms"] = self.window_ms
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Dedup:
        throttle = data.get("throttle_ms")
        return cls(
            data["key"],
            data.get("until", "started"),
            timedelta(milliseconds=throttle) if throttle else None,
        )

    def scoped(self, job_name: str) -> str:
        """The key as stored: per job name (names never contain ':')."""
        return f"{job_name}:{self.key}"
