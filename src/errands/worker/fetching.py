"""Fetching, the worker's side: one Lua call per batch (``lua/fetch.lua``), fenced by the pool's
lease; jobs fetched are started, held ahead of free slots (see ``lookahead.py``), or given back
when the pool began stopping meanwhile. The orphans of fetches whose reply was lost: orphans.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from ..aio import wait_event
from ..clock import Clock, to_ms
from ..outagelog import OutageLog
from ..store.connection import REDIS_ERRORS
from ..store.hotcalls import WorkerScripts
from ..store.scripts import Fetched, FetchResult, LeaseLost, Scripts
from .lease import gone
from .limitwatch import LimitWatch, apply_limits
from .orphans import Orphans
from .repairs import log_refusal
from .skipnames import FetchSkips

if TYPE_CHECKING:
    from ..handlers import JobType
    from ..job import Job
    from ..store.keys import Keys
    from .acker import Acker
    from .lease import Lease
    from .mailbox import Mailbox
    from .sampler import PrioritySampler
    from .settler import Settler

__all__ = ["Fetching"]

log = logging.getLogger("errands.worker")


def fetch_outage() -> OutageLog:
    """The fetch loop's log lines while Redis fails it (outagelog.py)."""
    return OutageLog(log, "fetch loop")


class Fetching(Orphans):
    """Mixin of Worker (with its orphan sweep: orphans.py)."""

    pool_id: str
    scripts: Scripts
    keys: Keys
    clock: Clock
    settler: Settler
    acker: Acker
    sampler: PrioritySampler
    lease: Lease | None
    job_types: dict[str, JobType]
    concurrency: int
    batch: int
    poll_interval: float
    isolate_recovered: int
    dead_timeout_ms: int
    wake: asyncio.Event
    tasks: set[asyncio.Task[None]]
    buffer: deque[tuple[str, Fetched, float]]
    _slot_freed: asyncio.Event
    _holding: dict[asyncio.Future[None], str]
    _suspects: set[str | asyncio.Future[Any]]  # (see Worker._init_job_tasks)
    # a fetch that may take a suspect is on its way (this loop's or a batch name's, batching.py):
    # the others tell fetch.lua the pool runs one, so that at most one is taken at a time
    _suspect_fetch = False
    _stopping: bool
    _reclaim: bool
    _batch_inflight: set[asyncio.Future[None]]
    _expired_since: float | None
    _fetch_outage: OutageLog  # the fetch loop's log lines while Redis fails it
    reclaim_interval: float
    parked_interval: float
    reclaimed: int
    last_fetch_empty: bool
    _marked_idle: bool
    _quiet: bool
    abandoned: bool
    mailbox: Mailbox
    _unmarked: asyncio.Event
    limit_specs: dict[str, str]
    _plain: dict[str, JobType]
    _rated: frozenset[str]
    _skips: FetchSkips | None = None  # the names and partitions fetches skip (at the first)

    if TYPE_CHECKING:  # provided by Worker and the Lookahead and Quieting mixins

        @property
        def lookahead(self) -> int: ...

        def buffer_wait(self, longest: float) -> float: ...

        def hold(self, name: str, item: Fetched) -> None: ...

        def requeue_stale_buffer(self) -> int: ...

        def _start(self, name: str, item: Fetched) -> None: ...

        def _quiet_over(self, *, stopping: bool) -> None: ...

        async def _stay_quiet(self, longest: float) -> None: ...

        def _spawn(
            self, coro: Coroutine[Any, Any, None], job: Job | None, job_id: str = ""
        ) -> None: ...

    def limits_changed(self) -> None:
        """Apply the job types' limits (at start, and when set at run time: limitwatch.py)."""
        self.sampler, self.limit_specs, self._rated = apply_limits(self.job_types, self._plain)
        self.wake.set()

    def limit_watch(self) -> AbstractAsyncContextManager[None]:
        """Keeps the limits set at run time applied while the worker runs."""
        return LimitWatch(
            self.scripts.redis, self.keys, self.job_types, self.limits_changed
        ).running()

    async def _fetch_loop(self) -> None:
        try:
            await self._fetch_until_stopped()
        finally:
            if self._marked_idle and not self.abandoned:
                # no more hand-offs to this pool (those taken meanwhile go back: mailbox.py)
                with contextlib.suppress(Exception):
                    await self._fetch(0, self.sampler.sample())
            self._unmarked.set()
            self._quiet_over(stopping=self._stopping)
            await self.mailbox.poke()

    async def _fetch_until_stopped(self) -> None:
        delay = 0.05
        loop = asyncio.get_running_loop()
        next_reclaim = loop.time() + self.reclaim_interval
        next_parked = loop.time() + self.parked_interval
        while not self._stopping:
            try:
                if self._reclaim or loop.time() >= next_reclaim:
                    await self._reclaim_orphans()
                    next_reclaim = loop.time() + self.reclaim_interval
                if loop.time() >= next_parked:
                    await self.resend_parked()
                    next_parked = loop.time() + self.parked_interval
                self.requeue_stale_buffer()
                if self._quiet:  # (quieting.py: no fetch until resumed)
                    await self._stay_quiet(min(self.reclaim_interval, self.parked_interval))
                    continue
                room = self.concurrency - len(self.tasks) + self.lookahead - len(self.buffer)
                if room <= 0 and self._marked_idle:
                    # marked idle by a short fetch, and now full (the lookahead shrank): take
                    # the marks away with an empty fetch, which hands a wake-up taken meanwhile
                    # on to another idle pool (lua/fetch.lua)
                    await self._fetch(0, self.sampler.sample())
                    self._marked_idle = False
                if room <= 0:
                    self._slot_freed.clear()
                    longest = min(self.reclaim_interval, self.parked_interval)
                    await wait_event(self._slot_freed, self.buffer_wait(longest))
                    continue
                self.wake.clear()
                order = self._order()
                asked = min(room, self.batch)
                fetched = await self._fetch(asked, order)
                if fetched is not None:
                    self._marked_idle = len(fetched) < asked
                    # one that cannot start (an application's task factory raised) leaves the
                    # rest unheld: looked for by the orphan sweep, as a lost reply's
                    self._take(fetched, order)
            except LeaseLost:
                if self.lease is not None:
                    self.lease.lose(gone("fetch"))
                return
            except Exception as exc:
                delay = await self._fetch_failed(exc, delay)
                continue
            delay = 0.05
            if fetched is None:
                await self._lease_expired()
                continue
            self._expired_since = None
            self.last_fetch_empty = not fetched
            if len(fetched) < asked and not self._reclaim:
                # drained (or held back by limits): the fetch marked this pool idle, so the
                # next enqueue or freed slot wakes it; a rate limit says when it lets a job go
                # (unless a lost reply's jobs are to be looked for first)
                wait = self.poll_interval
                if fetched.wait is not None:
                    wait = min(wait, fetched.wait)
                await wait_event(self.wake, wait)

    def _order(self) -> list[tuple[str, int]]:
        """The names a fetch tries, in order (the sampler's), but those whose acks are parked
        for a key of theirs of another type (:meth:`Acker.held_names`): their jobs wait."""
        order = self.sampler.sample()
        held = self.acker.held_names()
        return [pair for pair in order if pair[0] not in held] if held else order

    async def _fetch_failed(self, exc: Exception, delay: float) -> float:
        """(the fetch loop) A fetch or start failed: waits ``delay`` unless the pool stops;
        returns the next delay."""
        # the reply of a fetch that ran may be lost (reset, timeout, or run again by the
        # client's retry): its jobs would sit in our in-progress set, unseen
        self._reclaim = True
        if isinstance(exc, REDIS_ERRORS):
            self._fetch_outage.failed(exc)
        elif not await log_refusal(self._fetch_outage, exc, self.scripts.redis, self.keys):
            log.error("fetch or start failed (%r); retrying in %.2fs", exc, delay)
        if not self._stopping:
            self._slot_freed.clear()  # a slot freed meanwhile must not skip the backoff
            await wait_event(self._slot_freed, delay)
        return min(delay * 2, 5.0)

    async def resend_parked(self) -> int:
        """Send the parked acks and settles again (their jobs held in progress since a script
        refused them: a key of another type), so that a repaired key lets them end while the
        pool lives; both scripts write nothing for a job still unfit. Returns how many ended.
        The parked requeues of orphans go to the next orphan sweep instead, which checks that
        no task here holds the job first."""
        if self.settler.unpark_orphans():
            self._reclaim = True
        if self._skips is not None:  # (partitions served again? skipnames.py)
            await self._skips.recheck(self.scripts.redis)
        return await self.acker.resend_parked() + await self.settler.resend_parked()

    async def drop_held(self) -> None:
        """The wake-up subscription went silent (notifier.py): the held fetch and ack
        connections, likely on the same broken path, are given up (store/hotcalls.py)."""
        if isinstance(self.scripts, WorkerScripts):
            await self.scripts.drop_held()

    def _suspects_told(self) -> int:
        """The suspects a fetch about to be sent tells fetch.lua this pool runs; 0 (it may take
        one) marks the fetch as the one on its way that may (``_suspect_fetch``), until its caller
        calls ``_suspect_fetched`` in the turn its reply is read, its suspects noted."""
        if self._suspects or self._suspect_fetch:
            return len(self._suspects) or 1
        self._suspect_fetch = True
        return 0

    def _suspect_fetched(self, told: int) -> None:
        if told == 0:
            self._suspect_fetch = False

    async def _fetch(self, asked: int, order: list[tuple[str, int]]) -> FetchResult | None:
        scripts = self.scripts
        # (a fetch that takes no job: the idle marks' removal, or of a pool of batch names only)
        told = self._suspects_told() if asked and order else len(self._suspects)
        try:
            got = await scripts.fetch(
                self.pool_id,
                to_ms(self.clock.now()),
                asked,
                order,
                self.isolate_recovered,
                suspects=told,
                dead_timeout_ms=self.dead_timeout_ms,
                specs=self.limit_specs,
                # an idle pool fetches again within poll_interval: its idle mark outlives that
                idle_ms=int(self.poll_interval * 2000) + 1000,
                handoffs=self.mailbox.on,
                # none once two heartbeats are missed (a dead pool's, else late by the reaper)
                beat_age_ms=int(self.lease.interval * 2000) if self.lease else None,
            )
            self._note_skipped(got, order)
            self._fetch_outage.ok()  # (one attribute test while Redis answers)
            return got
        finally:
            self._suspect_fetched(told)  # (its suspects noted by _take, in this turn)
            if isinstance(scripts, WorkerScripts) and scripts.lost_reply:
                # a fetch on the held connection ran, its reply lost (store/hotcalls.py): its
                # jobs sit in our in-progress set, unseen; looked for at once
                scripts.lost_reply = False
                self._reclaim = True

    def _note_skipped(self, got: FetchResult | None, order: list[tuple[str, int]]) -> None:
        """Logs the names and partitions a fetch skipped, once each while so (skipnames.py)."""
        if got is not None and (
            got.skipped or got.skipped_keys or got.skipped_parts or self._skips is not None
        ):
            self._skips = self._skips or FetchSkips(self.keys)
            self._skips.note(got, (name for name, _ in order))

    def _take(self, fetched: list[Fetched], order: list[tuple[str, int]]) -> None:
        """Start fetched jobs, or hold them in the buffer; when the pool began stopping (or
        went quiet) while the fetch was on its way, give them back at once."""
        halted = self._stopping or self._quiet  # (neither changes in this loop)
        for item in fetched:
            name = order[item.queue_index - 1][0]
            if item.suspect:
                self._suspects.add(item.id)
            if halted:
                self._give_back(name, item)
            elif len(self.tasks) < self.concurrency and not self.buffer:
                self._start(name, item)
            else:
                self.hold(name, item)

    def take_handed(self, name: str, item: Fetched) -> None:
        """A job an enqueue handed to this pool (mailbox.py): started or held as a fetched
        one, given back when the pool stops or is quiet; dropped when its lease is lost or may
        be by now (a reaper gives it back, fenced). A fetch then marks the pool idle again."""
        lease = self.lease
        if lease is not None and (lease.lost is not None or lease.expires_in() <= 0):
            return
        try:
            if self._stopping or self._quiet or name not in self._plain:
                self._give_back(name, item)
            elif len(self.tasks) < self.concurrency and not self.buffer:
                self._start(name, item)
            else:
                self.hold(name, item)
        except Exception as exc:  # (an application's task factory raised): the fetch loop's
            # orphan sweep gives the job back now; the hand-off reader goes on (mailbox.py)
            log.error(
                "handed job %s not started (%r); given back by the sweep",
                item.id,
                exc,
                extra={"job_id": item.id, "job_name": name},  # (no attempt: it never started)
            )
            self._reclaim = True
        self.wake.set()

    def _give_back(self, name: str, item: Fetched) -> None:
        """A job fetched but never started goes back to its queue, at its place."""
        self._spawn(self.settler.requeue_fetched(item, name), None, item.id)

    async def _lease_expired(self) -> None:
        """No heartbeat got through for the dead timeout: this pool cannot prove it is alive,
        so it fetches nothing until a renewal does (or it learns that the lease is lost)."""
        now = time.monotonic()
        if self._expired_since is None:
            self._expired_since = now
            log.warning(
                "pool %s cannot prove it is alive (no heartbeat for the dead timeout): "
                "not fetching until its lease is renewed",
                self.pool_id,
            )
        await asyncio.sleep(min(self.poll_interval, 0.25))
