"""A page of a listing merged across the sorted sets of every job name, with work bounded at
any depth.

Two orders, those the listings always had: soonest first (scheduled, retry and queued jobs: by
score, ties in the order of the names, then by member) and newest first (the history: by score
then member, both descending, ties in the order of the names).

A page costs a ZCARD of each set first: a page past the end reads no entry. A page of one set
is read directly, and so is a page of several sets whose direct read (the first ``page`` x 20
entries of each set, merged) reads fewer than ``SHALLOW`` entries more than a page of each set
(the first pages; the fewer, the more sets). A deeper page finds the score at its first entry
by bisection with ZCOUNT (rounds of a pipeline of one ZCOUNT per set), then reads 20 entries of
each set from there (a newest-first page that starts inside a score several names share reads
up to that score's entries, not the page's depth). The bisection goes over the doubles (at most
64 rounds) or, when the lowest and highest scores are integers (ms times, sequence numbers) and
that takes fewer rounds, over the integers between them (about log2 of their range, plus one
round; plus at most 64 where scores that are no integers lie next to the integer found)."""

from __future__ import annotations

import heapq
import itertools
import math
import struct
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "PER_PAGE",
    "SHALLOW",
    "Pair",
    "merged",
    "ordered",
    "page_entries",
    "unordered",
    "windows",
]

PER_PAGE = 20
SHALLOW = 1_000  # a page read directly when that reads fewer entries more than a deep read

Pair = tuple[Any, float]  # (member, score), as Redis returns them
_SIGN = 1 << 63
_MASK = (1 << 64) - 1


def merged(lists: Sequence[Sequence[Pair]], newest_first: bool) -> Iterator[Pair]:
    """The entries of the sets (each in its listing order) in the listing's order."""
    if newest_first:
        return heapq.merge(*lists, key=lambda pair: (pair[1], pair[0]), reverse=True)
    return heapq.merge(*lists, key=lambda pair: pair[1])


def ordered(score: float) -> int:
    """An int of ``score`` in the order of the doubles (-0.0 just below 0.0; not NaN)."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", score))
    return int(bits ^ _MASK if bits & _SIGN else bits | _SIGN)


def unordered(key: int) -> float:
    """The double of :func:`ordered`'s ``key``."""
    bits = key & ~_SIGN if key & _SIGN else key ^ _MASK
    (score,) = struct.unpack(">d", struct.pack(">Q", bits))
    return float(score)


def windows(
    before: Sequence[int], ties: Sequence[int], skip: int, newest_first: bool
) -> tuple[list[int], int, int]:
    """Where a page starts in each set, as (first index of each set, entries to read of each,
    entries to drop from their merge), given the entries of each set before the score of the
    page's first entry (``before``), at that score (``ties``), and the entries at that score
    before the page (``skip``)."""
    if skip == 0:
        return list(before), PER_PAGE, 0
    if not newest_first:  # ties in the order of the names: the page starts in one set
        firsts, left = [], skip
        for b, t in zip(before, ties, strict=True):
            firsts.append(b + min(t, left))
            left -= min(t, left)
        return firsts, PER_PAGE, 0
    sharing = [i for i, t in enumerate(ties) if t]
    if not sharing:  # (the score's entries went away since the bisection)
        return list(before), PER_PAGE, 0
    if len(sharing) == 1:
        firsts = list(before)
        firsts[sharing[0]] += skip
        return firsts, PER_PAGE, 0
    return list(before), skip + PER_PAGE, skip  # ties by member across the names


