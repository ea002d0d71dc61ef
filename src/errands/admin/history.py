"""The attempt history as the Client reads it: pages, counts, attempts per minute."""

from __future__ import annotations

from typing import Any

from ..store.keys import Keys
from .jobinfo import HistoryEntry, Page, history_from_record
from .records import record_of

__all__ = ["PER_PAGE", "history_count", "history_page", "throughput"]

PER_PAGE = 20


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def history_page(
    redis: Any, keys: Keys, page: int, job_name: str | None
) -> Page[HistoryEntry]:
    """Page ``page`` (from 1) of the attempts, of one job name or of all, newest first."""
    page = max(1, page)
    key = keys.history_of(job_name) if job_name else keys.history
    start = (page - 1) * PER_PAGE
    total = int(await redis.zcard(key))
    members = [_text(m) for m in await redis.zrevrange(key, start, start + PER_PAGE - 1)]
    raws = await redis.hmget(keys.history_data, members) if members else []
    records = (record_of(r, m.rsplit(":", 1)[0]) for m, r in zip(members, raws, strict=True))
    items = [e for e in (history_from_record(r) for r in records) if e]
    return Page(items, total, page, PER_PAGE)


async def history_count(redis: Any, keys: Keys, job_name: str | None) -> int:
    key = keys.history_of(job_name) if job_name else keys.history
    return int(await redis.zcard(key))


async def throughput(
    redis: Any, keys: Keys, end: int, minutes: int
) -> list[tuple[float, int, int]]:
    """(minute start, attempts that ended, jobs that died) for each of the ``minutes`` minutes
    before ``end`` (ms), oldest first."""
    starts = [end - 60_000 * (minutes - i) for i in range(minutes)]
    async with redis.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.zcount(keys.history, start, f"({start + 60_000}")
            pipe.zcount(keys.dead, start, f"({start + 60_000}")
        raw = await pipe.execute()
    return [(s / 1000, int(raw[2 * i]), int(raw[2 * i + 1])) for i, s in enumerate(starts)]
