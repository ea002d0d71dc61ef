"""A job name's history key of another type (hist:<name> SET by hand, a bad restore): the
requeuer's history trim (worker/requeuer.trim_history) skips that name, logged once while so
naming the key, and trims the others. (It failed as a whole: its pipeline's ZCARD raised, so no
other name's history was trimmed while it lasted, and every requeuer pass failed its garbage
collection, while the acks go on writing the other names' history: ack.lua's ack_name_keys.)"""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker.requeuer import trim_history


async def test_the_other_names_history_is_trimmed_while_one_names_key_is_bad(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await redis.hset(keys.history_data, "g0:1", '{"id":"g0"}')
    await redis.zadd(keys.history_of("good"), {"g0:1": 1})
    await redis.set(keys.history_of("bad"), "x")
    # older than any cutoff, over the bound of 0 kept: good's one record goes
    assert await trim_history(scripts, ["good", "bad"], 10_000, 0) == 1
    assert await redis.zcard(keys.history_of("good")) == 0
    assert await redis.get(keys.history_of("bad")) == b"x"  # (left as is)


async def test_the_skipped_name_is_logged_once_while_so(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    key = keys.history_of("bad")
    await redis.set(key, "x")
    caplog.set_level(logging.WARNING, logger="errands.requeuer")
    logged: set[str] = set()
    for _ in range(2):
        assert await trim_history(scripts, ["good", "bad"], 10_000, 0, logged=logged) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "errands.requeuer"]
    assert len(lines) == 1 and f"its key {key} holds another type" in lines[0], lines
    assert f"DEL {key}" in lines[0]
    await redis.delete(key)  # repaired: forgotten, logged again if it goes bad again
    await trim_history(scripts, ["good", "bad"], 10_000, 0, logged=logged)
    assert logged == set()
