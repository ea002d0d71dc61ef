"""Periodic schedules in Redis: their definitions, their state, and the one script that fires
them (``lua/schedule_fire.lua``). Used by the periodic enqueuer of every pool and by the Client.

State of a schedule (HASH ``periodic:<name>``): ``last`` (the latest slot handled, ms; the
exactly-once compare-and-set), ``next`` and ``prev`` (fire times, ms), ``job`` (id of the last
run), ``fired_at``, ``by`` (pool), counters ``runs``, ``skipped``, ``misfires``, ``disabled``, and
``answer`` (the latest answer of the script, for a re-sent call).

A state whose ``last`` is no fire time in ms or whose counters are no integers (:func:`stored_int`:
written by hand, a bad restore) is corrupt: no pool fires the schedule until it is repaired or
deleted (docs/periodic.md, 'A corrupt state').
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

import orjson
from redis.asyncio import Redis

from ..checks import flag, seconds
from ..dedup import Dedup
from ..dedup.enqueue import with_dedup
from ..errors import RegistrationError
from ..handlers import check_priority
from ..job import Job
from ..serialization import SerializationError, Serializer, dumps_json
from ..store.keys import Keys
from ..store.scripts import lua_source
from ..store.stored import stored_number, stored_text
from .spec import Schedule, check_names, parse_schedule

__all__ = ["MISFIRE_POLICIES", "PeriodicSchedule", "ScheduleStore", "ms", "text"]

MISFIRE_POLICIES = ("skip", "catch_up")

# the latest fire time a state may hold: the last ms of the year 9999, where Python's datetime
# ends (no later fire time can be computed); schedule_fire.lua's MAX_SLOT_MS
MAX_SLOT_MS = 253_402_300_799_999


def ms(seconds: float) -> int:
    """Epoch seconds -> integer ms, rounded (slots are exact: 1.001 s must not become 1000 ms)."""
    return round(seconds * 1000)


@dataclass(frozen=True)
class PeriodicSchedule:
    """A job enqueued on a schedule. ``name`` identifies it across pools and restarts."""

    name: str
    job_name: str
    schedule: Schedule
    args: dict[str, Any] = field(default_factory=dict)
    misfire: str = "skip"
    misfire_grace: float = 60.0
    skip_if_running: bool = False
    priority: int = 0
    source: str = "code"
    dedup: Dedup | None = None  # each run enqueued with it (a fire whose key is held: skipped)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                **({"dedup": self.dedup.to_dict()} if self.dedup else {}),
                "job": self.job_name,
                "spec": self.schedule.text,
                "tz": self.schedule.tz,
                "args": self.args,
                "misfire": self.misfire,
                "misfire_grace": self.misfire_grace,
                "skip_if_running": self.skip_if_running,
                "priority": self.priority,
            }
        )

    @classmethod
    def from_json(cls, name: str, data: bytes | str, source: str) -> PeriodicSchedule:
        d = orjson.loads(data)
        return make_periodic(
            d["spec"],
            d["job"],
            d.get("args"),
            name=name,
            tz=d.get("tz", "UTC"),
            misfire=d.get("misfire", "skip"),
            misfire_grace=d.get("misfire_grace", 60.0),
            skip_if_running=d.get("skip_if_running", False),
            priority=d.get("priority", 0),
            source=source,
            dedup=Dedup.from_dict(d["dedup"]) if d.get("dedup") else None,
        )


def make_periodic(
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
    named: Mapping[str, Any] | None = None,
    source: str = "code",
    dedup: Dedup | None = None,
) -> PeriodicSchedule:
    """Validate everything about a schedule; raises :class:`RegistrationError` naming the fault."""
    check_names(job_name, name or job_name)
    try:
        check_priority(priority)
    except ValueError as exc:
        raise RegistrationError(str(exc)) from None
    if misfire not in MISFIRE_POLICIES:
        raise RegistrationError(f"misfire must be one of {MISFIRE_POLICIES}, got {misfire!r}")
    # (no upper bound: only Python compares it; one stored by an older errands stays readable)
    grace = seconds("misfire_grace", misfire_grace, most=math.inf, error=RegistrationError)
    if grace < 1:
        raise RegistrationError(f"misfire_grace must be at least 1 second, got {misfire_grace!r}")
    flag("skip_if_running", skip_if_running, error=RegistrationError)
    if dedup is not None and dedup.mode not in ("s", "f", "t"):
        raise RegistrationError("a schedule's dedup holds until started or finished, or throttles")
    if args is not None and not isinstance(args, Mapping):
        raise RegistrationError(f"args of schedule {name or job_name!r} must be a dict")
    try:
        orjson.dumps(dict(args or {}))  # (to_json's way: str keys)
        # as the Enqueuer checks them: NaN or Infinity would be stored as null
        dumps_json(dict(args or {}), f"args of schedule {name or job_name!r}")
    except TypeError as exc:
        raise RegistrationError(f"args of schedule {name or job_name!r}: {exc}") from None
    except SerializationError as exc:
        raise RegistrationError(str(exc)) from None
    return PeriodicSchedule(
        name or job_name,
        job_name,
        parse_schedule(spec, tz=tz, named=named),
        dict(args or {}),
        misfire,
        grace,
        skip_if_running,
        priority,
        source,
        dedup,
    )


class ScheduleStore:
    """Redis side of periodic schedules for one namespace."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._fire = redis.register_script(lua_source("schedule_fire"))
        self._enable = redis.register_script(lua_source("schedule_enable"))
        self._register = redis.register_script(lua_source("schedule_register"))

    async def fire(
        self,
        periodic: PeriodicSchedule,
        mode: str,
        *,
        slot_ms: int,
        next_ms: int,
        now_ms: int,
        envelope: bytes = b"",
        job_id: str = "",
        pool_id: str = "",
        ahead_ms: int | None = None,
        fence: bytes | str | None = None,
    ) -> tuple[str, str]:
        """Run ``lua/schedule_fire.lua``; returns (status, job id). A slot later than the
        Redis clock plus ``ahead_ms`` is refused (status ahead); None: no check. ``fence``:
        the definition as read from Redis; another one registered under the name is left
        alone (status conflict). Without it, a code schedule fires only as ``periodic``
        defines it, a runtime one or a manual run whatever is registered."""
        k = self.keys
        keys = [k.schedule_state(periodic.name), k.jobs, k.priorities, k.seq, k.names, k.idle]
        keys += (k.listening, k.queue(periodic.job_name), k.dead, k.cancelled)
        keys.append(k.schedules if periodic.source == "runtime" else k.code_schedules)
        d = periodic.dedup
        dedup_key = d.scoped(periodic.job_name) if d else "-"
        keys += (k.dedup, k.dedup_of_job, k.dedup_window(dedup_key))
        keys += (k.ended, k.done(job_id or "-"), k.idle_for(periodic.job_name))
        if mode == "manual" and job_id:  # its answer, kept for a re-send (no other call's)
            keys.append(k.reply(job_id))
        args: list[str | bytes | int] = [mode, slot_ms, next_ms, now_ms]
        args.append("1" if periodic.skip_if_running else "0")
        args += (periodic.job_name, job_id, envelope, periodic.priority)
        args += (k.wake_channel, k.events_channel, pool_id, periodic.name)
        args += (d.mode if d else "", dedup_key, d.window_ms if d else 0)
        # a code schedule fires only as this pool defines it (another pool may define the name
        # differently); a manual run takes the definition registered
        mine = periodic.source == "code" and mode != "manual"
        if fence is None:
            fence = periodic.to_json() if mine else ""
        args += (fence, "" if ahead_ms is None else ahead_ms)
        status, job = await self._fire(keys=keys, args=args)
        return text(status), text(job)

    async def read_states(self, names: Sequence[str]) -> list[State]:
        """Each name's :class:`State`: its last slot (None when the schedule has no state
        yet), whether it is disabled, and what is corrupt in a state whose fields
        schedule_fire.lua reads as numbers are not (:func:`corrupt_fields`): the script would
        refuse it."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(self.keys.schedule_state(name), [*FIRED_FIELDS, "disabled"])
            rows = await pipe.execute()
        return [_state(row[:-1], row[-1] in (b"1", "1")) for row in rows]

    async def runtime_definitions(self) -> dict[str, bytes | str]:
        raw = await self.redis.hgetall(self.keys.schedules)
        return {text(k): v for k, v in raw.items()}

    async def code_definitions(self) -> dict[str, bytes | str]:
        raw = await self.redis.hgetall(self.keys.code_schedules)
        return {text(k): v for k, v in raw.items()}

    async def refresh(
        self, code: Iterable[PeriodicSchedule], now_ms: int, live_ms: int
    ) -> tuple[int, dict[str, bytes | str], dict[str, bytes | str]]:
        """(Re-)register the schedules of a pool's code (lua/schedule_register.lua, each live
        for ``live_ms``); returns how many were newly registered (new, changed, or deleted by
        a Client), the runtime definitions, and the names another pool's code defines
        differently (with the definition registered)."""
        args: list[str | bytes | int] = [now_ms, live_ms]
        for s in code:
            args += (s.name, s.to_json())
        keys = [self.keys.code_schedules, self.keys.code_schedules_live]
        added, *conflicting = await self._register(keys=keys, args=args)
        conflicts = {
            text(conflicting[i]): conflicting[i + 1] for i in range(0, len(conflicting), 2)
        }
        return int(added), await self.runtime_definitions(), conflicts

    async def drop_code(self, name: str) -> None:
        """Forget the code definition of ``name`` (no pool registered it lately)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self.stage_drop_code(pipe, name)
            await pipe.execute()

    def stage_drop_code(self, pipe: Any, name: str) -> None:
        """``drop_code``'s writes, queued on a transaction's pipeline."""
        pipe.hdel(self.keys.code_schedules, name)
        pipe.zrem(self.keys.code_schedules_live, name)

    def stage_runtime(self, pipe: Any, periodic: PeriodicSchedule, enabled: bool) -> None:
        """The runtime definition ``periodic`` stored, enabled or not, queued on a
        transaction's pipeline (Client.add_schedule's, admin.py)."""
        pipe.hset(self.keys.schedules, periodic.name, periodic.to_json())
        if enabled:
            pipe.hdel(self.keys.schedule_state(periodic.name), "disabled")
        else:
            pipe.hset(self.keys.schedule_state(periodic.name), "disabled", "1")

    async def set_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable ``name``; False (nothing written) when it is not defined."""
        k = self.keys
        keys = [k.schedule_state(name), k.schedules, k.code_schedules]
        return bool(await self._enable(keys=keys, args=[name, "1" if enabled else "0"]))

    async def delete(self, name: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.schedules, name)
            pipe.hdel(self.keys.code_schedules, name)
            pipe.delete(self.keys.schedule_state(name))
            pipe.zrem(self.keys.code_schedules_live, name)
            runtime, code, _, _ = await pipe.execute()
        return bool(runtime or code)

    async def definition(self, name: str) -> PeriodicSchedule | None:
        """The schedule called ``name`` (a runtime one first, then one registered in code)."""
        found = await self.definition_text(name)
        return None if found is None else found[0]

    async def definition_text(self, name: str) -> tuple[PeriodicSchedule, bytes | str] | None:
        """The schedule called ``name`` and its definition as stored (the fence of a run)."""
        for source, key in (("runtime", self.keys.schedules), ("code", self.keys.code_schedules)):
            raw = await self.redis.hget(key, name)
            if raw is not None:
                return PeriodicSchedule.from_json(name, raw, source), raw
        return None

    async def run_now(
        self,
        periodic: PeriodicSchedule,
        serializer: Serializer,
        now: float,
        pool_id: str = "",
        fence: bytes | str | None = None,
    ) -> tuple[str, str]:
        """Enqueue one run of ``periodic`` at once; returns (status, job id): job id "" when
        the schedule is no longer defined (gone) or no longer defined as ``fence`` (conflict):
        nothing enqueued."""
        job = build_job(periodic, now, fire_time=now, manual=True)
        return await self.fire(
            periodic,
            "manual",
            slot_ms=0,
            next_ms=0,
            now_ms=ms(now),
            envelope=serializer.dumps(job.envelope()),
            job_id=job.id,
            pool_id=pool_id,
            fence=fence,
        )


def build_job(periodic: PeriodicSchedule, now: float, *, fire_time: float, **meta: Any) -> Job:
    """The job of one run; ``job.meta`` names the schedule and the fire time it stands for (its
    envelope records the schedule's Dedup: dedup/enqueue.py ``with_dedup``)."""
    job = Job(
        periodic.job_name,
        dict(periodic.args),
        id=uuid.uuid4().hex,
        enqueued_at=now,
        priority=periodic.priority,
        meta={"schedule": periodic.name, "fire_time": fire_time, **meta},
    )
    return with_dedup(job, periodic.dedup) if periodic.dedup is not None else job


def stored_int(value: bytes | str | None, lo: int, hi: int) -> int | None:
    """``value`` as read from Redis as an int, when it spells an integer as Redis does
    (:func:`~errands.store.stored.stored_number`: no '1.5e3', '007', ' 5'; as schedule_fire.lua
    checks it) within ``lo..hi``; else None."""
    number = stored_number(value)
    return number if number is not None and lo <= number <= hi else None


def shown(value: str) -> str:
    """A corrupt value as logged and listed: its first 40 characters (it may be of any size),
    with an ellipsis when there are more."""
    return value if len(value) <= 40 else value[:40] + "…"


# lib/types.lua is_counter: within +/-2^53 as tonumber() reads it, which rounds 2^53+1 down to
# 2^53 (and every larger value to 2^53+2 or more): the scripts take +/-(2^53+1) as a counter, so
# this does too (one verdict on both sides)
_COUNTER = 2**53 + 1
# the fields of a state that schedule_fire.lua reads as numbers: fire times (ms) and counters
FIRED_FIELDS = {"last": (0, MAX_SLOT_MS)} | dict.fromkeys(
    ("runs", "skipped", "misfires"), (-_COUNTER, _COUNTER)
)
# and those schedules() lists as times too (``prev`` of a manual run is its time)
LISTED_FIELDS = FIRED_FIELDS | dict.fromkeys(("prev", "next"), (0, MAX_SLOT_MS))


def corrupt_fields(
    state: Mapping[str, bytes | str | None], fields: Mapping[str, tuple[int, int]]
) -> dict[str, str]:
    """The ``fields`` (name -> lo, hi) of a state that are there and no integer (:func:`stored_int`)
    in lo..hi, with their text as stored: a corrupt state when any."""
    bad: dict[str, str] = {}
    for name, (lo, hi) in fields.items():
        value = state.get(name)
        if value is not None and stored_int(value, lo, hi) is None:
            bad[name] = stored_text(value)
    return bad


class State(NamedTuple):
    """A schedule's state as a tick reads it. ``corrupt`` (the fields and their text) when a
    field schedule_fire.lua reads as a number is none; ``last`` is None then, and when the
    schedule has no state yet."""

    last: int | None
    disabled: bool
    corrupt: str | None = None


def _state(row: Sequence[bytes | str | None], disabled: bool) -> State:
    """A state from an HMGET of FIRED_FIELDS."""
    bad = corrupt_fields(dict(zip(FIRED_FIELDS, row, strict=True)), FIRED_FIELDS)
    if bad:
        problem = ", ".join(f"{name} = {shown(value)!r}" for name, value in bad.items())
        return State(None, disabled, problem)
    return State(None if row[0] is None else int(row[0]), disabled)


def text(value: bytes | str) -> str:
    """A value read from Redis as text (the client may decode responses or not)."""
    return value.decode() if isinstance(value, bytes) else str(value)
