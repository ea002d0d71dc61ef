"""What one background component of a pool logs while Redis fails it: one WARNING when its
calls start failing (the error, and that it retries with backoff), at most one reminder every
``remind_every`` seconds while the failures last ("still failing for 40s"), and one INFO when a
call gets through again ("Redis reachable again after 12.3s"). Only the log lines: the caller's
retries and backoff are its own and unchanged.

>>> outage = OutageLog(log, "fetch loop")
>>> try: ...; outage.ok()                     # after each call that got through
... except REDIS_ERRORS as exc: outage.failed(exc)

``ok()`` costs one attribute test while nothing fails (it sits on hot paths). The clock is
injectable (``clock=``), so tests need no sleeps."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .logfmt import describe

__all__ = ["REMIND_EVERY", "OutageLog"]

REMIND_EVERY = 30.0  # seconds between two reminders of an outage that lasts


class OutageLog:
    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        remind_every: float = REMIND_EVERY,
    ) -> None:
        self.log = log
        self.what = what
        self.clock = clock
        self.remind_every = remind_every
        self.since: float | None = None  # when the first failure of this outage was seen
        self._next_reminder: float | None = None  # None: no failed() yet in this outage
        self._failures = 0  # failed calls of this outage
        self._refused: str | None = None  # the reason of a script's refusal logged (refused())

    def failed(self, exc: BaseException) -> None:
        """A call failed with a Redis error (unreachable, timed out, loading...): logs it if it
        starts an outage or a reminder is due, else counts it."""
        now = self.clock()
        self._failures += 1
        if self.since is None:
            self.since = now
        if self._next_reminder is None:  # (its first line, after refusals too: refused())
            self._next_reminder = now + self.remind_every
            self.log.warning(
                "%s: Redis calls failing (%s); retrying with backoff (a reminder every %.0fs "
                "while it lasts, a line when it works again)",
                self.what,
                describe(exc),
                self.remind_every,
            )
        elif now >= self._next_reminder:
            self._next_reminder = now + self.remind_every
            self.log.warning(
                "%s: Redis calls still failing for %.0fs (%d failed, last: %s); retrying",
                self.what,
                now - self.since,
                self._failures,
                describe(exc),
            )

    def refused(self, exc: BaseException, repair: str = "") -> None:
        """A call was refused by its script as a whole (a key of the namespace of another type,
        a counter that is not one: an error reply, sent again it is refused again until the key
        is repaired): one ERROR with its reason and ``repair`` while the same reason lasts
        (redis-py's repr of an error reply hides its message; a line per retry before)."""
        if self.since is None:
            self.since = self.clock()
        self._failures += 1
        reason = describe(exc, named=False)
        if reason != self._refused:
            self._refused = reason
            self.log.error(
                "%s: calls refused: %s%s; retrying with backoff (a line when it works again)",
                self.what,
                reason,
                repair,
            )

    def ok(self) -> None:
        """A call got through: ends the outage, if any, with one INFO line (a WARNING after
        refusals: the key was repaired)."""
        if self.since is None:
            return
        if self._refused is not None:
            self.log.warning(
                "%s: calls go through again after %.1fs (%d failed): repaired",
                self.what,
                self.clock() - self.since,
                self._failures,
            )
            self.since, self._failures, self._refused = None, 0, None
            self._next_reminder = None
            return
        self.log.info(
            "%s: Redis reachable again after %.1fs (%d failed calls)",
            self.what,
            self.clock() - self.since,
            self._failures,
        )
        self.since = None
        self._next_reminder = None
        self._failures = 0
