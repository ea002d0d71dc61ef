"""The attempt history as the Client reads it: pages, counts, attempts per minute.

The history of each job name (``hist:<name>``) is the index; the listing of every name merges
them (versions before issue 15 also kept a global index, ``hist``: its entries are in the
histories of their names too, and the trim drains it)."""

from __future__ import annotations

from typing import Any

from ..store.keys import Keys, check_job_name
from ..store.stored import stored_text
from .inputs import page_number, reading
from .jobinfo import HistoryEntry, Page, history_from_record
from .paging import PER_PAGE, page_entries
from .records import record_of

__all__ = ["CHUNK", "PER_PAGE", "history_count", "history_page", "throughput"]

CHUNK = 10_000  # ZCOUNTs a pipeline of throughput()


def _text(value: bytes | str) -> str:
    return stored_text(value)


async def _indexes(redis: Any, keys: Keys, job_name: str | None) -> list[str]:
    if job_name is not None:  # ("" is an invalid name, not "every name")
        return [keys.history_of(check_job_name(job_name))]
    return [keys.history_of(_text(n)) for n in sorted(await redis.smembers(keys.names))]


async def history_page(
    redis: Any, keys: Keys, page: int, job_name: str | None
) -> Page[HistoryEntry]:
    """Page ``page`` (from 1) of the attempts, of one job name or of all, newest first (the
    work of a page of all is bounded at any depth: see :mod:`.paging`)."""
    page = page_number(page)
    start = (reading(page) - 1) * PER_PAGE
    indexes = await _indexes(redis, keys, job_name)
    pairs, total = await page_entries(redis, indexes, start, newest_first=True)
    members = [_text(m) for m, _s in pairs]
    raws = await redis.hmget(keys.history_data, members) if members else []
    records = (record_of(r, m.rsplit(":", 1)[0]) for m, r in zip(members, raws, strict=True))
    items = [e for e in (history_from_record(r) for r in records) if e]
    return Page(items, total, page, PER_PAGE)


async def history_count(redis: Any, keys: Keys, job_name: str | None) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for key in await _indexes(redis, keys, job_name):
            pipe.zcard(key)
        return sum(await pipe.execute())


async def throughput(
    redis: Any, keys: Keys, end: int, minutes: int
) -> list[tuple[float, int, int]]:
    """(minute start, attempts that ended, jobs that died) for each of the ``minutes`` minutes
    before ``end`` (ms), oldest first. A set with nothing in the whole span (one ZCOUNT each) is
    not asked minute by minute; the others are, ``CHUNK`` ZCOUNTs a pipeline (a span of 100,000
    minutes over many names is not one pipeline of millions of commands)."""
    starts = [end - 60_000 * (minutes - i) for i in range(minutes)]
    sets = [keys.dead, *await _indexes(redis, keys, None)]  # (the dead set first)
    async with redis.pipeline(transaction=False) as pipe:
        for key in sets:
            pipe.zcount(key, starts[0], f"({end}")
        live = [key for key, n in zip(sets, await pipe.execute(), strict=True) if int(n)]
    counts = {key: [0] * minutes for key in live}
    per = max(1, CHUNK // max(1, len(live)))  # minutes a pipeline
    for lo in range(0, minutes if live else 0, per):
        span = range(lo, min(minutes, lo + per))
        async with redis.pipeline(transaction=False) as pipe:
            for key in live:
                for m in span:
                    pipe.zcount(key, starts[m], f"({starts[m] + 60_000}")
            replies = iter(await pipe.execute())
        for key in live:
            for m in span:
                counts[key][m] = int(next(replies))
    dead = counts.get(keys.dead, [0] * minutes)
    ended = [counts[key] for key in live if key != keys.dead]
    return [(s / 1000, sum(c[m] for c in ended), dead[m]) for m, s in enumerate(starts)]
