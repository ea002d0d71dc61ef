"""A dead pool's in-progress entry whose job name has an own key of another type (its queue,
partitions running, partition queue, partitions ready or history: written by hand, a bad
restore) is left alone by reap.lua: not reaped, nothing written for it, its name and key named in
the reply (`Reaped.key_unfit`, `Reaped.key_held`); the pool's other entries are reaped, and the
pool stays retired while its set holds that entry. Once the key is repaired, a later call reaps
it. (The call refused the whole reap: one such key held back every job of the dead pool.) A
shared key of another type still refuses the call."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.records import ReapRefused
from tests.store.test_reap_skipped import _dead_pool, _reap

FAMILIES = ["queue", "partitions_running", "partition_queue", "partitions_ready", "history_of"]


@pytest.mark.parametrize("family", FAMILIES)
async def test_a_reap_leaves_the_entries_of_a_name_whose_key_is_of_another_type(
    redis: Redis, namespace: str, family: str
) -> None:
    keys = Keys(namespace)
    scripts = await _dead_pool(redis, keys)  # (s1 of sms; m1, m2 of mail)
    key = getattr(keys, family)("sms")
    await redis.set(key, "x")
    for _ in range(2):  # (a re-sent call: the same entry left alone, nothing more reaped)
        done = await _reap(redis, scripts)
        assert done.key_unfit == {"sms": key} and done.key_held == 1
        assert done.unfit == {} and done.unfit_parts == {} and not done.drained
    assert done.requeued == 0  # (the second call: m1, m2 went with the first)
    assert await redis.zrange(keys.in_progress("dead"), 0, -1) == [b"s1:sms"]
    assert sorted(await redis.zrange(keys.queue("mail"), 0, -1)) == [b"m1", b"m2"]
    assert await redis.get(key) == b"x"
    assert await redis.hget(keys.running, "sms") == b"1"  # (nothing written for it)
    assert await redis.hget(keys.attempts, "s1") is not None
    assert await redis.hget(keys.running, "mail") == b"0"
    assert await redis.zscore(keys.retired, "dead") is not None  # (kept: its entry waits)
    await redis.delete(key)  # repaired
    done = await _reap(redis, scripts)
    assert done.requeued == 1 and done.drained and done.key_unfit == {} and done.key_held == 0
    assert await redis.zrange(keys.queue("sms"), 0, -1) == [b"s1"]
    assert await redis.hget(keys.running, "sms") == b"0"
    assert await redis.zscore(keys.retired, "dead") is None


async def test_names_left_alone_for_a_count_and_for_a_key_are_told_apart(
    redis: Redis, namespace: str
) -> None:
    """sms's count is not a counter, mail's queue is of another type: both left alone, each in
    its own list of the reply; nothing reaped, the pool kept."""
    keys = Keys(namespace)
    scripts = await _dead_pool(redis, keys)
    await redis.hset(keys.running, "sms", "abc")  # type: ignore[misc]
    await redis.set(keys.queue("mail"), "x")
    done = await _reap(redis, scripts)
    assert done.unfit == {"sms": "abc"} and done.key_unfit == {"mail": keys.queue("mail")}
    assert done.key_held == 2 and done.held == 0 and done.requeued == 0
    assert await redis.zcard(keys.in_progress("dead")) == 3


async def test_a_shared_key_of_another_type_still_refuses_the_call(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = await _dead_pool(redis, keys)
    await redis.set(keys.priorities, "x")
    with pytest.raises(ReapRefused, match="nothing reaped"):
        await _reap(redis, scripts)
    assert await redis.zcard(keys.in_progress("dead")) == 3
