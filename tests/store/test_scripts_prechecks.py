"""The audit of the Lua scripts (schedule_fire aside): a key of another type, or a bad
argument, fails a call before its first write: nothing half-written, no job lost."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Dedup, Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.deadpool import dead_pool_row
from tests.support.resend import snapshot


async def test_a_promote_meeting_a_shared_key_of_another_type_moves_nothing(
    redis: Redis, namespace: str
) -> None:
    """promote.lua took a due job out of its scheduled set, then failed to queue it: the job
    was in no set any more (and the names before it had been promoted: half a call). A key of
    one name's of another type leaves that name alone (tests/store/test_promote_name_keys.py);
    a shared one (here the partition index) fails the call before its first write."""
    keys = Keys(namespace)
    enqueuer = Enqueuer(redis, namespace=namespace)
    for name in ("first", "second"):
        job = await enqueuer.enqueue(name, delay=1, partition="a")
        assert job is not None
    await redis.set(keys.partitions, "x")
    before = await snapshot(redis, namespace)
    now_ms = (int((await redis.time())[0]) + 60) * 1000
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await Scripts(redis, keys).promote(["first", "second"], now_ms, 100)
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("family", ["queue", "scheduled", "partition_queue", "partitions_ready"])
async def test_an_enqueue_unique_meeting_a_key_of_another_type_stores_nothing(
    redis: Redis, namespace: str, family: str
) -> None:
    """enqueue_unique.lua stored the envelope and took the unique lock, then failed to queue
    the job: an orphaned envelope held the lock, and every enqueue_unique of those args
    returned None (a duplicate) until the lock expired, while no job ever ran."""
    keys = Keys(namespace)
    enqueuer = Enqueuer(redis, namespace=namespace)
    delay = 60 if family == "scheduled" else None
    partition = "a" if family.startswith("partition") else None
    await redis.set(getattr(keys, family)("report"), "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match=f"WRONGTYPE {keys.prefix}.* no job was stored"):
        await enqueuer.enqueue_unique("report", {"day": 1}, delay=delay, partition=partition)
    assert await snapshot(redis, namespace) == before
    await redis.delete(getattr(keys, family)("report"))  # repaired: the job is stored now
    job = await enqueuer.enqueue_unique("report", {"day": 1}, delay=delay, partition=partition)
    assert job is not None and not job.existed


@pytest.mark.parametrize(
    ("mode", "priority", "due", "window"),
    [("t", 0, 0, 0), ("t", 0, 0, ""), ("t", 0, 0, -5), ("t", 0, 0, 1.5), ("s", "high", 0, 0),
     ("s", 0, "soon", 0), ("x", 0, 0, 0)],
    ids=["window-0", "window-missing", "window-negative", "window-fraction", "priority", "due",
         "mode"],
)  # fmt: skip
async def test_an_enqueue_dedup_with_a_bad_argument_stores_nothing(
    redis: Redis, namespace: str, mode: str, priority: Any, due: Any, window: Any
) -> None:
    """A throttle window of 0 (or none) failed in the SET ... PX after the envelope was stored:
    an orphaned envelope, and no window taken. A priority or due time that is not a number
    failed the same way; an unknown mode was stored as a key no script would ever free."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="errands: enqueue_dedup: "):
        await scripts.enqueue_dedup("report", "j1", b"{}", priority, due, mode, "report:k", window)
    assert await snapshot(redis, namespace) == before


def test_a_throttle_window_under_a_millisecond_is_refused() -> None:
    for throttle in (0, -1, 0.0004):
        with pytest.raises(ValueError, match=r"throttle must be (at least 1 ms|a number of)"):
            Dedup("k", throttle=throttle)


