"""``Dedup``: which enqueues of a job name count as the same, and for how long one holds the
others off. Pure: no I/O.

>>> Dedup("user:7")                                        # until the job starts
>>> Dedup("user:7", until="finished")                      # also while it runs and retries
>>> Dedup("reindex", throttle=timedelta(seconds=30))       # at most one accepted per 30 s
>>> Dedup("u7", debounce=True)                             # each add pushes the run back
>>> Dedup("repo:x", until="finished", rerun_latest=True)   # one running, one waiting
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from ..checks import flag, seconds

__all__ = ["MODES", "Dedup", "check_dedup_key"]

Until = Literal["started", "finished"]
# the mode letters the Lua knows (lib/dedup.lua)
MODES = {
    "s": "until started",
    "d": "debounce",
    "f": "until finished",
    "r": "until finished, rerun latest",
    "t": "throttle",
}
MAX_KEY = 1000


def check_dedup_key(key: str) -> str:
    """Dedup keys: 1-1000 characters, no braces, newlines or NUL (they become part of a Redis
    key under the namespace's hash tag), spelt in UTF-8 (no lone surrogate)."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
        raise ValueError(f"dedup key must be a string of 1-{MAX_KEY} characters, got {key!r:.80}")
    if any(c in key for c in "{}\n\r\x00"):
        raise ValueError(f"dedup key {key!r:.80} must not contain braces, newlines or NUL")
    try:
        key.encode()
    except UnicodeEncodeError:  # (a lone surrogate: redis-py raised it while sending the call)
        raise ValueError(f"dedup key {key!r:.80} is not valid Unicode (UTF-8)") from None
    return key


@dataclass(frozen=True, slots=True)
class Dedup:
    """Enqueue a job only if no other job of the same name holds ``key``.

    * ``until="started"`` (default): the key is held from the enqueue until the job starts.
    * ``until="finished"``: held until the job's life ends (succeeded, dead, cancelled or
      deleted): also while it runs and waits for a retry.
    * ``throttle=timedelta(...)`` (or seconds): at most one job accepted per window, counted
      from the accepted enqueue on the Redis clock, whatever becomes of that job.
    * ``debounce=True`` (held until started): a duplicate replaces the waiting job's envelope
      (args, priority, ...) and moves it to the duplicate's due time: each add pushes the run
      back, the latest args win.
    * ``rerun_latest=True`` (with ``until="finished"``): a duplicate replaces the envelope of
      the job while it waits; once it started, the duplicate waits as its rerun (at most one:
      later duplicates replace the rerun's envelope), queued when the running job's life ends.

    Keys are per job name: ``Dedup("user:7")`` on ``sync_user`` and on ``notify`` are two keys.
    """

    key: str
    until: Until = "started"
    throttle: timedelta | float | None = None
    debounce: bool = False
    rerun_latest: bool = False

    def __post_init__(self) -> None:
        check_dedup_key(self.key)
        if self.until not in ("started", "finished"):
            raise ValueError(f"until must be 'started' or 'finished', got {self.until!r}")
        flag("debounce", self.debounce)
        flag("rerun_latest", self.rerun_latest)
        if self.throttle is not None:
            window = seconds("throttle", self.throttle, zero=False)
            if not isinstance(self.throttle, timedelta):  # seconds: kept as a timedelta
                object.__setattr__(self, "throttle", timedelta(seconds=window))
            if self.window_ms < 1:
                raise ValueError(f"throttle must be at least 1 ms, got {self.throttle!r}")
            if self.until != "started":
                raise ValueError("throttle counts accepted enqueues per window: drop until=")
        if self.debounce and (self.until != "started" or self.throttle or self.rerun_latest):
            raise ValueError("debounce holds the key until the job starts: no until=, throttle")
        if self.rerun_latest and (self.until != "finished" or self.throttle):
            raise ValueError("rerun_latest needs until='finished' (and no throttle)")

    @property
    def mode(self) -> str:
        """The mode letter of lib/dedup.lua."""
        if self.throttle is not None:
            return "t"
        if self.until == "finished":
            return "r" if self.rerun_latest else "f"
        return "d" if self.debounce else "s"

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
        if self.debounce:
            out["debounce"] = True
        if self.rerun_latest:
            out["rerun_latest"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Dedup:
        throttle = data.get("throttle_ms")
        return cls(
            data["key"],
            data.get("until", "started"),
            timedelta(milliseconds=throttle) if throttle else None,
            bool(data.get("debounce", False)),
            bool(data.get("rerun_latest", False)),
        )

    def scoped(self, job_name: str) -> str:
        """The key as stored: per job name (names never contain ':')."""
        return f"{job_name}:{self.key}"
