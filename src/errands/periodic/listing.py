"""What ``Client.schedules()`` lists: every schedule (runtime ones and those registered by pools)
with its state, the outcome of its last run, and whether a running pool still registers it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import RegistrationError
from ..store.stored import stored_text
from .store import (
    FIRED_FIELDS,
    LISTED_FIELDS,
    MAX_SLOT_MS,
    PeriodicSchedule,
    ScheduleStore,
    corrupt_fields,
    shown,
    stored_int,
    text,
)

__all__ = ["ScheduleInfo", "schedule_infos"]


@dataclass(frozen=True)
class ScheduleInfo:
    """What is known about one schedule (``Client.schedules()``). Times are epoch seconds."""

    name: str
    job_name: str
    spec: str
    tz: str
    args: dict[str, Any]
    source: str  # "code" (registered by a pool) or "runtime" (added through a Client)
    enabled: bool
    misfire: str
    skip_if_running: bool
    prev_fire: float | None
    next_fire: float | None
    last_job_id: str | None
    last_outcome: str | None  # queued running retrying finished dead cancelled (None: no run)
    runs: int
    skipped: int
    misfires: int
    # a code schedule no running pool registers any more (a deploy removed it from the code):
    # no pool fires it; delete_schedule removes it for good. False for a runtime schedule.
    stale: bool = False
    # a code schedule: until when its latest registration counts as live (its pools register
    # it again every schedule_refresh); stale past it. None: a runtime schedule.
    registered_until: float | None = None
    # a state with a `last`, `runs`, `skipped` or `misfires` that is no integer (written by
    # hand, a bad restore): no pool fires it until it is repaired or deleted. ``raw`` holds the
    # bad fields as stored (their first 40 characters; their values here: None or 0), with a
    # bad `prev` or `next`, which alone is not corrupt (pools do not read them: it fires, and
    # its next fire rewrites them)
    corrupt: bool = False
    raw: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def schedule_infos(store: ScheduleStore, now_ms: int) -> list[ScheduleInfo]:
    """Every known schedule with its state and the outcome of its last run; a code schedule
    whose registration lapsed before ``now_ms`` is stale."""
    defs: dict[str, PeriodicSchedule] = {}
    for source, raw in (
        ("code", await store.code_definitions()),
        ("runtime", await store.runtime_definitions()),
    ):
        for name, data in raw.items():
            try:
                defs[name] = PeriodicSchedule.from_json(name, data, source)
            except (RegistrationError, ValueError, KeyError, TypeError):
                continue
    names = sorted(defs)
    k = store.keys
    async with store.redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(k.schedule_state(name))
        pipe.zrange(k.code_schedules_live, 0, -1, withscores=True)
        *rows, live = await pipe.execute()
    # every field as text, a state written by hand may hold any bytes
    states = [{stored_text(f): stored_text(v) for f, v in s.items()} for s in rows]
    until = {text(name): score for name, score in live}
    outcomes = await _outcomes(
        store, [(defs[n].job_name, s.get("job")) for n, s in zip(names, states, strict=True)]
    )
    return [
        _info(defs[n], s, o, until.get(n), now_ms)
        for n, s, o in zip(names, states, outcomes, strict=True)
    ]


async def _outcomes(
    store: ScheduleStore, runs: Sequence[tuple[str, str | None]]
) -> list[str | None]:
    k = store.keys
    async with store.redis.pipeline(transaction=False) as pipe:
        for job_name, job_id in runs:
            if job_id:
                pipe.hexists(k.jobs, job_id)
                pipe.zscore(k.dead, job_id)
                pipe.zscore(k.cancelled, job_id)
                pipe.zscore(k.queue(job_name), job_id)
                pipe.zscore(k.retry(job_name), job_id)
        raw = await pipe.execute()
    out: list[str | None] = []
    i = 0
    for _job_name, job_id in runs:
        if not job_id:
            out.append(None)
            continue
        stored, dead, cancelled, queued, retrying = raw[i : i + 5]
        i += 5
        out.append(_outcome(bool(stored), dead, cancelled, queued, retrying))
    return out


def _outcome(stored: bool, dead: Any, cancelled: Any, queued: Any, retrying: Any) -> str:
    if dead is not None:
        return "dead"
    if cancelled is not None:
        return "cancelled"
    if not stored:
        return "finished"
    if queued is not None:
        return "queued"
    return "retrying" if retrying is not None else "running"


def _info(
    p: PeriodicSchedule,
    state: Mapping[str, str],
    outcome: str | None,
    live_until: float | None,
    now_ms: int,
) -> ScheduleInfo:
    bad = corrupt_fields(state, LISTED_FIELDS)

    def seconds(key: str) -> float | None:
        value = None if key in bad else stored_int(state.get(key), 0, MAX_SLOT_MS)
        return None if value is None else value / 1000

    def count(key: str) -> int:
        return 0 if key in bad else int(state.get(key, 0))

    code = p.source == "code"
    return ScheduleInfo(
        name=p.name,
        job_name=p.job_name,
        spec=p.schedule.spec,
        tz=p.schedule.tz,
        args=p.args,
        source=p.source,
        enabled=state.get("disabled") != "1",
        misfire=p.misfire,
        skip_if_running=p.skip_if_running,
        prev_fire=seconds("prev"),
        next_fire=seconds("next"),
        last_job_id=state.get("job") or None,
        last_outcome=outcome,
        runs=count("runs"),
        skipped=count("skipped"),
        misfires=count("misfires"),
        stale=code and (live_until is None or live_until < now_ms),
        # whole ms: the half millisecond of a registration that wrote is for re-sends only
        registered_until=int(live_until) / 1000 if code and live_until is not None else None,
        corrupt=any(f in FIRED_FIELDS for f in bad),
        raw={f: shown(v) for f, v in bad.items()} or None,
    )
