"""Pages of the listings merged across job names (scheduled, retry, queued jobs; the history of
every name) cost bounded work at any depth: a page past the end reads no entry (only the sizes
of the sets), a deep page reads about a page of each set, not ``page`` x 20 entries of each (a
page of 10**6 read every entry of every set). Deep and shallow pages list what the plain merge
of every entry lists, ties included (soonest first: ties in the order of the names, then by
member; newest first: by member, descending, then in the order of the names)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Client
from errands.admin import paging
from errands.admin.paging import (
    PER_PAGE,
    SHALLOW,
    Pair,
    merged,
    ordered,
    page_entries,
    unordered,
    windows,
)
from errands.store.keys import Keys
from tests.support.commandstats import command_calls

NAMES = ["alpha", "beta", "gamma"]
READS = {"zrange", "zrevrange", "zrangebyscore", "zrevrangebyscore", "hmget", "zscan"}
SCORES = [-math.inf, -2.5, -0.0, 0.0, 1.0, 3.0, 1e15, math.inf]


def plain(lists: list[list[Pair]], newest_first: bool) -> list[Pair]:
    """Every entry in the listing's order, by a sort of all of them (no merge)."""
    tagged = [(m, s, i) for i, pairs in enumerate(lists) for m, s in pairs]
    if newest_first:
        tagged.sort(key=lambda t: t[2])
        tagged.sort(key=lambda t: (t[1], t[0]), reverse=True)  # (stable: names' order kept)
    else:
        tagged.sort(key=lambda t: (t[1], t[2], t[0]))
    return [(m, s) for m, s, _i in tagged]


async def filled(redis: Redis, keys: Keys, per_name: int) -> None:
    """``per_name`` entries in the scheduled set and the history of each name (no records)."""
    async with redis.pipeline(transaction=False) as pipe:
        for n, name in enumerate(NAMES):
            pipe.sadd(keys.names, name)
            for first in range(0, per_name, 1000):
                batch = range(first, min(per_name, first + 1000))
                pipe.zadd(keys.scheduled(name), {f"{name}-{i}": 1000 + i * 3 + n for i in batch})
                pipe.zadd(keys.history_of(name), {f"{name}-{i}:1": 5000 + i for i in batch})
        await pipe.execute()


