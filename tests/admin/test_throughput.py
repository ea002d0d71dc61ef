"""``Client.throughput(minutes)`` counts per minute with ZCOUNT, but a set with nothing in the
whole span is asked once, not once a minute (100,000 minutes over ten names were a pipeline of
1.1 million commands), and the minute-by-minute ZCOUNTs go in pipelines of ``CHUNK``: the
counts are those of one ZCOUNT per set and minute either way."""

from __future__ import annotations

import random

import pytest
from redis.asyncio import Redis

from errands import Client
from errands.admin import history
from errands.store.keys import Keys
from tests.support.commandstats import command_calls

NAMES = ["alpha", "beta", "gamma"]
NOW = 1_800_000_000.0
END = (int(NOW) // 60 + 1) * 60_000  # (Client.throughput's end for now=NOW)


async def naive(redis: Redis, keys: Keys, minutes: int) -> list[tuple[float, int, int]]:
    """One ZCOUNT of every set and minute (what throughput() counted before)."""
    out = []
    for i in range(minutes):
        start = END - 60_000 * (minutes - i)
        window = (start, f"({start + 60_000}")
        ended = [await redis.zcount(keys.history_of(n), *window) for n in NAMES]
        out.append((start / 1000, sum(ended), await redis.zcount(keys.dead, *window)))
    return out


async def fill(redis: Redis, keys: Keys, seed: int, minutes: int, names: list[str]) -> None:
    rng = random.Random(seed)
    for name in NAMES:
        await redis.sadd(keys.names, name)
    for name in names:
        at = {f"{name}-{i}:1": END - rng.randrange(60_000 * minutes + 120_000) for i in range(300)}
        await redis.zadd(keys.history_of(name), at)
    await redis.zadd(keys.dead, {f"d{i}": END - rng.randrange(60_000 * minutes) for i in range(50)})


@pytest.mark.parametrize("seed", range(4))
async def test_counts_are_one_zcount_a_set_and_minute(
    own_redis: Redis, namespace: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(namespace)
    await fill(own_redis, keys, seed, 30, NAMES[: 1 + seed % 3])
    monkeypatch.setattr(history, "CHUNK", 7)  # (pipelines that end inside a set's minutes)
    async with Client(own_redis, namespace=namespace) as client:
        for minutes in (1, 13, 30):
            got = await client.throughput(minutes, now=NOW)
            assert got == await naive(own_redis, keys, minutes), minutes


async def test_sets_empty_over_the_span_are_asked_once(own_redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    for name in NAMES:
        await own_redis.sadd(keys.names, name)
    await own_redis.zadd(keys.history_of("beta"), {"j:1": END - 30_000})
    async with Client(own_redis, namespace=namespace) as client:
        await own_redis.config_resetstat()
        got = await client.throughput(10_000, now=NOW)
        assert (await command_calls(own_redis))["zcount"] == 4 + 10_000  # (beta minute by minute)
        assert got[-1] == ((END - 60_000) / 1000, 1, 0)
        assert sum(n for _s, n, _d in got) == 1
        await own_redis.delete(keys.history_of("beta"))
        await own_redis.config_resetstat()
        assert all(n == d == 0 for _s, n, d in await client.throughput(100_000, now=NOW))
        assert (await command_calls(own_redis))["zcount"] == 4
