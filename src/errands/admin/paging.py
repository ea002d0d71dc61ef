"""A page of a listing merged across the sorted sets of every job name, with work bounded at
any depth.

Two orders, those the listings always had: soonest first (scheduled, retry and queued jobs: by
score, ties in the order of the names, then by member) and newest first (the history: by score
then member, both descending, ties in the order of the names).

A page costs a ZCARD of each set first: a page past the end reads no entry. A page of one set
is read directly, and so is a page of several sets whose direct read (the first ``page`` x 20
entries of each set, merged) reads fewer than ``SHALLOW`` entries more than a page of each set
(the first pages; the fewer, the more sets). A deeper page finds the score at its first entry
by bisection over the doubles with ZCOUNT (at most 64 rounds, each a pipeline of one ZCOUNT per
set), then reads 20 entries of each set from there (a newest-first page that starts inside a
score several names share reads up to that score's entries, not the page's depth)."""

from __future__ import annotations

import heapq
import itertools
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
        ends = [ordered(pairs[0][1]) for pairs in await pipe.execute() if pairs]
    if not ends:
        return None
    # bisection over the listing's order of the doubles: newest first, the keys negated
    sign = -1 if newest_first else 1
    lo, hi = min(sign * e for e in ends), max(sign * e for e in ends)
    while lo < hi:
        mid = (lo + hi) // 2
        score = repr(unordered(sign * mid))
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                if newest_first:
                    pipe.zcount(key, score, "+inf")
                else:
                    pipe.zcount(key, "-inf", score)
            reached = sum(int(n) for n in await pipe.execute())
        if reached > start:
            hi = mid
        else:
            lo = mid + 1
    return unordered(sign * lo)
