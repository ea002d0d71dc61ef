"""Pool heartbeats, written from a thread so a blocked event loop cannot starve them.

Each beat renews the pool's lease (see ``lease.py``), stamped with the Redis server's clock. A
pool whose last renewal is older than the dead timeout is taken for dead, its lease taken and its
jobs given back by a reaper. Beating off the event loop means a handler that blocks the loop
(a sync call, a CPU-bound loop in Python) does not get its live pool reaped. What the thread
cannot survive is a handler holding the GIL (one long call into C that does not release it):
every thread of the process stops meanwhile. The thread reports such stalls when it resumes.

Each beat also reads the pool's remote quiet/resume request (admin/pools.py), in the same script
call, and hands a new one to the pool (``Lease.requested``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import orjson
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ResponseError

from ..outagelog import OutageLog
from ..store.connection import REDIS_ERRORS
from ..store.keyrepair import held_key, repair_hint_sync
from ..store.keys import Keys
from ..store.scripts import lua_source
from ..store.syncclient import sync_client_like
from .lease import Lease, gone

__all__ = ["Heartbeater"]

log = logging.getLogger("errands.heartbeat")


class Heartbeater:
    """``start()`` registers the pool (raising if Redis refuses or cannot be reached), then
    renews its lease every ``interval`` seconds in a daemon thread until ``stop()``."""

    def __init__(
        self,
        client: AsyncRedis,
        keys: Keys,
        pool_id: str,
        info: dict[str, Any],
        lease: Lease,
        info_ttl: float = 86400.0,
    ) -> None:
        self.keys = keys
        self.pool_id = pool_id
        self.info = info
        self.lease = lease
        self._outage = OutageLog(log, f"heartbeat of pool {pool_id}")
        self.interval = lease.interval
        self.info_ttl_ms = int(info_ttl * 1000)
        # A beat stuck on a half-open connection must give up (and reconnect, by the client's
        # retry) well before the dead timeout (>= 2 intervals), not after the 15 s socket
        # timeout of the pool's client: a live pool would be taken for dead meanwhile.
        self._client = sync_client_like(client, timeout_cap=max(self.interval, 1.0))
        self._script = self._client.register_script(lua_source("heartbeat"))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"errands-heartbeat-{pool_id}", daemon=True
        )

    @property
    def beats(self) -> int:
        return self.lease.beats

    def payload(self) -> bytes:
        return orjson.dumps({**self.info, "beat_at": time.time()})

    def start(self) -> None:
        """Register the pool; raises the error of the first beat if it fails (the pool must
        not start without a lease)."""
        self._send("register")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 6.0)
        self._client.close()

    def healthy_for(self) -> float:
        """Seconds this pool has been beating without a gap (0 after an outage or stall)."""
        return self.lease.healthy_for()

    def _send(self, mode: str) -> None:
        k = self.keys
        keys = [k.pools, k.pool_info(self.pool_id), k.retired, k.quiet_requests]
        sent = time.monotonic()
        reply = self._script(keys=keys, args=[self.pool_id, self.payload(), self.info_ttl_ms, mode])
        if isinstance(reply, int):  # (only -1: the lease is lost)
            reason = gone("heartbeat")
            self.lease.lose(reason)
            raise LookupError(f"pool {self.pool_id}: {reason}")
        self.lease.renewed(sent)
        request = reply[1] if len(reply) > 1 else None  # quiet/resume (admin/pools.py)
        self.lease.requested(request.decode() if isinstance(request, bytes) else request)

    def beat(self) -> bool:
        if self.lease.lost is not None:
            return False
        try:
            self._send("renew")
        except LookupError:
            return False
        except Exception as exc:  # RedisError, OSError, RedisClusterException: keep beating
            if isinstance(exc, REDIS_ERRORS):
                self._outage.failed(exc)
            elif isinstance(exc, ResponseError) and held_key(self.keys, str(exc)):
                # refused by name (lib/types.lua: `pools`, `retired`, the quiet requests of
                # another type): one ERROR with its repair while it lasts, not a line a beat
                self._outage.refused(exc, repair_hint_sync(self._client, self.keys, exc))
            else:
                log.warning("heartbeat of pool %s failed: %s", self.pool_id, exc)
            self.lease.failed()
            return False
        self._outage.ok()
        return True

    def _loop(self) -> None:
        due = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            late = time.monotonic() - due
            if late > self.interval:
                log.warning(
                    "heartbeat of pool %s ran %.1fs late: the process was frozen, or a handler "
                    "held the GIL (one long call into C); past %.1fs the pool gives its lease "
                    "up or is taken for dead, and its jobs run again elsewhere",
                    self.pool_id,
                    late,
                    self.lease.dead_timeout - 1.5 * self.interval,
                )
            if not self.beat() and self.lease.lost is not None:
                return
            due = time.monotonic() + self.interval
