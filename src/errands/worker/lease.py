"""A pool's lease: what proves it is alive, and what it does when it cannot.

A pool registers in the ``pools`` sorted set when it starts, and renews that registration with
every heartbeat (stamped with the Redis clock). A reaper that finds the last renewal older than
``dead_timeout`` takes the lease: it retires the pool (removes it from the registry) and gives
its jobs back, in one script. From then on the scripts refuse that pool id everything: fetches,
renewals, acks, settles and check-ins (``lua/fetch.lua``, ``heartbeat.lua``, ``ack.lua``...).

Renewals come from the heartbeat thread (``heartbeat.Heartbeater``); when it falls behind (its
own connection is broken), the :class:`LeaseKeeper` renews through the pool's main connection.
Whoever learns that the lease is gone (a renewal, a fetch) calls :meth:`Lease.lose`, once: the
pool then abandons its jobs and carries on under a new id (``pool.WorkerPool``).

A pool also gives its lease up by itself when no renewal got through for ``dead_timeout`` minus
half a heartbeat interval (cut off from Redis, its replies held): it abandons its jobs before
any reaper can take them, so a job never runs in two places at once because of a network fault.
A renewal is stamped by the Redis clock when it runs, after it was sent, so the reaper's view of
the lease's age is never ahead of the pool's own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from redis.exceptions import ResponseError

from ..aio import cancel_and_wait
from ..store.connection import REDIS_ERRORS
from ..store.scripts import Scripts

__all__ = ["Lease", "LeaseKeeper", "gone"]

log = logging.getLogger("errands.heartbeat")
# a renewal that fails: Redis errors, and a refusal (heartbeat.lua: a key of another type); it
# raised out of the renewal's task ("Task exception was never retrieved", each 1.5 intervals)
_RENEWAL_ERRORS: tuple[type[BaseException], ...] = (*REDIS_ERRORS, ResponseError)


def gone(refused: str) -> str:
    """Why a pool whose ``refused`` call Redis refused lost its lease. The refusal alone cannot
    tell the two cases apart: the pool id is missing from the registry either way."""
    return (
        f"Redis refused its {refused}: a reaper took its lease (no renewal got through for the "
        "dead timeout), or the Redis server lost its data (restarted without persistence, "
        "failed over to a replica that lacked it, or flushed)"
    )


class Lease:
    """Thread-safe record of a pool's renewals (monotonic times, seconds)."""

    def __init__(self, interval: float, dead_timeout: float) -> None:
        self.interval = interval
        self.dead_timeout = dead_timeout
        self._lock = threading.Lock()
        # since when renewals have succeeded without a gap longer than 2 intervals
        self._healthy_since: float | None = None
        self._last_ok: float | None = None  # when the latest successful renewal was sent
        self.lost: str | None = None  # why the lease is gone (None while held)
        self.taken = False  # lost to a reaper (True), or given up by the pool itself
        self.on_lost: Callable[[str], None] | None = None  # called once, from any thread
        # called (from the heartbeat thread) with each new remote request (admin/pools.py)
        self.on_request: Callable[[str], None] | None = None
        self._request: str | None = None
        self.beats = 0

    def requested(self, request: str | None) -> None:
        """A beat read the pool's remote request (None: none): tell the pool when it is new."""
        with self._lock:
            if request is None or request == self._request:
                return
            self._request = request
            callback = self.on_request
        if callback is not None:
            callback(request)

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at ``sent_at`` (monotonic) succeeded."""
        now = time.monotonic()
        with self._lock:
            stalled = now - sent_at > self.interval
            gap = self._last_ok is None or sent_at - self._last_ok > 2 * self.interval
            if self._healthy_since is None or stalled or gap:
                self._healthy_since = now
            if self._last_ok is None or sent_at > self._last_ok:
                self._last_ok = sent_at
            self.beats += 1

    def failed(self) -> None:
        with self._lock:
            self._healthy_since = None

    def healthy_for(self) -> float:
        """Seconds the renewals have succeeded without a gap (0 after an outage or stall)."""
        with self._lock:
            if self._healthy_since is None or self._last_ok is None or self.lost:
                return 0.0
            now = time.monotonic()
            if now - self._last_ok > 2 * self.interval:
                return 0.0
            return now - self._healthy_since

    @property
    def margin(self) -> float:
        """How long before a reaper could take it the pool gives its lease up by itself."""
        return self.interval / 2

    def expires_in(self) -> float:
        """Seconds left until the pool must give its lease up (``dead_timeout - margin``
        after the latest successful renewal was sent; negative once past)."""
        return self.dead_timeout - self.margin - self.since_renewal()

    def since_renewal(self) -> float:
        """Seconds since the latest successful renewal was sent (inf before the first)."""
        with self._lock:
            return float("inf") if self._last_ok is None else time.monotonic() - self._last_ok

    def lose(self, reason: str, *, taken: bool = True) -> None:
        """The lease is gone (``taken`` by a reaper, or given up by the pool); tell the pool
        (once)."""
        with self._lock:
            if self.lost is not None:
                return
            self.lost = reason
            self.taken = taken
            callback = self.on_lost
        if callback is not None:
            callback(reason)


class LeaseKeeper:
    """Watches the lease from the event loop: renews it through the pool's main connection when
    the heartbeat thread has not for 1.5 intervals (its connection is broken, or the process was
    frozen and the thread is not through yet), which also finds out at once, after a freeze,
    whether a reaper took the lease meanwhile."""

    def __init__(
        self,
        scripts: Scripts,
        pool_id: str,
        lease: Lease,
        payload: Callable[[], bytes],
        info_ttl_ms: int,
    ) -> None:
        self.scripts = scripts
        self.pool_id = pool_id
        self.lease = lease
        self.payload = payload
        self.info_ttl_ms = info_ttl_ms
        self.renewals = 0  # how many renewals went through the main connection

    async def run(self) -> None:
        lease = self.lease
        step = max(0.05, lease.interval / 4)
        renewal: asyncio.Task[bool] | None = None
        try:
            while lease.lost is None:
                left = lease.expires_in()
                if left <= 0:
                    lease.lose(
                        f"no renewal got through for {lease.since_renewal():.1f}s (dead timeout "
                        f"{lease.dead_timeout:g}s): it gives its lease up before a reaper can "
                        "take it",
                        taken=False,
                    )
                    return
                await asyncio.sleep(min(step, left))
                stale = lease.since_renewal() >= 1.5 * lease.interval
                if stale and (renewal is None or renewal.done()):
                    # not awaited here: a renewal held past the socket timeout must not delay
                    # giving the lease up in time
                    renewal = asyncio.create_task(self.renew(), name="errands-lease-renewal")
        finally:
            if renewal is not None:
                await cancel_and_wait([renewal])

    async def renew(self) -> bool:
        """Renew through the main connection; False when it failed or the lease is lost."""
        sent = time.monotonic()
        try:
            at = await self.scripts.heartbeat(self.pool_id, self.payload(), self.info_ttl_ms)
        except _RENEWAL_ERRORS as exc:  # (a refusal too: the heartbeat thread logs it)
            log.debug("lease renewal of pool %s failed: %s", self.pool_id, exc)
            return False
        if at < 0:
            self.lease.lose(gone("lease renewal"))
            return False
        self.renewals += 1
        self.lease.renewed(sent)
        return True