async def page_entries(
    redis: Any, keys: Sequence[str], start: int, newest_first: bool, shallow: int = SHALLOW
) -> tuple[list[Pair], int]:
    """The (member, score) pairs of entries ``start`` to ``start + PER_PAGE`` of the sets
    ``keys`` (in the order of their names) merged, and how many entries they hold."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zcard(key)
        sizes = [int(n) for n in await pipe.execute()]
    total = sum(sizes)
    if start >= total:
        return [], total
    if len(keys) == 1 or _extra(sizes, start) < shallow:
        first = start if len(keys) == 1 else 0  # one set: read the page alone
        n, drop = start + PER_PAGE - first, start - first
        lists = await _read(redis, keys, [first] * len(keys), n, newest_first)
        return list(itertools.islice(merged(lists, newest_first), drop, drop + PER_PAGE)), total
    score = await _boundary(redis, keys, start, newest_first)
    if score is None:  # (emptied since the ZCARDs)
        return [], total
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            if newest_first:
                pipe.zcount(key, f"({score!r}", "+inf")
            else:
                pipe.zcount(key, "-inf", f"({score!r}")
            pipe.zcount(key, repr(score), repr(score))
        raw = [int(n) for n in await pipe.execute()]
    before, ties = raw[0::2], raw[1::2]
    # within the score's entries: the sets may have changed since the bisection (newer entries
    # purged: ``start - sum(before)`` is about as many entries as went away)
    skip = min(max(0, start - sum(before)), sum(ties))
    firsts, n, drop = windows(before, ties, skip, newest_first)
    lists = await _read(redis, keys, firsts, n, newest_first)
    return list(itertools.islice(merged(lists, newest_first), drop, drop + PER_PAGE)), total


def _extra(sizes: Sequence[int], start: int) -> int:
    """How many entries more than a deep page's (a page of each set) the direct read of the
    page starting at ``start`` reads: the first ``start + PER_PAGE`` entries of each set."""
    return sum(min(n, start + PER_PAGE) - min(n, PER_PAGE) for n in sizes)


async def _read(
    redis: Any, keys: Sequence[str], firsts: Sequence[int], n: int, newest_first: bool
) -> list[list[Pair]]:
    """``n`` entries of each set from its index in ``firsts``, in the listing's order."""
    async with redis.pipeline(transaction=False) as pipe:
        for key, first in zip(keys, firsts, strict=True):
            read = pipe.zrevrange if newest_first else pipe.zrange
            read(key, first, first + n - 1, withscores=True)
        return list(await pipe.execute())


async def _boundary(
    redis: Any, keys: Sequence[str], start: int, newest_first: bool
) -> float | None:
    """The score of entry ``start`` of the merged sets (``start`` below their total): the
    first score, in the listing's order, with more than ``start`` entries at or before it
    (None when the sets are empty)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zrange(key, 0, 0, withscores=True)
            pipe.zrange(key, -1, -1, withscores=True)
        ends = [pairs[0][1] for pairs in await pipe.execute() if pairs]
    if not ends:
        return None
    # bisection over the listing's order of the doubles: newest first, the keys negated
    sign = -1 if newest_first else 1

    async def beyond(key: int) -> bool:  # more than `start` entries up to the double of key
        return await _reached(redis, keys, unordered(sign * key), newest_first) > start

    lo, hi = min(sign * ordered(e) for e in ends), max(sign * ordered(e) for e in ends)
    whole = _whole_ends(ends, sign)
    if whole is not None and (whole[1] - whole[0]).bit_length() + 1 < (hi - lo).bit_length():
        # integer ends (ms times, sequence numbers): first over the integers between them,
        # then the doubles between the integer found and the one before it (one round when
        # no score lies between them)
        ilo, ihi = whole
        while ilo < ihi:
            mid = (ilo + ihi) // 2
            if await _reached(redis, keys, float(sign * mid), newest_first) > start:
                ihi = mid
            else:
                ilo = mid + 1
        hi = sign * ordered(float(sign * ilo))
        lo = max(lo, sign * ordered(float(sign * (ilo - 1))) + 1)
        if lo < hi and not await beyond(hi - 1):
            lo = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if await beyond(mid):
            hi = mid
        else:
            lo = mid + 1
    return unordered(sign * lo)


def _whole_ends(ends: Sequence[float], sign: int) -> tuple[int, int] | None:
    """The range of the integers between the lowest and highest of ``ends`` in the listing's
    order (``sign``: -1 newest first) when both are integers a double holds exactly, else
    None."""
    low, high = min(ends), max(ends)
    if not all(math.isfinite(e) and e.is_integer() and abs(e) <= 2**53 for e in (low, high)):
        return None
    return min(sign * int(low), sign * int(high)), max(sign * int(low), sign * int(high))


async def _reached(redis: Any, keys: Sequence[str], score: float, newest_first: bool) -> int:
    """How many entries of the sets come at or before ``score`` in the listing's order."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            if newest_first:
                pipe.zcount(key, repr(score), "+inf")
            else:
                pipe.zcount(key, "-inf", repr(score))
        return sum(int(n) for n in await pipe.execute())
