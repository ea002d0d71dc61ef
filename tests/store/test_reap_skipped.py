"""A dead pool's in-progress entry whose job name's `running` count is not a counter (written by
hand: 'abc') is left alone by reap.lua: not reaped, nothing written for it, its name and count
named in the reply; the pool's other entries are reaped, and the pool stays retired while its
set holds that entry. Once the count is repaired, a later call reaps it. (The call refused the
whole reap: one corrupt name held back every job of the dead pool.)"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.reapcall import reap_request
from errands.store.records import Reaped, ReapRefused
from errands.store.scripts import Scripts

JOBS = [("sms", "s1"), ("mail", "m1"), ("mail", "m2")]
ERR, MALFORMED = b'{"error":"poison"}', b'{"error":"malformed"}'


async def _dead_pool(redis: Redis, keys: Keys) -> Scripts:
    """Pool `dead` ran s1 (sms), m1 and m2 (mail) and died."""
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enqueuer:
        jobs = [(name, {}, {"job_id": i}) for name, i in JOBS]
        await enqueuer.enqueue_many(jobs)  # type: ignore[arg-type]
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    got = await scripts.fetch("dead", 0, 10, [("sms", 0), ("mail", 0)])
    assert got is not None and len(got) == 3
    await redis.zadd(keys.pools, {"dead": 1})
    return scripts


async def _reap(redis: Redis, scripts: Scripts) -> Reaped:
    raw = await redis.zrange(scripts.keys.in_progress("dead"), 0, -1)
    members = [(m, *m.decode().split(":", 1)) for m in raw]
    return await scripts.reap("dead", 1000, 3, ERR, MALFORMED, members)


async def test_a_reap_leaves_the_entries_of_a_name_whose_count_is_not_one(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = await _dead_pool(redis, keys)
    await redis.hset(keys.running, "sms", "abc")  # type: ignore[misc]
    for _ in range(2):  # (a re-sent call: the same entry left alone, nothing more reaped)
        done = await _reap(redis, scripts)
        assert done.unfit == {"sms": "abc"}
        assert not done.drained
    assert await redis.zrange(keys.in_progress("dead"), 0, -1) == [b"s1:sms"]
    assert sorted(await redis.zrange(keys.queue("mail"), 0, -1)) == [b"m1", b"m2"]
    assert await redis.hget(keys.running, "sms") == b"abc"
    assert await redis.hget(keys.running, "mail") == b"0"
    assert await redis.zcard(keys.queue("sms")) == 0
    assert await redis.hget(keys.attempts, "s1") is not None  # (nothing written for it)
    assert await redis.zscore(keys.retired, "dead") is not None  # (kept: its entry waits)
    assert await redis.zscore(keys.pools, "dead") is None
    await redis.hset(keys.running, "sms", "1")  # type: ignore[misc]
    done = await _reap(redis, scripts)
    assert done.requeued == 1 and done.drained and done.unfit == {}
    assert await redis.zrange(keys.queue("sms"), 0, -1) == [b"s1"]
    assert await redis.hget(keys.running, "sms") == b"0"
    assert await redis.zscore(keys.retired, "dead") is None


@pytest.mark.parametrize("where", ["workflow run", "queue"])
async def test_an_entry_left_alone_cannot_refuse_the_reap(
    redis: Redis, namespace: str, where: str
) -> None:
    """s1 (sms, its count 'abc': left alone) is a member of a run whose key holds another type,
    or its name's queue does: only an entry taken back writes them, never one left alone, so
    the others are reaped. (They were checked for every entry first: the call was refused.)"""
    keys = Keys(namespace)
    scripts = await _dead_pool(redis, keys)
    await redis.hset(keys.running, "sms", "abc")  # type: ignore[misc]
    await redis.hset(keys.workflow_of, "s1", "r1")  # type: ignore[misc]
    wrong = keys.workflow("r1") if where == "workflow run" else keys.queue("sms")
    await redis.set(wrong, "another type")
    done = await _reap(redis, scripts)
    assert done.unfit == {"sms": "abc"} and done.requeued == 2
    assert sorted(await redis.zrange(keys.queue("mail"), 0, -1)) == [b"m1", b"m2"]
    assert await redis.zrange(keys.in_progress("dead"), 0, -1) == [b"s1:sms"]
    await redis.hset(keys.running, "sms", "1")  # type: ignore[misc]
    if where == "queue":  # (taken back now: left alone for its key, test_reap_name_keys.py)
        assert (await _reap(redis, scripts)).key_unfit == {"sms": wrong}
    else:  # (taken back now: a key of its run refuses the call)
        with pytest.raises(ReapRefused, match=wrong.split("}")[1]):
            await _reap(redis, scripts)
    await redis.delete(wrong, keys.workflow_of)
    assert (await _reap(redis, scripts)).drained


async def test_a_read_end_that_is_no_whole_number_from_0_refuses_the_call_before_any_write(
    redis: Redis, namespace: str
) -> None:
    """ARGV[9] (0, or the call ends the reaper's read of the set: 1 + the entries its earlier
    calls left alone; reap.lua sets the pool's score in `retired` ahead only then) is checked
    with the other arguments, before the first write."""
    keys = Keys(namespace)
    scripts = await _dead_pool(redis, keys)
    members = [(f"{i}:{name}", i, name) for name, i in JOBS]
    request = reap_request(keys, "dead", (1000, 3), (ERR, MALFORMED), members, True, {})
    for wrong in ("yes", "-1", "1.5", ""):
        request[1][8] = wrong
        reply = await scripts._call("reap", *request)
        assert reply.endswith(f"read end: 1000, 3, 42, {wrong}: nothing reaped".encode()), reply
    assert await redis.zscore(keys.pools, "dead") == 1 and await redis.zcard(keys.retired) == 0
    assert await redis.zcard(keys.in_progress("dead")) == 3


async def test_the_call_ending_a_read_holds_the_pool_for_entries_earlier_calls_left_alone(
    redis: Redis, namespace: str
) -> None:
    """The reaper's last call may read nothing (its batch ended at the set's end) while earlier
    calls left entries alone: ``left_before`` tells, and the pool is held (its score in `retired`
    one dead timeout ahead); 0 left before and none now: not held (listed next pass)."""
    keys = Keys(namespace)
    scripts = await _dead_pool(redis, keys)
    await scripts.reap("dead", 60_000, 3, ERR, MALFORMED, [], read_to_end=True)
    assert "dead" in await scripts.dead_pools(60_000)
    await scripts.reap("dead", 60_000, 3, ERR, MALFORMED, [], read_to_end=True, left_before=1)
    assert "dead" not in await scripts.dead_pools(60_000)


async def test_a_reap_not_said_to_end_a_read_holds_no_pool(redis: Redis, namespace: str) -> None:
    """read_to_end is False unless passed (by keyword): a call leaving an entry alone holds the
    pool only when its caller says it ended its read; else the pool stays listed (the safe side:
    read again next pass). (It defaulted to True: a caller of one batch held the pool.)"""
    keys = Keys(namespace)
    scripts = await _dead_pool(redis, keys)
    await redis.hset(keys.running, "sms", "abc")  # type: ignore[misc]
    assert (await _reap(redis, scripts)).unfit == {"sms": "abc"}
    assert "dead" in await scripts.dead_pools(60_000)
