"""Limits as the Client sees them: the limits of each job type (from the pools' code, or set at
run time), and why a queued job waits (a rate, a busy partition, max_concurrency, a pause).
Read without a script: a hint, true at the moment it was read."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.exceptions import NoPermissionError, ResponseError

from ..errors import UnknownJobError
from ..limits import Concurrency, Limit, Rate, compile_limits, limit_from_dict, limit_to_dict
from ..store.keyrepair import held_key, named_read, repair_hint
from ..store.keys import Keys
from ..store.served import unless_unread, unserved
from ..store.stored import stored_count, stored_text
from .inputs import count

__all__ = [
    "LimitsView",
    "PartitionInfo",
    "Partitions",
    "explain_wait",
    "read_limits",
    "read_partitions",
    "waiting_reason",
    "write_limits",
]

log = logging.getLogger("errands.admin")

W = 13  # digits of a start time in a rate log (lua/lib/limits.lua)
C = 10  # digits of a count of starts in one


@dataclass(frozen=True)
class LimitsView:
    """The limits of one job type: ``code`` as the pools registered them, ``runtime`` as set
    by ``Client.set_limits`` (None: none set), ``effective`` the ones that apply."""

    name: str
    code: tuple[Limit, ...]
    runtime: tuple[Limit, ...] | None

    @property
    def effective(self) -> tuple[Limit, ...]:
        return self.code if self.runtime is None else self.runtime


def _decode(raw: Any) -> tuple[Limit, ...] | None:
    if raw is None:
        return None
    try:
        return tuple(limit_from_dict(d) for d in orjson.loads(raw))
    except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
        return ()


async def read_limits(redis: Any, keys: Keys) -> dict[str, LimitsView]:
    """Every job type with limits, in code or at run time. Either hash of another type: a
    ResponseError naming it, with its repair (named_read)."""
    unread = "no limits read"
    code = await named_read(redis, keys, keys.code_limits, redis.hgetall(keys.code_limits), unread)
    runtime = await named_read(
        redis, keys, keys.runtime_limits, redis.hgetall(keys.runtime_limits), unread
    )
    names = {_text(n) for n in (*code, *runtime)}
    return {
        name: LimitsView(
            name,
            _decode(code.get(name.encode())) or (),
            _decode(runtime.get(name.encode())),
        )
        for name in sorted(names)
    }


async def write_limits(
    redis: Any, keys: Keys, name: str, limits: Sequence[Limit] | None, strict: bool | None
) -> None:
    """``Client.set_limits``: check ``limits`` and store them (None: delete them). Limits of a
    name no running pool serves (a typo, or pools not started yet) are stored with a warning;
    ``strict=True`` raises ``UnknownJobError`` instead and stores nothing; None looks not."""
    if limits is None:
        await redis.hdel(keys.runtime_limits, name)
        return
    if not isinstance(limits, list | tuple):
        raise TypeError(f"set_limits takes a list of limits or None, got {limits!r}")
    compile_limits(limits)  # checks them
    stored = [limit_to_dict(limit) for limit in limits]
    if [limit_from_dict(d) for d in stored] != list(limits):  # what every pool reads back
        raise ValueError(f"limits {limits!r} do not survive being stored")
    problem = None if strict is None else await _unserved(redis, keys, name, strict)
    if problem is not None and strict:
        raise UnknownJobError(problem)
    await redis.hset(keys.runtime_limits, name, orjson.dumps(stored))
    if problem is not None:
        log.warning(
            "%s; its limits apply once a pool serves it; set_limits(strict=True) raises instead",
            problem,
        )


async def _unserved(redis: Any, keys: Keys, name: str, strict: bool) -> str | None:
    """``unserved`` for write_limits. While the pools' registry holds another type, its error
    naming the key and its repair: raised when ``strict``, else logged as a warning and None
    (the lookup only feeds a warning: the limits are stored)."""
    read = unserved(redis, keys, name, repair_hint)
    return await read if strict else await unless_unread(read, keys, log)


def _text(raw: Any) -> str:
    return stored_text(raw) if isinstance(raw, bytes) else str(raw)


def _clock(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-5]


def _starts(raw: str) -> list[tuple[int, int]]:
    """A rate log's (start time ms, starts then), in time order (lua/lib/limits.lua): records
    of a time and the starts counted up to it after '#' and the count before them, or (an
    older log) one time per start."""
    if not raw.startswith("#"):
        return [(int(raw[i : i + W]), 1) for i in range(0, len(raw) - W + 1, W)]
    out, before = [], int(raw[1 : 1 + C])
    for i in range(1 + C, len(raw) - W - C + 1, W + C):
        cum = int(raw[i + W : i + W + C])
        out.append((int(raw[i : i + W]), cum - before))
        before = cum
    return out


def _rate_until(log: Any, rate: Rate, now: int) -> float | None:
    """When a full rate log lets a start again (None: it lets one now), as lim_room does."""
    if log is None:
        return None
    try:
        starts = _starts(_text(log))
    except ValueError:  # a log no script wrote: read as empty (this is a hint)
        return None
    live = [(t, n) for t, n in starts if t >= now - rate.per_ms]
    over = sum(n for _t, n in live) - rate.limit + 1  # starts that must leave the window
    if over <= 0:
        return None
    for t, n in live:
        over -= n
        if over <= 0:
            return t + rate.per_ms + 1
    return None  # (not reached)


async def explain_wait(redis: Any, keys: Keys, name: str, partition: str | None) -> str | None:
    """``Client.job``'s ``waiting_for``: waiting_reason under the limits that apply to ``name``.
    A key it reads holding another type (a hand edit, or a bug) does not fail the job's read (nor
    the admin calls that start with it): the reason is ``"unknown: <key> holds another type: ...
    (<key> is a <type>; repair: ...)"`` and the refusal is logged as a WARNING. (An admin call's
    script then checks the keys it touches: lib/types.lua.)"""
    try:
        views = await read_limits(redis, keys)
        limits = views[name].effective if name in views else ()
        return await waiting_reason(redis, keys, name, partition, limits)
    except ResponseError as exc:
        text = str(exc)
        if not text.startswith("WRONGTYPE ") or held_key(keys, text) is None:
            raise
        log.warning("%s", exc)
        return "unknown: " + text.removeprefix("WRONGTYPE ")


async def _read(redis: Any, keys: Keys, command: str, key: str, *args: Any) -> Any:
    """``command`` of ``key`` for waiting_reason: another type named (named_read)."""
    read = getattr(redis, command)(key, *args)
    return await named_read(redis, keys, key, read, "no waiting reason read")


async def waiting_reason(
    redis: Any, keys: Keys, name: str, partition: str | None, limits: tuple[Limit, ...]
) -> str | None:
    """Why a queued job of ``name`` (in ``partition``) waits, or None when nothing holds it
    (its turn comes). A key read of another type: a ResponseError naming it (named_read)."""
    if await _read(redis, keys, "sismember", keys.paused, name):
        return "paused"
    secs, micros = await redis.time()
    now = int(secs) * 1000 + int(micros) // 1000
    cap = max(0, stored_count(await _read(redis, keys, "hget", keys.limits, name)))  # (corrupt: 0)
    # the lowest type-wide concurrency (as compile_limits, which refuses more than 16 rate
    # windows: limits stored by an older errands may have more)
    concs = [lim.limit for lim in limits if isinstance(lim, Concurrency) and not lim.per_partition]
    cap = min([cap, *concs]) if cap else min(concs, default=0)
    running = stored_count(await _read(redis, keys, "hget", keys.running, name))
    if cap and running >= cap:
        return f"max_concurrency reached ({running} running)"
    for rate in (r for r in limits if isinstance(r, Rate) and not r.per_partition):
        raw = await _read(redis, keys, "hget", keys.rate_log(name), str(rate.per_ms))
        until = _rate_until(raw, rate, now)
        if until is not None:
            return f"rate limited until {_clock(until)} UTC ({rate.limit} per {rate.per})"
    if partition is None:
        return None
    waits = await _read(redis, keys, "zscore", keys.partitions_waiting(name), partition)
    if waits is not None and waits > now:
        return f"partition {partition!r} rate limited until {_clock(waits)} UTC"
    busy = stored_count(await _read(redis, keys, "hget", keys.partitions_running(name), partition))
    caps = [c.limit for c in limits if isinstance(c, Concurrency) and c.per_partition]
    if caps and busy >= min(caps):
        return f"partition {partition!r} busy ({busy} running)"
    return None


@dataclass(frozen=True)
class PartitionInfo:
    """One partition of a job type: its ready jobs, its running ones, and its state: ``ready``
    (its turn comes), ``rate limited`` (``until``, seconds since the epoch) or ``busy`` (its
    concurrency is full)."""

    name: str
    queued: int
    running: int
    state: str
    until: float | None = None


@dataclass(frozen=True)
class Partitions:
    """The partitions of a job type with work: counts by state, and the first ``limit`` of
    them (the waiting ones in turn order, then the rate-limited, then the busy)."""

    ready: int
    waiting: int
    running: int
    items: list[PartitionInfo]


async def read_partitions(redis: Any, keys: Keys, name: str, limit: int = 50) -> Partitions:
    """A key of the partitions of another type: a ResponseError naming it (named_read)."""
    limit = count("limit", limit)  # (0 or -1: a range to the end; 2.5: a Redis error)
    pready, pwait, prun = (
        keys.partitions_ready(name),
        keys.partitions_waiting(name),
        keys.partitions_running(name),
    )
    unread = "no partitions read"
    ready = await named_read(redis, keys, pready, redis.zrange(pready, 0, limit - 1), unread)
    waits = redis.zrange(pwait, 0, limit - 1, withscores=True)
    waiting = await named_read(redis, keys, pwait, waits, unread)
    scan = redis.hscan(prun, 0, count=limit)
    _cursor, fields = await named_read(redis, keys, prun, scan, unread)
    ready = [_text(p) for p in ready]
    running = {_text(p): stored_count(v) for p, v in fields.items()}
    order = ready + [_text(p) for p, _ in waiting]
    order += [p for p in running if p not in order]
    order = order[:limit]
    (n_ready, n_waiting, n_running), counts = await _backlogs(redis, keys, name, order)
    until = {_text(p): s / 1000 for p, s in waiting}
    items = []
    for p, queued in zip(order, counts, strict=True):
        state = "ready" if p in ready else "rate limited" if p in until else "busy"
        items.append(PartitionInfo(p, int(queued), running.get(p, 0), state, until.get(p)))
    return Partitions(n_ready, n_waiting, n_running, items)


CHECKED = 200  # index entries of a partition checked against its queue (_backlogs)
_OFFSET = 2**52  # lib/limits.lua's LIM_OFFSET: the queue scores in the index, made non-negative


async def _backlogs(
    redis: Any, keys: Keys, name: str, order: list[str]
) -> tuple[tuple[int, int, int], list[int]]:
    """The partitions of ``name`` ready, waiting and running (their counts), and the jobs of
    each partition of ``order`` waiting on the queue of ``name``. The partition index kept an
    entry ("<partition>\\0<score>\\0<id>") of a job that left the queue (an older errands, on a
    cancel, delete or destroy; a priority change left one at the old score) until a fetch
    reached it: the first ``CHECKED`` entries of each partition count only when their job is on
    the queue at that score, the one a fetch looks for (lib/limserve.lua); any beyond count as they
    are. A server that refuses ZMSCORE (Redis < 6.2, an ACL rule without it) gets every entry
    counted as it is, as before it was checked; a queue key of another type is an error."""
    pq = keys.partition_queue(name)
    async with redis.pipeline(transaction=True) as pipe:  # (one instant: live <= total)
        pipe.zcard(keys.partitions_ready(name))
        pipe.zcard(keys.partitions_waiting(name))
        pipe.hlen(keys.partitions_running(name))
        for p in order:
            pipe.zlexcount(pq, f"[{p}\0", f"({p}\1")
            pipe.zrangebylex(pq, f"[{p}\0", f"({p}\1", start=0, num=CHECKED)
        n_ready, n_waiting, n_running, *replies = await pipe.execute()
    sizes = (int(n_ready), int(n_waiting), int(n_running))
    totals = [int(n) for n in replies[0::2]]
    entries: list[list[tuple[bytes, int]]] = []
    for i, (p, raw) in enumerate(zip(order, replies[1::2], strict=True)):
        skip = len(p.encode()) + 1  # (the partition and its NUL; then 16 digits, NUL, the id)
        entries.append([e for e in (_index_entry(e, skip) for e in raw) if e is not None])
        totals[i] -= len(raw) - len(entries[i])  # (an entry no script wrote: not counted)
    async with redis.pipeline(transaction=False) as pipe:
        for found in entries:
            if found:
                pipe.zmscore(keys.queue(name), [job_id for job_id, _ in found])
        looked = await pipe.execute(raise_on_error=False)
    if _zmscore_refused(looked, keys.queue(name)):
        return sizes, totals
    scores = iter(looked)
    counts = []
    for total, found in zip(totals, entries, strict=True):
        on_queue = next(scores) if found else []
        live = sum(q == score for q, (_, score) in zip(on_queue, found, strict=True))
        counts.append(live + total - len(found))
    return sizes, counts


def _index_entry(entry: bytes, skip: int) -> tuple[bytes, int] | None:
    """(job id, queue score) of a partition index entry, None for one no script wrote."""
    digits = entry[skip : skip + 16]
    if len(digits) != 16 or not digits.isdigit() or entry[skip + 16 : skip + 17] != b"\0":
        return None
    return entry[skip + 17 :], int(digits) - _OFFSET


def _zmscore_refused(replies: list[Any], queue: str) -> bool:
    """Whether the server refused ZMSCORE (an ACL rule without it: NOPERM; Redis < 6.2 or a
    renamed command: unknown command). Any other error reply is raised: a queue key of another
    type as the scripts report one, naming it (lib/types.lua); others as Redis gave them. (The
    replies, not the error a pipeline raises: that one quotes the job ids.)"""
    error = next((r for r in replies if isinstance(r, ResponseError)), None)
    if error is None:
        return False
    if isinstance(error, NoPermissionError):
        return True
    text = str(error).removeprefix("ERR ")
    if text.lower().startswith("unknown command"):
        return True
    if text.startswith("WRONGTYPE"):
        raise ResponseError(f"WRONGTYPE {queue} holds another type: no backlog read") from error
    raise error
