"""The periodic enqueuer: every pool runs one; each (schedule, fire time) is enqueued exactly once
across all of them by a compare-and-set on the schedule's last slot, in the same Lua script as
the enqueue (``lua/schedule_fire.lua``). No lock is held between calls, so a pool killed at any
moment loses no fire time: another pool's next tick handles it.

Registration (``pool.periodically_enqueue``, ``every``, ``daily``, ``hourly``) is the
:class:`PeriodicRegistration` mixin of :class:`~errands.WorkerPool`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from ..clock import Clock
from ..dedup import Dedup
from ..errors import RegistrationError
from ..serialization import Serializer
from ..store.connection import REDIS_ERRORS
from ..store.keys import Keys
from ..store.redisclock import RedisAlignedClock
from .spec import parse_duration
from .store import PeriodicSchedule, ScheduleStore, build_job, make_periodic, ms

__all__ = [
    "PeriodicEnqueuer",
    "PeriodicRegistration",
    "Plan",
    "load_named_schedules",
    "plan",
]

log = logging.getLogger("errands.periodic")


def load_named_schedules(directory: str | Path = ".") -> dict[str, Any]:
    """Named schedules from ``[tool.errands.schedules]`` in ``pyproject.toml`` and from
    ``errands.toml`` (``[schedules]`` or ``[tool.errands.schedules]``); errands.toml wins."""
    found: dict[str, Any] = {}
    for filename in ("pyproject.toml", "errands.toml"):
        path = Path(directory) / filename
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RegistrationError(f"cannot read named schedules from {path}: {exc}") from None
        table = data.get("tool", {}).get("errands", {}).get("schedules", {})
        if filename == "errands.toml":
            table = {**data.get("schedules", {}), **table}
        if not isinstance(table, dict):
            raise RegistrationError(f'{path}: schedules must be a table of NAME = "spec"')
        found.update(table)
    return found


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
        for name in set(self.runtime) | set(runtime):
            if self.runtime.get(name) != runtime.get(name):
                self._due.pop(name, None)
        self.runtime, self._raw_runtime = runtime, raw

    async def tick_once(self) -> int:
        """Re-read runtime schedules, then handle every due slot; returns the runs enqueued."""
        await self.refresh()
        return await self._tick()

    async def _tick(self) -> int:
        now = self.clock.now()
        due = [s for s in self.schedules if self._due.get(s.name, -math.inf) <= now]
        if not due:
            return 0
        states = await self.store.read_states([s.name for s in due])
        fired = 0
        for periodic, (last_ms, disabled) in zip(due, states, strict=True):
            fired += await self._handle(periodic, last_ms, disabled, now)
        return fired

    async def _handle(
        self, periodic: PeriodicSchedule, last_ms: int | None, disabled: bool, now: float
    ) -> int:
        schedule = periodic.schedule
        if last_ms is None:  # a new schedule starts from now: its first slot is the next one
            following = schedule.next_fire(now)
            status, _ = await self.store.fire(
                periodic, "init", slot_ms=ms(now), next_ms=ms(following), now_ms=ms(now)
            )
            if status != "gone":  # deleted meanwhile: look again after the next refresh
                self._due[periodic.name] = following
            return 0
        step = plan(periodic, last_ms / 1000, now, disabled)
        if step is None:
            self._due[periodic.name] = schedule.next_fire(last_ms / 1000)
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
        )
        if status != "gone":
            self._due[periodic.name] = step.next
        self._log(periodic, step, status, job_id)
        if status == "fired":
            self.fired += 1
            return 1
        self.skipped += status in ("skipped", "deduped")
        return 0

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
        upcoming = min(self._due.values(), default=math.inf) - self.clock.now()
        return max(0.001, min(self.refresh_interval, upcoming))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = 0.0
        delay = 0.05
        while True:
            self._kick.clear()
            try:
                if loop.time() >= next_refresh:
                    await self.refresh()
                    next_refresh = loop.time() + self.refresh_interval
                await self._tick()
                wait, delay = self._wait(), 0.05
            except REDIS_ERRORS as exc:
                log.warning("periodic enqueuer could not reach Redis: %s", exc)
                wait, delay = delay, min(delay * 2, 5.0)
            except Exception:  # a bug must not stop every schedule of the pool for good
                log.exception("periodic enqueuer failed; retrying")
                wait, delay = delay, min(delay * 2, 5.0)
            try:
                async with asyncio.timeout(wait):
                    await self._kick.wait()
            except TimeoutError:
                pass


class PeriodicRegistration:
    """The scheduling methods of :class:`~errands.WorkerPool`."""

    _started: bool
    _periodic: list[PeriodicSchedule]
    _named_schedules: Mapping[str, Any] | None

    def periodically_enqueue(
        self,
        spec: str | timedelta,
        job_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        tz: str = "UTC",
        misfire: str = "skip",
        misfire_grace: float | timedelta = 60.0,
        skip_if_running: bool = False,
        priority: int = 0,
        dedup: Dedup | None = None,
    ) -> PeriodicSchedule:
        """Enqueue ``job_name`` with ``args`` on ``spec``: 6 cron fields (seconds first), 5
        fields, ``@daily``-style macros, ``@every 1h30m``, a timedelta, or ``cron.NAME``.

        ``name`` (default: the job name) identifies the schedule across pools; ``tz`` is the
        zone cron fields are read in; ``misfire`` is ``"skip"`` (runs more than
        ``misfire_grace`` seconds late are dropped) or ``"catch_up"`` (one run for all missed
        fire times); ``skip_if_running`` skips a fire while the previous run is unfinished;
        ``dedup`` enqueues each run with it (a fire whose key is held is skipped).
        """
        if self._started:
            raise RegistrationError("add schedules before the pool starts (or use a Client)")
        named = None
        if isinstance(spec, str) and spec.strip().startswith("cron."):
            named = {**load_named_schedules(), **(self._named_schedules or {})}
        periodic = make_periodic(
            spec,
            job_name,
            args,
            name=name,
            tz=tz,
            misfire=misfire,
            misfire_grace=misfire_grace,
            skip_if_running=skip_if_running,
            priority=priority,
            named=named,
            dedup=dedup,
        )
        if any(p.name == periodic.name for p in self._periodic):
            raise RegistrationError(
                f"schedule {periodic.name!r} is already registered: give a different name="
            )
        self._periodic.append(periodic)
        return periodic

    def every(
        self,
        interval: timedelta | float | str,
        job_name: str,
        args: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> PeriodicSchedule:
        """Every ``interval`` (timedelta, seconds, or ``"5m"``), aligned on the Unix epoch."""
        if isinstance(interval, str):
            interval = timedelta(milliseconds=parse_duration(interval))
        elif not isinstance(interval, timedelta):
            interval = timedelta(seconds=interval)
        return self.periodically_enqueue(interval, job_name, args, **options)

    def daily(
        self,
        job_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        hour: int,
        minute: int = 0,
        **options: Any,
    ) -> PeriodicSchedule:
        """Every day at ``hour:minute`` in the schedule's ``tz`` (default UTC)."""
        _check_range("hour", hour, 23)
        _check_range("minute", minute, 59)
        return self.periodically_enqueue(f"0 {minute} {hour} * * *", job_name, args, **options)

    def hourly(
        self,
        job_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        minute: int = 0,
        **options: Any,
    ) -> PeriodicSchedule:
        """Every hour at ``minute``."""
        _check_range("minute", minute, 59)
        return self.periodically_enqueue(f"0 {minute} * * * *", job_name, args, **options)

    def _init_periodic(self, schedules: Mapping[str, Any] | None) -> None:
        self._periodic = []
        self._named_schedules = schedules


def _check_range(what: str, value: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise RegistrationError(f"{what} must be an int in 0..{high}, got {value!r}")