@pytest.mark.parametrize("case", ["requeue", "bury", "cancel"])
async def test_a_reaper_leaves_alone_a_job_whose_attempt_is_another_pools(
    redis: Redis, namespace: str, case: str
) -> None:
    """A dead pool's in-progress entry of a job that runs in a live pool under that pool's
    attempt (a state no script leaves, but one left by data of an older version): reap.lua
    requeued it (a second run at once), buried it or cancelled it while it ran, and dropped
    the live attempt's check-in. It must only free the dead pool's slot."""
    keys = Keys(namespace)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work")
    assert job is not None
    dead, live = "p000000000000000a", "p000000000000000b"
    now_ms = int((await redis.time())[0]) * 1000
    await redis.zadd(keys.pools, {dead: 1, live: now_ms})
    assert await redis.zrem(keys.queue("work"), job.id) == 1
    for pool in (dead, live):
        await redis.zadd(keys.in_progress(pool), {f"{job.id}:work": 1})
    await redis.hset(keys.running, "work", 2)
    await redis.hset(keys.attempts, job.id, f"{live}:7")
    await redis.hset(keys.checkins, job.id, b'{"message":"half way"}')
    if case == "bury":
        await redis.hset(keys.recoveries, job.id, 4)
    if case == "cancel":
        await redis.hset(keys.cancel_requests, job.id, "cancel")
    reaped = await Scripts(redis, keys).reap(
        dead, 60_000, 5, b'"lost"', b'"malformed"', [(f"{job.id}:work", job.id, "work")]
    )
    assert (reaped.requeued, reaped.buried, reaped.cancelled, reaped.drained) == (0, 0, 0, True)
    assert await redis.zcard(keys.queue("work")) == 0
    assert await redis.zcard(keys.dead) == await redis.zcard(keys.cancelled) == 0
    assert await redis.hget(keys.attempts, job.id) == f"{live}:7".encode()
    assert await redis.zrange(keys.in_progress(live), 0, -1) == [f"{job.id}:work".encode()]
    assert await redis.hget(keys.running, "work") == b"1"  # the dead pool's slot only
    assert await redis.hget(keys.checkins, job.id) is not None
    assert await redis.hget(keys.recoveries, job.id) == (b"4" if case == "bury" else None)
    assert await redis.hexists(keys.jobs, job.id)


@pytest.mark.parametrize("family", ["queue", "scheduled"])
async def test_an_enqueue_dedup_meeting_a_key_of_another_type_stores_nothing(
    redis: Redis, namespace: str, family: str
) -> None:
    """enqueue_dedup.lua stored the envelope and took the dedup key, then failed to queue the
    job: the orphaned envelope held the key, and every later enqueue with it was dropped."""
    keys = Keys(namespace)
    enqueuer = Enqueuer(redis, namespace=namespace)
    delay = 60 if family == "scheduled" else None
    await redis.set(getattr(keys, family)("report"), "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match=f"WRONGTYPE {keys.prefix}.* holds another type"):
        await enqueuer.enqueue("report", dedup=Dedup("k"), delay=delay)
    assert await snapshot(redis, namespace) == before
    await redis.delete(getattr(keys, family)("report"))  # repaired: the job is stored now
    job = await enqueuer.enqueue("report", dedup=Dedup("k"), delay=delay)
    assert job is not None and job.dedup is not None and job.dedup.enqueued


@pytest.mark.parametrize(
    ("priority", "due", "expiry"),
    [("high", 0, 1), (1.5, 0, 1), (0, "soon", 1), (0, 0, "never")],
    ids=["priority", "priority-fraction", "due", "expiry"],
)
async def test_an_enqueue_unique_with_a_bad_argument_stores_nothing(
    redis: Redis, namespace: str, priority: Any, due: Any, expiry: Any
) -> None:
    """A priority, due time or lock expiry that is not a whole number failed after the
    envelope was stored (and the unique lock taken)."""
    scripts = Scripts(redis, Keys(namespace))
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="errands: enqueue_unique: "):
        await scripts.enqueue_unique("report", "j1", b"{}", priority, due, "d1", expiry, 0)
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize(("timeout", "most"), [(60_000, "many"), ("long", 5)])
async def test_a_reap_with_a_bad_argument_writes_nothing(
    redis: Redis, namespace: str, timeout: Any, most: Any
) -> None:
    """A max_recoveries that is not a number failed after the pool was retired and its first
    job taken out of its in-progress set (that job in no set any more)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    row = await dead_pool_row(redis, namespace, scripts)
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="errands: reap: "):
        await scripts.reap("dead", timeout, most, b'"lost"', b'"malformed"', [row])
    assert await snapshot(redis, namespace) == before
