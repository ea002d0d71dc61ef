"""A job name's history key of another type (hist:<name> SET by hand, a bad restore): the
requeuer's history trim (worker/requeuer.trim_history, lua/trim_history.lua) fails as a whole,
so no other name's history is trimmed while it lasts, and every requeuer pass fails its garbage
collection (an error line each pass, its backoff delaying the promotion of due jobs). The acks
now write the other names' history meanwhile (ack.lua's ack_name_keys): it grows without
bound until the one name's key is repaired."""

from __future__ import annotations

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
