"""Lookahead: with short jobs a pool fetches jobs ahead of its free slots, so the next job starts
the moment a slot frees instead of after a fetch round trip. A job fetched ahead must never wait
long while another pool could run it: it goes back to its queue, at its place, after
``BUFFER_MAX_WAIT``, and nothing is fetched ahead while a job of the pool runs long."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store.scripts import Fetched

__all__ = ["BUFFER_MAX_WAIT", "LOOKAHEAD_MAX_RUN", "Lookahead"]

LOOKAHEAD_MAX_RUN = 0.05  # seconds: the mean run time under which the pool fetches ahead
BUFFER_MAX_WAIT = 0.2  # seconds a job fetched ahead may wait for a slot


class Lookahead:
    """Mixin of Worker."""

    concurrency: int
    buffer: deque[tuple[str, Fetched, float]]
    _may_look_ahead: bool
    _mean_run: float
    _started_at: dict[str, float]

    if TYPE_CHECKING:  # provided by the Fetching mixin

        def _give_back(self, name: str, item: Fetched) -> None: ...

    @property
    def lookahead(self) -> int:
        """How many jobs to fetch ahead of free slots. Only while jobs are short (mean run under
        LOOKAHEAD_MAX_RUN), no job type has max_concurrency, and no job of this pool has been
        running for BUFFER_MAX_WAIT: a job fetched ahead then waits a few milliseconds."""
        if not self._may_look_ahead or self._mean_run >= LOOKAHEAD_MAX_RUN:
            return 0
        if self._started_at:
            oldest = min(self._started_at.values())
            if time.monotonic() - oldest >= BUFFER_MAX_WAIT:
                return 0
        return self.concurrency

    def buffer_wait(self, longest: float) -> float:
        """How long the fetch loop may wait for a free slot before looking at the buffer."""
        if not self.buffer:
            return longest
        due = self.buffer[0][2] + BUFFER_MAX_WAIT - time.monotonic()
        return max(0.001, min(longest, due))

    def requeue_stale_buffer(self) -> int:
        """Give back the jobs that waited in the buffer for BUFFER_MAX_WAIT (every slot is
        held by a long job): another pool may run them now. Returns how many."""
        now = time.monotonic()
        n = 0
        while self.buffer and now - self.buffer[0][2] >= BUFFER_MAX_WAIT:
            name, item, _at = self.buffer.popleft()
            self._give_back(name, item)
            n += 1
        return n

    def _observe(self, seconds: float) -> None:
        """Keep the moving mean of run times that decides the lookahead."""
        mean = self._mean_run
        self._mean_run = seconds if mean == float("inf") else 0.8 * mean + 0.2 * seconds
