"""A clock aligned on the Redis server's, so that processes on different hosts agree on the
time: every pool decides the fire times of periodic schedules by it, as heartbeats are stamped
with the Redis clock. A clock injected for tests (anything but ``SystemClock``) is left as is."""

from __future__ import annotations

from ..clock import Clock, SystemClock
from .scripts import Scripts

__all__ = ["RedisAlignedClock", "real_time"]


class RedisAlignedClock:
    """The Redis time read by the latest ``sync()`` plus the time elapsed since on the host's
    monotonic clock: a step of the host's wall clock between two syncs (a VM resumed, an NTP
    step) does not move it. Before the first sync, and over a clock injected for tests, it reads
    ``base``."""

    def __init__(self, base: Clock, scripts: Scripts) -> None:
        self.base = base
        self.scripts = scripts
        self.synced = False
        self._redis_at = 0.0  # the Redis time of the latest sync ...
        self._monotonic_at = 0.0  # ... and the host's monotonic clock then

    def now(self) -> float:
        if self.synced and isinstance(self.base, SystemClock):
            return self._redis_at + (self.base.monotonic() - self._monotonic_at)
        return self.base.now()

    async def sync(self) -> None:
        """Read the Redis time (half the round trip is the error bound); an answer slower than
        half a second keeps the previous reading."""
        if not isinstance(self.base, SystemClock):
            return
        before = self.base.monotonic()
        seconds, micros = await self.scripts.redis_time()
        after = self.base.monotonic()
        if after - before <= 0.5:
            self._redis_at = seconds + micros / 1e6
            self._monotonic_at = (before + after) / 2
            self.synced = True


def real_time(clock: Clock) -> bool:
    """Whether ``clock`` reads real time: the system's clock, or one aligned over it."""
    return isinstance(clock.base if isinstance(clock, RedisAlignedClock) else clock, SystemClock)
