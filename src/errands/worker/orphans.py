"""The orphan sweep, the worker's side (moved from fetching.py): the jobs in this pool's
in-progress set that this worker does not hold (a fetch whose reply was lost put them there)
go back on their queues, each fenced by the attempt the sweep read (store/sweepread.py)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..clock import Clock, to_ms
from ..store.scripts import Fetched, Scripts, Settle, SettleRefused
from ..store.settlecall import settle_chunks
from ..store.sweepread import in_progress_and_handoffs
from .mailbox import parse_handoff

if TYPE_CHECKING:
    from ..handlers import JobType
    from ..store.keys import Keys
    from .acker import Acker
    from .mailbox import Mailbox
    from .settler import Settler

__all__ = ["Orphans"]

log = logging.getLogger("errands.worker")


class Orphans:
    """Mixin of Worker (through Fetching): the orphan sweep."""

    pool_id: str
    scripts: Scripts
    keys: Keys
    clock: Clock
    settler: Settler
    acker: Acker
    mailbox: Mailbox
    job_types: dict[str, JobType]
    buffer: deque[tuple[str, Fetched, float]]
    _holding: dict[asyncio.Future[None], str]
    _reclaim: bool
    _batch_inflight: set[asyncio.Future[None]]
    reclaimed: int

    if TYPE_CHECKING:  # provided by the Batching mixin

        def batch_holding(self) -> Iterator[str]: ...

    async def _reclaim_orphans(self) -> None:
        """Put back on their queues the jobs in this pool's in-progress set that this worker
        does not hold. A fetch whose reply was lost moved them there (Redis ran it, then the
        connection was reset or timed out, or the client's retry ran it a second time); nobody
        would run them, and their max_concurrency slots would stay taken, while this pool
        lives. Each is fenced by the attempt the read saw (settle.lua, token '*<attempt>'): a
        job acked, settled, or fetched again meanwhile (by a batch loop, beside this one) is
        left alone. One settle.lua refuses is parked (Settler.park) and holds none of the
        others (settled in the same call)."""
        # the jobs in the hand-off list are held (mailbox.py): read with the attempts, in one
        # transaction (one server, one instant: store/sweepread.py), while no BLPOP is in flight
        async with self.mailbox.quiet():
            raw, listed, tokens = await in_progress_and_handoffs(
                self.scripts.redis, self.keys, self.pool_id
            )
        # a batch fetch in flight when the attempts were read (on another connection) may have
        # put jobs in the set that its batch does not hold yet: looked at once it ended (one
        # started later took another attempt). Not a wait for no fetch in flight at all, nor a
        # pass given up when one started: a pool always fetching never swept
        in_flight = set(self._batch_inflight)
        if in_flight:
            await asyncio.wait(in_flight)
        handed = {entry[1].id for entry in filter(None, map(parse_handoff, listed))}
        orphans: list[Settle] = []
        for member in raw:
            job_id, _, name = member.decode(errors="replace").partition(":")
            token = tokens.get(job_id)  # (none: not in progress here any more, or not ours)
            if token is not None and name in self.job_types:
                queue = self.keys.queue(name)
                s = Settle(job_id, name, "requeue", queue, 0, 1, history=False)
                s.token = "*" + token
                s.unstart = True  # (never started here: a key held until started is its again)
                orphans.append(s)
        await self._requeue_orphans(orphans, handed)
        self._reclaim = False

    async def _requeue_orphans(self, orphans: list[Settle], handed: set[str]) -> None:
        """Requeue ``orphans`` (each fenced on the attempt the sweep read) in settle.lua calls
        of SETTLE_MAX jobs, SETTLE_BYTES at most (as a stop requeues a batch: a lost reply of a
        large batch fetch cost a call a job), leaving out before each call the jobs this worker
        holds by then; a call sent again (the next sweep, after an error) settles nothing twice.
        One WARNING for the sweep's requeued jobs (how many, the first few): it was one a job,
        1,000 lines for the lost reply of a batch fetch of 1,000."""
        requeued: list[Settle] = []
        try:
            for chunk in settle_chunks(self.keys, self.pool_id, orphans):
                held = self._held(handed)  # (what started while the last call was awaited)
                chunk = [s for s in chunk if s.id not in held]
                if not chunk:
                    continue
                now_ms = to_ms(self.clock.now())
                for s in chunk:
                    s.now_ms = now_ms
                outcomes = await self.scripts.settle_report(self.pool_id, chunk)
                for s, outcome in zip(chunk, outcomes, strict=True):
                    if isinstance(outcome, SettleRefused):  # (not the others' sweep: parked,
                        self.settler.park(s, outcome)  # sent again with the parked settles)
                    elif outcome:
                        self.reclaimed += 1
                        requeued.append(s)
        finally:
            _log_requeued(requeued)

    def _held(self, handed: set[str]) -> set[str]:
        """The ids of the jobs this worker holds now (``handed``: those read in its hand-off
        list, which the mailbox starts once the sweep's read is done)."""
        held = set(handed)
        held.update(self._holding.values())
        held.update(self.acker.holding())
        held.update(self.settler.parked)  # (their settle refused for good: left in progress)
        held.update(item.id for _name, item, _at in self.buffer)
        held.update(self.batch_holding())
        return held


SHOWN = 5  # the jobs a sweep's WARNING names


def _log_requeued(requeued: list[Settle]) -> None:
    """The sweep's one WARNING: how many jobs it requeued, the first ``SHOWN`` by name and id
    (fields: ``job_ids``, those shown; ``job_name`` when one name; ``job_id`` when one job)."""
    if not requeued:
        return
    shown = ", ".join(f"{s.name} {s.id}" for s in requeued[:SHOWN])
    more = f" and {len(requeued) - SHOWN} more" if len(requeued) > SHOWN else ""
    names = {s.name for s in requeued}
    extra: dict[str, object] = {"job_ids": [s.id for s in requeued[:SHOWN]]}
    if len(names) == 1:
        extra["job_name"] = requeued[0].name
    if len(requeued) == 1:
        extra["job_id"] = requeued[0].id
    log.warning(
        "%d job(s) were in progress here unbeknownst (a lost reply): requeued (%s%s)",
        len(requeued),
        shown,
        more,
        extra=extra,
    )
