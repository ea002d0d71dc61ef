"""Runtime schedules, managed while pools run: the schedule methods of :class:`~errands.Client`.

Running pools re-read the runtime schedules every ``schedule_refresh`` seconds (2 by default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from redis.exceptions import WatchError

from ..checks import flag
from ..clock import Clock
from ..dedup import Dedup
from ..errors import ErrandsError, RegistrationError, ScheduleNotFoundError
from ..serialization import JSONSerializer, Serializer
from ..store.keys import Keys
from ..store.redisclock import real_time
from .listing import ScheduleInfo, schedule_infos
from .registration import load_named_schedules
from .spec import is_named
from .store import PeriodicSchedule, ScheduleStore, make_periodic, ms

__all__ = ["ScheduleAdmin"]

_ADD_TRIES = 10  # transactions of add_schedule aborted by pools registering before it gives up
_RUN_NOW_READS = 5  # reads of a definition replaced meanwhile before run_schedule_now gives up


class ScheduleAdmin:
    """Add, list, enable, disable, delete and run schedules stored in Redis."""

    redis: Any
    keys: Keys
    clock: Clock

    @property
    def _schedule_store(self) -> ScheduleStore:
        store: ScheduleStore | None = self.__dict__.get("_schedule_store_")
        if store is None:
            store = self.__dict__["_schedule_store_"] = ScheduleStore(self.redis, self.keys)
        return store

    async def add_schedule(
        self,
        name: str,
        job_name: str,
        spec: str | timedelta,
        args: Mapping[str, Any] | None = None,
        tz: str = "UTC",
        enabled: bool = True,
        *,
        misfire: str = "skip",
        misfire_grace: float | timedelta = 60.0,
        skip_if_running: bool = False,
        priority: int = 0,
        named: Mapping[str, Any] | None = None,
        dedup: Dedup | None = None,
    ) -> PeriodicSchedule:
        """Add (or replace) the runtime schedule ``name``: running pools start firing it within
        a few seconds. ``cron.NAME`` specs are resolved now, from ``named`` or the cwd's
        ``pyproject.toml``/``errands.toml``. Raises :class:`RegistrationError` for a bad spec."""
        flag("enabled", enabled, error=RegistrationError)  # ("no" would enable it)
        if is_named(spec) and named is None:
            named = load_named_schedules()
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
            source="runtime",
            dedup=dedup,
        )
        now_ms = await self._now_ms()
        for _ in range(_ADD_TRIES):
            with contextlib.suppress(WatchError):  # a pool registered meanwhile: read again
                await self._put_runtime(periodic, enabled, now_ms)
                return periodic
        raise ErrandsError(
            f"schedule {name!r}: pools changed the code registrations {_ADD_TRIES} times while "
            "it was being added (its code definition's live time, or a deploy's definitions): "
            "nothing written; call add_schedule again"
        )

    async def _put_runtime(self, periodic: PeriodicSchedule, enabled: bool, now_ms: int) -> None:
        """Store the runtime ``periodic`` unless a pool registered its name in its code lately
        (a code definition no pool registered lately is dropped: its code is gone). One
        optimistic transaction: a pool registering meanwhile raises WatchError, nothing written
        (checked, then written in 4 round trips, a runtime definition was stored beside a code
        one registered in between, or dropped a code one registered again). The live ZSET,
        which every pool rewrites each refresh, is watched only when the name has a code
        definition: a pool registering a name anew writes the definitions (WATCHing it for
        any name, pools refreshing other schedules aborted every try in a busy deployment)."""
        k, name = self.keys, periodic.name
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(k.code_schedules)
            code = await pipe.hexists(k.code_schedules, name)
            until = None
            if code:  # its live-until time, watched before it is read
                await pipe.watch(k.code_schedules_live)
                until = await pipe.zscore(k.code_schedules_live, name)
            if code and until is not None and until >= now_ms:
                raise RegistrationError(
                    f"schedule {name!r} is defined in a pool's code (a running pool registered "
                    "it lately); pick another name"
                )
            pipe.multi()
            if code:  # no pool registered it lately: its code is gone
                self._schedule_store.stage_drop_code(pipe, name)
            self._schedule_store.stage_runtime(pipe, periodic, enabled)
            await pipe.execute()

    async def schedules(self) -> list[ScheduleInfo]:
        """Every schedule (runtime ones and those registered by pools), with previous and next
        fire time, last job id and its outcome, counters, and for one registered by pools
        whether it is stale (no running pool registers it any more: it does not fire)."""
        return await schedule_infos(self._schedule_store, await self._now_ms())

    async def _now_ms(self) -> int:
        """Now, to compare with the times pools register their code at: the Redis server's
        clock (theirs), unless this Client runs on a clock of its own (a test's)."""
        if not real_time(self.clock):
            return ms(self.clock.now())
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def schedule(self, name: str) -> ScheduleInfo:
        for info in await self.schedules():
            if info.name == name:
                return info
        raise ScheduleNotFoundError(f"no schedule named {name!r}")

    async def enable_schedule(self, name: str) -> None:
        """Fire ``name`` again (one script: a schedule deleted meanwhile is not recreated)."""
        if not await self._schedule_store.set_enabled(name, True):
            raise ScheduleNotFoundError(f"no schedule named {name!r}")

    async def disable_schedule(self, name: str) -> None:
        """Stop firing ``name`` (its fire times pass unrun until it is enabled again): checked
        by the script that fires it, so no run starts after this returns."""
        if not await self._schedule_store.set_enabled(name, False):
            raise ScheduleNotFoundError(f"no schedule named {name!r}")

    async def delete_schedule(self, name: str) -> bool:
        """Forget a schedule and its state; False if there was none. A schedule in the code of
        a running pool is only reset: that pool registers it again within ``schedule_refresh``
        seconds, and it starts afresh from then."""
        return await self._schedule_store.delete(name)

    async def run_schedule_now(self, name: str, serializer: Serializer | None = None) -> str:
        """Enqueue one run of schedule ``name`` at once (its fire times are unaffected);
        returns the job id. It runs the definition registered when it is enqueued: one
        replaced meanwhile is read again."""
        store, status, job_id = self._schedule_store, "", ""
        for _ in range(_RUN_NOW_READS):
            found = await store.definition_text(name)
            if found is None:
                break
            periodic, raw = found
            status, job_id = await store.run_now(
                periodic, serializer or JSONSerializer(), self.clock.now(), fence=raw
            )
            if status != "conflict":  # conflict: replaced since it was read; read it again
                break
        if status == "conflict":
            raise ErrandsError(
                f"schedule {name!r} was replaced {_RUN_NOW_READS} times while it was being run:"
                " nothing enqueued"
            )
        if not job_id:  # deleted since it was read: nothing enqueued, no state recreated
            raise ScheduleNotFoundError(f"no schedule named {name!r}")
        return job_id
