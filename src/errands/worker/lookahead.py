"""Lookahead: with short jobs a pool fetches jobs ahead of its free slots, so the next job starts
the moment a slot frees instead of after a fetch round trip. A job fetched ahead must never wait
long while another pool could run it: it goes back to its queue, at its place, after
``BUFFER_MAX_WAIT``, and nothing is fetched ahead while a job of the pool runs long.

Limits do not stop the lookahead: a job fetched ahead holds its concurrency slots (type-wide and
of its partition) from the fetch on, so no cap is ever exceeded, and a reaper frees them if the
pool dies. A rate counts a job's start at the fetch (the Redis clock): a job of a type with a
rate held ahead waits at most ``RATED_BUFFER_MAX_WAIT`` from ``hold()`` (when the fetch's reply
was read, a round trip after its counted start; a handler may start later than that by the
event loop's lag), then goes back, and its give-back uncounts its start (lua/settle.lua,
behind the attempt fence): a give-back spends none of the rate's budget. (Before, it stayed
counted, and the lookahead was off for a pool serving a rated type: Rate(3/s) beside 35 ms
jobs at concurrency 1 ran 3 to 5 starts in 3 s instead of 9.)"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store.scripts import Fetched

__all__ = ["BUFFER_MAX_WAIT", "LOOKAHEAD_MAX_RUN", "RATED_BUFFER_MAX_WAIT", "Lookahead"]

LOOKAHEAD_MAX_RUN = 0.05  # seconds: the mean run time under which the pool fetches ahead
BUFFER_MAX_WAIT = 0.2  # seconds a job fetched ahead may wait for a slot
RATED_BUFFER_MAX_WAIT = 0.02  # the same for a job of a type with a rate


class Lookahead:
    """Mixin of Worker."""

    concurrency: int
    buffer: deque[tuple[str, Fetched, float]]  # (name, job, monotonic time it is given back)
    _rated: frozenset[str]  # job names with a rate limit
    _mean_run: float
    _started_at: dict[asyncio.Future[Any], float]  # task -> monotonic start, of running jobs

    if TYPE_CHECKING:  # provided by the Fetching mixin

        def _give_back(self, name: str, item: Fetched) -> None: ...

        def _start(self, name: str, item: Fetched) -> None: ...

    @property
    def lookahead(self) -> int:
        """How many jobs to fetch ahead of free slots. Only while jobs are short (mean run under
        LOOKAHEAD_MAX_RUN) and no job of this pool has been running for BUFFER_MAX_WAIT: a job
        fetched ahead then waits a few milliseconds."""
        if self._mean_run >= LOOKAHEAD_MAX_RUN:
            return 0
        if self._started_at:
            oldest = min(self._started_at.values())
            if time.monotonic() - oldest >= BUFFER_MAX_WAIT:
                return 0
        return self.concurrency

    def hold(self, name: str, item: Fetched) -> None:
        """Keep a job fetched ahead until a slot frees, or until it is given back."""
        wait = RATED_BUFFER_MAX_WAIT if name in self._rated else BUFFER_MAX_WAIT
        self.buffer.append((name, item, time.monotonic() + wait))

    def buffer_wait(self, longest: float) -> float:
        """How long the fetch loop may wait for a free slot before looking at the buffer."""
        if not self.buffer:
            return longest
        due = min(due for _name, _item, due in self.buffer) - time.monotonic()
        return max(0.001, min(longest, due))

    def start_held(self) -> None:
        """Start the next job held ahead in the slot just freed, if any; those before it that
        waited past their longest wait go back instead of starting late (the fetch loop gives
        them back too, but not while it awaits a fetch)."""
        buffer, now = self.buffer, time.monotonic()
        if buffer and buffer[0][2] <= now:  # (most often none did: no list made, no loop)
            stale = []
            while buffer and buffer[0][2] <= now:
                stale.append(buffer.popleft())
            for name, item, _due in stale:
                self._give_back(name, item)
        if buffer:
            name, item, _due = buffer.popleft()
            self._start(name, item)

    def requeue_stale_buffer(self) -> int:
        """Give back the jobs that waited in the buffer for their longest wait (every slot is
        held by a long job): another pool may run them now. Returns how many."""
        if not self.buffer:
            return 0
        now = time.monotonic()
        if min(due for _name, _item, due in self.buffer) > now:
            return 0
        kept = [entry for entry in self.buffer if entry[2] > now]
        stale = [entry for entry in self.buffer if entry[2] <= now]
        self.buffer.clear()
        self.buffer.extend(kept)
        for name, item, _due in stale:
            self._give_back(name, item)
        return len(stale)

    def _observe(self, seconds: float) -> None:
        """Keep the moving mean of run times that decides the lookahead. Worker._run updates
        it the same way inline (a call less a job): only tests call this, and
        tests/worker/test_hot_copies.py checks that the two agree."""
        mean = self._mean_run
        self._mean_run = seconds if mean == math.inf else 0.8 * mean + 0.2 * seconds
