"""Quiet, the worker's side: take no new job while the running ones finish, and stay alive.

A quiet worker fetches nothing (neither its fetch loop nor its batch loops), gives back the jobs
it held ahead (lookahead.py) and those an enqueue hands it meanwhile (mailbox.py), as a stop
does; its fetch loop takes the pool's idle marks away with an empty fetch (lua/fetch.lua), and
those of its batch names (batchwait.py), so that enqueues neither hand it jobs nor wake it.
Its running jobs finish and are acknowledged, the pool heartbeats: nothing of it is reaped.
``resume_fetching`` undoes it. Nothing here runs on the fetch or ack path of a worker that is
not quiet: the loops read a flag.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from ..aio import wait_event

if TYPE_CHECKING:
    from ..store.scripts import Fetched, FetchResult
    from .sampler import PrioritySampler

__all__ = ["Quieting"]


class Quieting:
    """Mixin of Worker (its state set at the first quiet: a worker never quieted has none)."""

    wake: asyncio.Event
    buffer: deque[tuple[str, Fetched, float]]
    sampler: PrioritySampler
    _slot_freed: asyncio.Event
    _stopping: bool
    _marked_idle: bool
    _quiet = False  # takes no new job
    quiet_since: float | None = None  # (wall clock) since when, while quiet
    _unquiet: asyncio.Event | None = None  # set while not quiet, and once the worker stops
    _unmarked_quiet: asyncio.Event | None = None  # the fetch loop took the idle marks away

    if TYPE_CHECKING:  # provided by the Fetching mixin

        def _give_back(self, name: str, item: Fetched) -> None: ...

        async def _fetch(self, asked: int, order: list[tuple[str, int]]) -> FetchResult | None: ...

        async def _lease_expired(self) -> None: ...

        def batch_woken(self, channel: str = "", data: str = "") -> None: ...

        async def _batch_unmark_all(self) -> None: ...

    def _quiet_events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._unquiet is None or self._unmarked_quiet is None:
            self._unquiet, self._unmarked_quiet = asyncio.Event(), asyncio.Event()
            self._unquiet.set()
            self._unmarked_quiet.set()
        return self._unquiet, self._unmarked_quiet

    def go_quiet(self, since: float) -> bool:
        """Take no new job from now on: the jobs held ahead go back to their queues at once,
        the fetch loop takes the idle marks away (``wait_unmarked``). False if already quiet."""
        if self._quiet:
            return False
        self._quiet, self.quiet_since = True, since
        unquiet, unmarked = self._quiet_events()
        unquiet.clear()
        if not self._stopping:  # (a stopping worker's fetch loop took its marks away)
            unmarked.clear()
        while self.buffer:  # fetched ahead, never started: back on their queues
            name, item, _at = self.buffer.popleft()
            self._give_back(name, item)
        self.wake.set()  # the fetch loop, waiting for a wake-up or a slot, looks again
        self._slot_freed.set()
        self.batch_woken()  # (and the batch loops: they take their marks away)
        return True

    def resume_fetching(self) -> bool:
        """Fetch again (the fetch loop marks the pool idle again when it finds too few jobs).
        False if not quiet."""
        if not self._quiet:
            return False
        self._quiet, self.quiet_since = False, None
        self._quiet_events()[0].set()
        self.wake.set()
        self._slot_freed.set()
        return True

    async def wait_unmarked(self) -> None:
        """Until the fetch loop has taken the pool's idle marks away since the worker went
        quiet (or ended: the worker stops, or lost its lease)."""
        await self._quiet_events()[1].wait()

    def _quiet_over(self, *, stopping: bool) -> None:
        """The fetch loop ended: ``wait_unmarked`` returns; and when the worker stops, the
        loops waiting while quiet look again (and end)."""
        if self._unquiet is None or self._unmarked_quiet is None:
            return
        self._unmarked_quiet.set()
        if stopping:
            self._unquiet.set()

    async def _stay_quiet(self, longest: float) -> None:
        """(the fetch loop, while quiet) Take the idle marks away, once (an empty fetch, which
        also hands a wake-up taken meanwhile on to another idle pool: lua/fetch.lua; its error
        is the fetch loop's, retried), then wait up to ``longest`` for a resume or a stop."""
        unquiet, unmarked = self._quiet_events()
        if not unmarked.is_set():
            if await self._fetch(0, self.sampler.sample()) is None:
                await self._lease_expired()  # (not written: tried again)
                return
            self._marked_idle = False
            await self._batch_unmark_all()  # (the batch names' marks: batchwait.py)
            unmarked.set()
        await wait_event(unquiet, longest)

    async def _batch_quiet(self) -> None:
        """(a batch loop, while quiet) Wait for a resume or a stop."""
        await self._quiet_events()[0].wait()
