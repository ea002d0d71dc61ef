"""Hand-offs, the worker's side: an idle pool blocks on its hand-off list (lua/lib/handoff.lua),
on which an enqueue pushes a job it already took into the pool's in-progress set (its attempt
record written, its start counted, as a fetch does): the job starts without a wake-up message
and a fetch round trip.

What the list holds is the pool's, as what a fetch took: read by the mailbox's ``BLPOP`` (one
connection held for it, its replies read by errands as the held fetch connection's are:
store/pinned.py; one whole second at a time: Redis < 6 reads no fraction), given back
when the pool stops (its fetch loop first took its idle marks away, so that no enqueue hands it
more), taken back by a reaper when the pool dies (lua/reap.lua deletes the list). The orphan
sweep (orphans.py) reads the pool's in-progress set while no ``BLPOP`` is in flight
(:meth:`Mailbox.quiet`): a job an enqueue took for the pool is then either in the list (held,
not swept) or was read by the mailbox and is held by the worker; only a job whose entry was
read and its reply lost is swept back to its queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from redis.exceptions import NoPermissionError, ReadOnlyError, ResponseError

from ..outagelog import OutageLog
from ..store.connection import BROKEN, REDIS_ERRORS
from ..store.keys import Keys
from ..store.pinned import PinnedConnection
from ..store.records import Fetched
from ..store.scripts import Scripts
from ..store.topology import connection_option, is_cluster

__all__ = ["Mailbox", "parse_handoff"]

log = logging.getLogger("errands.worker")

POKE = b""  # pushed to end a BLPOP at once (a sweep, a stop); skipped when read
POKE_TTL_MS = 60_000  # the list a poke left expires (read, it is gone anyway)


def parse_handoff(raw: bytes) -> tuple[str, Fetched] | None:
    """The job name and the job of a hand-off list entry (``<token> <queue score> <name> <id>
    <envelope>``), or None for a poke (or an entry of another shape)."""
    parts = raw.split(b" ", 4)
    if len(parts) != 5:
        return None
    token, score, name, job_id, envelope = parts
    return name.decode(), Fetched(0, job_id.decode(), envelope, token.decode(), float(score))


def _transient(exc: Exception) -> bool:
    """Redis out of reach, or a failover under way: a master demoted to a replica refuses
    writes (READONLY) and ends a blocked read (-UNBLOCKED); logged as a warning, not an error."""
    if isinstance(exc, (*REDIS_ERRORS, ReadOnlyError)):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith("UNBLOCKED")


class Taker(Protocol):
    """What the mailbox needs of the worker (loop.py)."""

    scripts: Scripts
    keys: Keys
    pool_id: str
    _reclaim: bool  # set: the fetch loop's orphan sweep runs at once

    @property
    def stopping(self) -> bool: ...

    def take_handed(self, name: str, item: Fetched) -> None: ...


class Mailbox:
    """Reads the pool's hand-off list while the worker runs; ``on`` while it does (the worker's
    fetches then mark it as taking hand-offs)."""

    block = 1  # seconds per BLPOP
    enabled = True  # (tests of the wake-up path turn it off)

    def __init__(self, worker: Taker) -> None:
        self.worker = worker
        self.key = worker.keys.handoff(worker.pool_id)
        # hands-offs taken (the worker's fetches say so) until the mailbox stops or is refused;
        # not when a BLPOP would outlast the socket timeout
        timeout = connection_option(worker.scripts.redis, "socket_timeout")
        self.on = self.enabled and (timeout is None or timeout >= 2 * self.block)
        self.received = 0
        self._outage = OutageLog(log, "hand-off list")
        # the BLPOP's own connection, its replies read by errands (store/pinned.py): the
        # handed job starts without redis-py's command machinery; the general path after it
        redis = worker.scripts.redis
        self._held = None if is_cluster(redis) else PinnedConnection(redis)
        self._held_ok = True  # (False after a held read failed, until a general one succeeds)
        key, block = self.key.encode(), str(self.block).encode()
        self._blpop = b"*3\r\n$5\r\nBLPOP\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
            len(key), key, len(block), block)  # fmt: skip
        self._in_flight = False
        self._returned = asyncio.Event()  # set when no BLPOP is in flight
        self._returned.set()
        self._quiet = 0
        self._resume = asyncio.Event()

    async def run(self, unmarked: asyncio.Event) -> None:
        """Until the worker stops; then, once its idle marks are gone (``unmarked``), gives back
        what the list still holds."""
        worker = self.worker
        if not self.on:
            return
        delay = 0.05
        try:
            while not worker.stopping:
                if self._quiet:
                    self._resume.clear()
                    await self._resume.wait()
                    continue
                self._in_flight = True
                self._returned.clear()
                try:
                    got = await self._pop()
                    delay = 0.05
                    self._outage.ok()
                except NoPermissionError as exc:  # an ACL rule of an older errands: no BLPOP
                    log.warning("no hand-offs for pool %s: %s", worker.pool_id, exc)
                    return
                except Exception as exc:  # (a pop whose reply was lost: the sweep's)
                    # not only Redis unreachable: -UNBLOCKED (the master was demoted to a
                    # replica, CLIENT UNBLOCK ... ERROR), WRONGTYPE (a corrupt list): the
                    # worker's run task must not end with it (loop.py)
                    if _transient(exc):
                        self._outage.failed(exc)
                    else:
                        log.error("hand-off list read failed (%r); again in %.2fs", exc, delay)
                    got = None
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, 5.0)
                finally:
                    self._in_flight = False
                if got is not None:
                    self._take(got[1])
                self._returned.set()
                if got is not None:  # the job's task takes its first step before the next BLPOP
                    await asyncio.sleep(0)
            self.on = False
            await unmarked.wait()
            await self._drain()
        finally:
            self.on = False
            self._returned.set()
            if self._held is not None:
                with contextlib.suppress(Exception):
                    await self._held.aclose()

    async def _pop(self) -> Any:
        """One BLPOP: on the held connection, else the general way, which reconnects and
        retries. A read that broke or timed out (either way) may have taken an entry whose reply
        was lost: the worker's orphan sweep runs at once (as after a pinned fetch's), and the held
        connection is tried again only once a general read has succeeded (while Redis cannot
        be reached, a turn waits for one reconnect, not for two)."""
        if self._held is not None and self._held_ok:
            try:
                return await self._held.send(self._blpop)
            except BROKEN:
                self._held_ok = False
                self.worker._reclaim = True
        try:
            got = await self.worker.scripts.redis.blpop([self.key], timeout=self.block)
        except BROKEN:  # (as on the held connection: an entry popped, its reply lost)
            self.worker._reclaim = True
            raise
        self._held_ok = True
        return got

    async def _drain(self) -> None:
        """Gives back what the list holds (the pool stops); a read that fails ends it (logged):
        what is left stays in the pool's in-progress set, taken back by a reaper."""
        try:
            while (raw := await self.worker.scripts.redis.lpop(self.key)) is not None:
                self._take(raw)
        except Exception as exc:
            log.error("hand-off list of pool %s not drained (%r)", self.worker.pool_id, exc)

    def _take(self, raw: object) -> None:
        try:
            entry = parse_handoff(raw) if isinstance(raw, bytes) else None
        except ValueError:  # (not a number where the score goes: no entry of a hand-off)
            entry = None
        if entry is not None:
            self.received += 1
            self.worker.take_handed(*entry)

    async def poke(self) -> None:
        """End the BLPOP in flight now (best effort: any error is logged, never raised). The
        list expires with the poke (POKE_TTL_MS): a poke that no BLPOP reads (the pop ended by
        its timeout as the poke came, a drain that ran first, a pool reaped meanwhile) must not
        leave the list behind for good. (An enqueue hands a job only to an empty list.)"""
        if self._in_flight:
            try:
                async with self.worker.scripts.redis.pipeline(transaction=True) as pipe:
                    pipe.lpush(self.key, POKE)
                    pipe.pexpire(self.key, POKE_TTL_MS)
                    await pipe.execute()
                self._outage.ok()
            except REDIS_ERRORS as exc:
                self._outage.failed(exc)
            except Exception as exc:
                log.warning("hand-off list of pool %s not poked (%r)", self.worker.pool_id, exc)

    @contextlib.asynccontextmanager
    async def quiet(self) -> AsyncIterator[None]:
        """No BLPOP in flight inside (the one in flight is poked, waited for and its entry
        taken); entries pushed meanwhile stay in the list."""
        self._quiet += 1
        try:
            await self.poke()
            await self._returned.wait()
            yield
        finally:
            self._quiet -= 1
            self._resume.set()
