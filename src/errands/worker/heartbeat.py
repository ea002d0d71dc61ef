"""Pool heartbeats, written from a thread so a blocked event loop cannot starve them.

A pool whose heartbeat (stamped with the Redis server's clock) is older than the dead timeout is
taken for dead and its jobs are given back by a reaper. Beating off the event loop means a
handler that blocks the loop does not get its live pool reaped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from redis.asyncio import Redis as AsyncRedis

from ..store.keys import Keys
from ..store.scripts import lua_source
from ..store.syncclient import sync_client_like

__all__ = ["Heartbeater"]

log = logging.getLogger("errands.heartbeat")


class Heartbeater:
    """Beats every ``interval`` seconds in a daemon thread until ``stop()``."""

    def __init__(
        self,
        client: AsyncRedis,
        keys: Keys,
        pool_id: str,
        info: dict[str, Any],
        interval: float,
        info_ttl: float = 86400.0,
    ) -> None:
        self.keys = keys
        self.pool_id = pool_id
        self.info = info
        self.interval = interval
        self.info_ttl_ms = int(info_ttl * 1000)
        # A beat stuck on a half-open connection must give up (and reconnect, by the client's
        # retry) well before the dead timeout (>= 2 intervals), not after the 15 s socket
        # timeout of the pool's client: a live pool would be taken for dead meanwhile.
        self._client = sync_client_like(client, timeout_cap=max(interval, 1.0))
        self._script = self._client.register_script(lua_source("heartbeat"))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"errands-heartbeat-{pool_id}", daemon=True
        )
        self._lock = threading.Lock()
        # monotonic time since when beats have succeeded without a gap longer than 2 intervals
        self._healthy_since: float | None = None
        self._last_ok: float | None = None
        self.beats = 0

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 6.0)
        self._client.close()

    def healthy_for(self) -> float:
        """Seconds this pool has been beating without a gap (0 after an outage or stall)."""
        with self._lock:
            if self._healthy_since is None or self._last_ok is None:
                return 0.0
            now = time.monotonic()
            if now - self._last_ok > 2 * self.interval:
                return 0.0
            return now - self._healthy_since

    def beat(self) -> bool:
        import orjson

        began = time.monotonic()
        try:
            payload = orjson.dumps({**self.info, "beat_at": time.time()})
            self._script(
                keys=[self.keys.pools, self.keys.pool_info(self.pool_id)],
                args=[self.pool_id, payload, self.info_ttl_ms],
            )
        except Exception as exc:  # RedisError, OSError, RedisClusterException: keep beating
            log.warning("heartbeat of pool %s failed: %s", self.pool_id, exc)
            with self._lock:
                self._healthy_since = None
            return False
        now = time.monotonic()
        with self._lock:
            stalled = now - began > self.interval
            gap = self._last_ok is None or now - self._last_ok > 2 * self.interval
            if self._healthy_since is None or stalled or gap:
                self._healthy_since = now
            self._last_ok = now
            self.beats += 1
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()
