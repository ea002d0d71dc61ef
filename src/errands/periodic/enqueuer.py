"""The periodic enqueuer: every pool runs one; each (schedule, fire time) is enqueued exactly once
across all of them by a compare-and-set on the schedule's last slot, in the same Lua script as
the enqueue (``lua/schedule_fire.lua``). No lock is held between calls, so a pool killed at any
moment loses no fire time: another pool's next tick handles it.

Registration (``pool.periodically_enqueue``, ``every``, ``daily``, ``hourly``) is the
:class:`~errands.periodic.registration.PeriodicRegistration` mixin of :class:`~errands.WorkerPool`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from ..clock import Clock
from ..errors import RegistrationError
from ..outagelog import OutageLog
from ..serialization import Serializer
from ..store.coalescer import server_refusal
from ..store.connection import REDIS_ERRORS
from ..store.keys import Keys
from ..store.redisclock import RedisAlignedClock, real_time
from .store import PeriodicSchedule, ScheduleStore, build_job, ms

__all__ = ["PeriodicEnqueuer", "Plan", "plan"]

log = logging.getLogger("errands.periodic")

# how far (s) a slot may be ahead of the Redis clock when a pool on real time fires it: the error
# of a pool's reading of the Redis clock (half a round trip of at most 0.5 s), and some margin
AHEAD_TOLERANCE = 1.0


@dataclass(frozen=True)
class Plan:
    """What to do for a schedule now: ``mode`` is fire, missed (too late: skip) or advance
    (disabled); ``slot`` the fire time handled, ``first`` the earliest one not handled yet."""

    mode: str
    slot: float
    next: float
    first: float


def plan(
    periodic: PeriodicSchedule, last: float, now: float, disabled: bool = False
) -> Plan | None:
    """Pure decision for one schedule whose latest handled slot is ``last``; None: nothing due.
    Only the latest due slot is ever run, so a long outage never causes a burst."""
    schedule = periodic.schedule
    first = schedule.next_fire(last)
    if first > now:
        return None
    slot = schedule.latest_fire(first, now)
    following = schedule.next_fire(slot)
    if disabled:
        mode = "advance"
    elif periodic.misfire == "skip" and now - slot > periodic.misfire_grace:
        mode = "missed"
    else:
        mode = "fire"
    return Plan(mode, slot, following, first)


class PeriodicEnqueuer:
    """Construct, then ``run()`` (the pool does), or ``tick_once()`` after moving a FakeClock."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        clock: Clock,
        serializer: Serializer,
        schedules: Sequence[PeriodicSchedule] = (),
        *,
        pool_id: str = "",
        refresh_interval: float = 2.0,
    ) -> None:
        self.store = ScheduleStore(redis, keys)
        self.clock = clock
        self.serializer = serializer
        self.code = {s.name: s for s in schedules}
        self.runtime: dict[str, PeriodicSchedule] = {}
        self._raw_runtime: dict[str, bytes | str] = {}
        self.pool_id = pool_id
        self.refresh_interval = refresh_interval
        self.fired = 0
        self.skipped = 0
        self._due: dict[str, float] = {}
        self._kick = asyncio.Event()
        self.conflicts: dict[str, str] = {}  # name -> definition another pool's code registered
        # a slot ahead of the Redis clock is refused (schedule_fire.lua), but on a test's clock
        self._ahead_ms = ms(AHEAD_TOLERANCE) if real_time(clock) else None
        self._logged: set[tuple[str, str]] = set()  # (problem, name) logged, until it clears
        self._previous_now = -math.inf
        self._replaced: set[str] = set()  # runtime schedules whose fire met another definition

    def kick(self) -> None:
        """Tick now (after the clock was moved in tests)."""
        self._kick.set()

    @property
    def schedules(self) -> list[PeriodicSchedule]:
        """The schedules this pool fires: its own (but those another pool's code defines
        differently), then runtime ones not shadowed by them."""
        runtime = [s for name, s in self.runtime.items() if name not in self.code]
        own = [s for name, s in self.code.items() if name not in self.conflicts]
        return [*own, *runtime]

    def _conflicting(self, conflicts: Mapping[str, bytes | str]) -> None:
        """Log each name another pool's code defines differently (once per definition)."""
        for name, registered in conflicts.items():
            text = registered.decode() if isinstance(registered, bytes) else registered
            if self.conflicts.get(name) != text:
                log.error(
                    "schedule %r is defined differently by the code of another running pool "
                    "(registered: %s; this pool's: %s): this pool does not fire it while that "
                    "definition is registered (until no pool registered it for %gs)",
                    name,
                    text,
                    self.code[name].to_json().decode(),
                    max(60.0, 3 * self.refresh_interval),
                )
        self.conflicts = {
            n: (r.decode() if isinstance(r, bytes) else r) for n, r in conflicts.items()
        }
        for name in self.conflicts:  # not fired here: its due time must not wake the loop
            self._due.pop(name, None)

    async def refresh(self) -> None:
        """(Re-)register this pool's schedules and re-read the runtime ones; re-align the
        clock on the Redis server's."""
        if isinstance(self.clock, RedisAlignedClock):
            await self.clock.sync()
        now_ms, live_ms = ms(self.clock.now()), ms(max(60.0, 3 * self.refresh_interval))
        added, raw, conflicts = await self.store.refresh(self.code.values(), now_ms, live_ms)
        if added:  # new, or reset by a Client: look at their state now
            for name in self.code:
                self._due.pop(name, None)
        self._conflicting(conflicts)
        if raw == self._raw_runtime:
            return
        runtime: dict[str, PeriodicSchedule] = {}
        for name, data in raw.items():
            if name in self.code:
                log.warning("runtime schedule %r is shadowed by this pool's own schedule", name)
                continue
            try:
                runtime[name] = PeriodicSchedule.from_json(name, data, "runtime")
            except (RegistrationError, ValueError, KeyError, TypeError) as exc:
                log.error("ignoring runtime schedule %r: %s", name, exc)
        changed = {
            n for n in set(self.runtime) | set(runtime) if self.runtime.get(n) != runtime.get(n)
        }
        for name in changed:
            self._due.pop(name, None)
        # what was logged of a definition gone or replaced: a new one's problem is news, and a
        # schedule gone keeps no entry for the pool's life
        self._logged = {p for p in self._logged if p[1] not in changed}
        self.runtime, self._raw_runtime = runtime, raw

    async def tick_once(self) -> int:
        """Re-read runtime schedules, then handle every due slot; returns the runs enqueued."""
        await self.refresh()
        return await self._tick()

    async def _tick(self) -> int:
        now = self.clock.now()
        if now < self._previous_now - AHEAD_TOLERANCE:  # the clock went back (Redis' did):
            self._due.clear()  # due times from before are too far: look at every state again
        self._previous_now = now
        self._replaced.clear()  # (a previous tick's: those are due now, below)
        fired = await self._handle_due(now)
        if self._replaced:  # runtime schedules replaced since the refresh: their new definition
            replaced, self._replaced = self._replaced, set()
            await self.refresh()
            fired += await self._handle_due(now, replaced)
            for name in self._replaced:  # replaced again meanwhile: due at the next tick
                self._due[name] = now
        return fired

    async def _handle_due(self, now: float, only: set[str] | None = None) -> int:
        due = [s for s in self.schedules if self._due.get(s.name, -math.inf) <= now]
        if only is not None:  # (a second pass: the replaced ones, not those handled already)
            due = [s for s in due if s.name in only]
        if not due:
            return 0
        states = await self.store.read_states([s.name for s in due])
        fired = 0
        for periodic, state in zip(due, states, strict=True):
            if state.corrupt is not None:  # (not fired, the others go on)
                self._corrupt(periodic.name, state.corrupt, now)
                continue
            self._logged.discard(("corrupt", periodic.name))
            try:
                fired += await self._handle(periodic, state.last, state.disabled, now)
            except REDIS_ERRORS:
                raise  # (Redis not answering: every schedule's problem, handled by run())
            except Exception as exc:  # one schedule's fault must not stop the others of this tick
                if server_refusal(exc):  # (READONLY, OOM, MISCONF...: the server's, not its)
                    raise
                self._failed(periodic.name, now)
            else:
                self._logged.discard(("failed", periodic.name))
        return fired

    def _failed(self, name: str, now: float) -> None:
        """Log a schedule's failure (with its traceback, once until it fires again) and try it
        again after the next refresh (a runtime one may have been replaced meanwhile)."""
        if ("failed", name) not in self._logged:
            self._logged.add(("failed", name))
            log.exception(
                "schedule %r failed (tried again every %gs; logged once); the others go on",
                name,
                self.refresh_interval,
            )
        self._due[name] = now + self.refresh_interval

    def _corrupt(self, name: str, problem: str, now: float) -> None:
        """A corrupt state (``problem``: its fields that are no integer): not fired (which slots
        ran is unknown), read again after the next refresh, logged once until it reads fine."""
        self._due[name] = now + self.refresh_interval
        self._error_once(
            ("corrupt", name),
            "schedule %r: its state is corrupt (%s: not an integer in ms or a counter); not "
            "fired until it is repaired (delete_schedule() starts it again from now, see "
            "docs/periodic.md, 'A corrupt state'); the others go on",
            name,
            problem,
        )

    async def _handle(
        self, periodic: PeriodicSchedule, last_ms: int | None, disabled: bool, now: float
    ) -> int:
        schedule = periodic.schedule
        if last_ms is None:  # a new schedule starts from now: its first slot is the next one
            following = schedule.next_fire(now)
            status, _ = await self.store.fire(
                periodic,
                "init",
                slot_ms=ms(now),
                next_ms=ms(following),
                now_ms=ms(now),
                ahead_ms=self._ahead_ms,
                fence=self._fence(periodic),
            )
            self._answered(periodic, status, following, now)
            return 0
        step = plan(periodic, last_ms / 1000, now, disabled)
        if step is None:
            following = schedule.next_fire(last_ms / 1000)
            future = self._check_future(periodic, last_ms / 1000, following, now)
            # (a state in the future is read again at each refresh: a delete_schedule resets it)
            self._due[periodic.name] = now + self.refresh_interval if future else following
            return 0
        job = build_job(periodic, now, fire_time=step.slot)
        if step.first < step.slot:
            job.meta["missed_since"] = step.first
        status, job_id = await self.store.fire(
            periodic,
            step.mode,
            slot_ms=ms(step.slot),
            next_ms=ms(step.next),
            now_ms=ms(now),
            envelope=self.serializer.dumps(job.envelope()) if step.mode == "fire" else b"",
            job_id=job.id,
            pool_id=self.pool_id,
            ahead_ms=self._ahead_ms,
            fence=self._fence(periodic),
        )
        self._answered(periodic, status, step.next, now)
        self._log(periodic, step, status, job_id)
        if status == "fired":
            self.fired += 1
            return 1
        self.skipped += status in ("skipped", "deduped")
        return 0

    def _fence(self, periodic: PeriodicSchedule) -> bytes | str | None:
        """A runtime schedule fires only as defined when this pool read it (schedule_fire.lua
        refuses it once a Client replaced it); a code schedule as this pool's code says."""
        return self._raw_runtime.get(periodic.name) if periodic.source == "runtime" else None

    def _answered(
        self, periodic: PeriodicSchedule, status: str, following: float, now: float
    ) -> None:
        """Note when ``periodic`` is due again after schedule_fire answered ``status``."""
        name = periodic.name
        if status == "gone":  # deleted meanwhile: look again after the next refresh
            return
        if status == "conflict" and periodic.source == "runtime":
            self._replaced.add(name)  # replaced meanwhile: read again in this tick
            return
        if status != "ahead":
            self._due[name] = following
            self._logged.discard(("ahead", name))
            return
        self._due[name] = now + self.refresh_interval  # after the clock's next sync
        self._error_once(
            ("ahead", name),
            "schedule %r: not handled: this pool's clock (%.3f) is more than %gs ahead of "
            "the Redis server's (tried again after the next refresh)",
            name,
            now,
            AHEAD_TOLERANCE,
        )

    def _error_once(self, problem: tuple[str, str], message: str, *args: object) -> None:
        """Log ``message`` at ERROR unless ``problem`` (kind, schedule name) was logged since
        it last cleared (its entry discarded from ``_logged``)."""
        if problem not in self._logged:
            self._logged.add(problem)
            log.error(message, *args)

    def _check_future(
        self, periodic: PeriodicSchedule, last: float, following: float, now: float
    ) -> bool:
        """Whether the latest handled fire time is ahead of now (by more than the tolerance)
        with fire times between them: written while the Redis clock was ahead, it holds the
        schedule until ``following``, and those fire times never run; logged once. (Not the
        period after ``last``: for an irregular spec it is not the gap before ``last``.)"""
        name = periodic.name
        if last - now <= AHEAD_TOLERANCE or periodic.schedule.next_fire(now) >= last:
            self._logged.discard(("future", name))
            return False
        self._error_once(
            ("future", name),
            "schedule %r: its latest handled fire time (%.0f) is %.0fs ahead of the clock (the "
            "Redis server's): it was written while that clock was ahead, and the schedule does "
            "not fire before %.0f; to start it again from now, delete_schedule() it (see "
            "docs/periodic.md, 'A clock ahead')",
            name,
            last,
            last - now,
            following,
        )
        return True

    @staticmethod
    def _log(periodic: PeriodicSchedule, step: Plan, status: str, job_id: str) -> None:
        if status == "missed":
            log.warning(
                "schedule %r: fire times %.0f..%.0f are over %gs late (no pool was running):"
                " not run (misfire='skip')",
                periodic.name,
                step.first,
                step.slot,
                periodic.misfire_grace,
            )
        elif status == "skipped":
            log.info("schedule %r: skipped, previous run %s unfinished", periodic.name, job_id)
        elif status == "deduped":
            log.info("schedule %r: skipped, job %s holds its dedup key", periodic.name, job_id)
        elif status == "fired" and step.first < step.slot:
            log.warning(
                "schedule %r: fire times from %.0f missed; one run enqueued for %.0f",
                periodic.name,
                step.first,
                step.slot,
            )

    def _wait(self) -> float:
        due = (self._due.get(s.name, math.inf) for s in self.schedules)
        upcoming = min(due, default=math.inf) - self.clock.now()
        return max(0.001, min(self.refresh_interval, upcoming))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = 0.0
        delay = 0.05
        outage = OutageLog(log, "periodic enqueuer")
        while True:
            self._kick.clear()
            try:
                if loop.time() >= next_refresh:
                    await self.refresh()
                    next_refresh = loop.time() + self.refresh_interval
                await self._tick()
                wait, delay = self._wait(), 0.05
                outage.ok()
            except REDIS_ERRORS as exc:
                outage.failed(exc)
                wait, delay = delay, min(delay * 2, 5.0)
            except Exception:  # a bug must not stop every schedule of the pool for good
                log.exception("periodic enqueuer failed; retrying")
                wait, delay = delay, min(delay * 2, 5.0)
            try:
                async with asyncio.timeout(wait):
                    await self._kick.wait()
            except TimeoutError:
                pass
