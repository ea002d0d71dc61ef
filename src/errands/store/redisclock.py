"""A clock aligned on the Redis server's, so that processes on different hosts agree on the
time: every pool decides the fire times of periodic schedules by it, as heartbeats are stamped
with the Redis clock. A clock injected for tests (anything but ``SystemClock``) is left as is."""

from __future__ import annotations

from ..clock import Clock, SystemClock
from .scripts import Scripts

__all__ = ["RedisAlignedClock"]


class RedisAlignedClock:
    """``base`` plus the offset to the Redis clock measured by the latest ``sync()``."""

    def __init__(self, base: Clock, scripts: Scripts) -> None:
        self.base = base
        self.scripts = scripts
        self.offset = 0.0
        self.synced = False

    def now(self) -> float:
        return self.base.now() + self.offset

    async def sync(self) -> None:
        """Measure the offset (half the round trip is the error bound); an answer slower than
        half a second keeps the previous offset."""
        if not isinstance(self.base, SystemClock):
            return
        before = self.base.now()
        seconds, micros = await self.scripts.redis_time()
        after = self.base.now()
        if after - before <= 0.5:
            self.offset = seconds + micros / 1e6 - (before + after) / 2
            self.synced = True