async def test_a_page_past_the_end_reads_only_the_sizes(own_redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    await filled(own_redis, keys, 30)
    async with Client(own_redis, namespace=namespace) as client:
        for page in (6, 7, 10**6, 2**50):
            await own_redis.config_resetstat()
            listings = [
                await client.scheduled_jobs(page),
                await client.jobs_by_status("scheduled", page),
                await client.history(page),
            ]
            assert [(p.items, p.total) for p in listings] == [([], 90)] * 3
            assert READS.isdisjoint(await command_calls(own_redis)), page
        assert len((await client.scheduled_jobs(5)).items) == 10  # (entries 80 to 89)


async def sent_bytes(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_net_output_bytes"])


async def test_a_deep_page_reads_about_a_page_of_each_name(
    own_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await filled(own_redis, keys, 6000)
    async with Client(own_redis, namespace=namespace) as client:
        for page in (2, 300, 899, 900):
            before = await sent_bytes(own_redis)
            scheduled = await client.scheduled_jobs(page)
            between = await sent_bytes(own_redis)
            history = await client.history(page)
            after = await sent_bytes(own_redis)
            n = page * PER_PAGE - PER_PAGE
            expected = [f"{NAMES[i % 3]}-{i // 3}" for i in range(n, min(n + 20, 18000))]
            assert [j.id for j in scheduled.items] == expected
            assert scheduled.total == history.total == 18000
            # (history: no record to show; the reply of HMGET is 20 nils)
            # about 4.5 kB; a direct read of page 300 sent 5,980 entries of each name: ~500 kB
            assert between - before < 10_000, (page, between - before)
            assert after - between < 10_000, (page, after - between)
        await own_redis.config_resetstat()
        await client.history(700)
        calls = await command_calls(own_redis)
        # the bisection: at most 64 rounds of a ZCOUNT per name, then 2 ZCOUNTs per name
        assert 0 < calls["zcount"] <= 3 * (64 + 2) and calls["zrevrange"] <= 3 * 2, calls


def random_sets(rng: random.Random) -> list[list[Pair]]:
    """Up to 4 sets, many of their scores shared (in a set, and across sets), some members
    in two sets."""
    scores = rng.sample(SCORES, rng.randint(1, 4))
    out = []
    for _ in range(rng.randint(1, 4)):
        members = rng.sample([f"m{i:02}" for i in range(60)], rng.randint(0, 50))
        pairs = {m.encode(): rng.choice(scores) for m in members}
        out.append(sorted(pairs.items(), key=lambda p: (p[1], p[0])))
    return out


async def test_every_page_deep_or_direct_is_the_plain_merge(redis: Redis, namespace: str) -> None:
    rng = random.Random(15)
    for run in range(25):
        lists = random_sets(rng)
        keys = [f"errands:{{{namespace}}}:deep{run}:{i}" for i in range(len(lists))]
        async with redis.pipeline(transaction=False) as pipe:
            for key, pairs in zip(keys, lists, strict=True):
                if pairs:
                    pipe.zadd(key, dict(pairs))
            await pipe.execute()
        for newest_first in (False, True):
            everything = plain(lists, newest_first)
            for start in range(0, len(everything) + PER_PAGE, rng.randint(1, PER_PAGE)):
                page = everything[start : start + PER_PAGE]
                for shallow in (0, 10**9):
                    got = await page_entries(redis, keys, start, newest_first, shallow)
                    assert got == (page, len(everything)), (run, newest_first, start, shallow)
        await redis.delete(*keys)


def test_ordered_keeps_the_order_of_the_doubles() -> None:
    doubles = [-math.inf, -1e308, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, 1e308, math.inf]
    keys = [ordered(d) for d in doubles]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert [unordered(k) for k in keys] == doubles
    assert math.copysign(1, unordered(ordered(-0.0))) == -1
    assert unordered(ordered(1.0) + 1) == math.nextafter(1.0, math.inf)


def test_windows_start_every_page_where_the_plain_merge_does() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        newest_first = rng.random() < 0.5
        lists = []
        for _set in range(rng.randint(1, 4)):
            members = rng.sample([b"a", b"b", b"c", b"d", b"e"], rng.randint(0, 5))
            pairs = [(m, rng.choice([1.0, 2.0, 3.0])) for m in members]
            lists.append(sorted(pairs, key=lambda p: (p[1], p[0]), reverse=newest_first))
        everything = plain(lists, newest_first)
        if not everything:
            continue
        start = rng.randrange(len(everything))
        score = everything[start][1]
        if newest_first:
            before = [sum(s > score for _m, s in pairs) for pairs in lists]
        else:
            before = [sum(s < score for _m, s in pairs) for pairs in lists]
        ties = [sum(s == score for _m, s in pairs) for pairs in lists]
        firsts, n, drop = windows(before, ties, start - sum(before), newest_first)
        read = [pairs[f : f + n] for pairs, f in zip(lists, firsts, strict=True)]
        got = list(merged(read, newest_first))[drop : drop + PER_PAGE]
        assert got == everything[start : start + PER_PAGE], (lists, start)


async def test_a_deep_page_whose_newer_entries_go_meanwhile_reads_at_most_the_ties(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name's newer entries purged between the bisection and the ZCOUNTs: the page's offset
    in its score (``start - sum(before)``) was about the count purged, and every set was read
    that deep (a page of 2 x 5,000 newer entries read ~5,000 entries of each set)."""
    a, b = (f"errands:{{{namespace}}}:race:{n}" for n in "ab")
    async with redis.pipeline(transaction=False) as pipe:
        for key in (a, b):
            pipe.zadd(key, {f"new{i}": 1000 + i for i in range(5000)})
            pipe.zadd(key, {f"tie{i}": 100 for i in range(50)})
            pipe.zadd(key, {f"old{i}": -i for i in range(5000)})
        await pipe.execute()
    found = paging._boundary
    read = paging._read
    entries: list[int] = []

    async def boundary(*args: Any) -> float | None:
        score = await found(*args)
        await redis.zremrangebyscore(a, 1000, "+inf")  # (purged meanwhile)
        return score

    async def counted(*args: Any) -> list[list[Pair]]:
        lists = await read(*args)
        entries.append(sum(map(len, lists)))
        return lists

    monkeypatch.setattr(paging, "_boundary", boundary)
    monkeypatch.setattr(paging, "_read", counted)
    items, total = await page_entries(redis, [a, b], 2 * 5000 + 10, True, shallow=0)
    assert total == 2 * 10050 and len(items) == PER_PAGE
    assert all(score == 100 or score < 1000 for _m, score in items)
    assert entries and sum(entries) <= 2 * (100 + PER_PAGE), entries  # (the ties, a page)

    # every tie gone too: no set shares the score any more, a page of each from there
    entries.clear()
    await redis.zadd(a, {f"new{i}": 1000 + i for i in range(5000)})

    async def untied(*args: Any) -> float | None:
        score = await found(*args)
        await redis.zremrangebyscore(a, 100, "+inf")
        await redis.zremrangebyscore(b, 100, 100)
        return score

    monkeypatch.setattr(paging, "_boundary", untied)
    items, _total = await page_entries(redis, [a, b], 2 * 5000 + 10, True, shallow=0)
    assert len(items) == PER_PAGE and entries == [2 * PER_PAGE], entries
    assert windows([3, 4], [0, 0], 7, True) == ([3, 4], PER_PAGE, 0)  # (not 27 of each)


@pytest.mark.parametrize("newest_first", [False, True])
async def test_a_page_of_many_names_reads_bounded_entries_at_any_depth(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch, newest_first: bool
) -> None:
    """The direct read was chosen by the depth alone (before entry 1,000): page 10 of 100
    names read the first 200 entries of every name, 20,000 entries."""
    lists = [[(f"{n}-{i}".encode(), float(i * 100 + n)) for i in range(200)] for n in range(100)]
    keys = [f"errands:{{{namespace}}}:many:{n:03}" for n in range(100)]
    async with redis.pipeline(transaction=False) as pipe:
        for key, pairs in zip(keys, lists, strict=True):
            pipe.zadd(key, dict(pairs))
        await pipe.execute()
    read = paging._read
    entries: list[int] = []

    async def counted(*args: Any) -> list[list[Pair]]:
        got = await read(*args)
        entries.append(sum(map(len, got)))
        return got

    monkeypatch.setattr(paging, "_read", counted)
    everything = plain(lists, newest_first)
    for start in (0, 5, 180, 980, 10_000, 19_990):
        entries.clear()
        got = await page_entries(redis, keys, start, newest_first)
        assert got == (everything[start : start + PER_PAGE], 20_000), start
        assert sum(entries) <= SHALLOW + 100 * PER_PAGE, (start, entries)
    await redis.delete(*keys)


@pytest.mark.parametrize("base", [0, 1_767_225_600_000])
async def test_integer_scores_take_about_log2_of_their_range_rounds(
    own_redis: Redis, namespace: str, base: int
) -> None:
    """Sequence numbers or ms times: the bisection went over the doubles' bit patterns, 62
    rounds for scores 0 to 30,000 (34 for a span of 30 s of ms times), not over the integers
    between the ends (15 rounds, plus one)."""
    keys = [f"errands:{{{namespace}}}:ints:{n}" for n in range(3)]
    async with own_redis.pipeline(transaction=False) as pipe:
        for n, key in enumerate(keys):
            pipe.zadd(key, {f"{n}-{i}": base + i * 10 + n for i in range(3000)})
        await pipe.execute()
    for newest_first in (False, True):
        for start in (1234, 5000, 8999):
            await own_redis.config_resetstat()
            items, _total = await page_entries(own_redis, keys, start, newest_first, 0)
            i = 8999 - start if newest_first else start
            assert items[0] == (f"{i % 3}-{i // 3}".encode(), base + i // 3 * 10 + i % 3)
            calls = (await command_calls(own_redis))["zcount"]
            assert calls <= 3 * (15 + 1 + 2), (newest_first, start, calls)


def integer_ends(rng: random.Random) -> list[list[Pair]]:
    """Up to 4 sets, the lowest and highest scores integers, others between them not."""
    choices = [-3.0, -0.0, 0.0, 0.5, 1.0, 1.25, 2.0, 2.5, 1e6 - 0.5, 1e6]
    out = []
    for _ in range(rng.randint(1, 4)):
        members = rng.sample([f"m{i:02}" for i in range(40)], rng.randint(0, 30))
        pairs = {m.encode(): rng.choice(choices) for m in members}
        out.append(sorted(pairs.items(), key=lambda p: (p[1], p[0])))
    low, high = rng.choice([(-3.0, 1e6), (0.0, 2.0), (1.0, 1e6), (-3.0, 0.0)])
    out[0] += [(b"low", low), (b"high", high)]
    out[0].sort(key=lambda p: (p[1], p[0]))
    for pairs in out:
        pairs[:] = [(m, s) for m, s in pairs if low <= s <= high]
    return out


async def test_every_deep_page_between_integer_ends_is_the_plain_merge(
    redis: Redis, namespace: str
) -> None:
    """Scores that are no integers between integer ends: the integers first, then the
    doubles between two of them, to the exact score of the page's first entry."""
    rng = random.Random(3)
    for run in range(40):
        lists = integer_ends(rng)
        keys = [f"errands:{{{namespace}}}:ends{run}:{i}" for i in range(len(lists))]
        async with redis.pipeline(transaction=False) as pipe:
            for key, pairs in zip(keys, lists, strict=True):
                if pairs:
                    pipe.zadd(key, dict(pairs))
            await pipe.execute()
        for newest_first in (False, True):
            everything = plain(lists, newest_first)
            for start in range(0, len(everything), rng.randint(1, 7)):
                got = await page_entries(redis, keys, start, newest_first, 0)
                page = everything[start : start + PER_PAGE]
                assert got == (page, len(everything)), (run, newest_first, start)
        await redis.delete(*keys)
