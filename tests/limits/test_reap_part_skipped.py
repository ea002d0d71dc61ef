"""A dead pool's in-progress entries of a partition whose running count is not a counter
(written by hand: 'x') are left alone by reap.lua: not reaped, nothing written for them, the
partition named in the reply; the pool's other entries (other partitions, jobs without one) are
reaped, and the pool stays retired while its set holds them. Once the count is repaired, a
later call reaps them. The reaper reads past them and logs one error per such partition, and a
warning once it is a counter again. (reap.lua refused the whole call: one corrupt partition
count held back every job of the dead pool, forever.)"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.records import Reaped
from errands.store.scripts import Scripts
from errands.worker import reaper as reaper_module
from errands.worker.reaper import Reaper

ERR, MALFORMED = b'{"error":"poison"}', b'{"error":"malformed"}'


async def _dead_pool(redis: Redis, keys: Keys) -> tuple[Scripts, dict[str, str]]:
    """Pool `dead` ran jobs a1, a2 (partition a), b1 (partition b) and p1 (none) of `work`, and
    died; a's running count is then written as 'x'. Returns the ids by name."""
    ids: dict[str, str] = {}
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enq:
        for label, part in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("p1", None)):
            job = await enq.enqueue("work", partition=part, job_id=label)
            assert job is not None
            ids[label] = job.id
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    got = await scripts.fetch("dead", 0, 10, [("work", 0)])
    assert got is not None and len(got) == 4
    await redis.hset(keys.partitions_running("work"), "a", "x")  # type: ignore[misc]
    await redis.zadd(keys.pools, {"dead": 1})
    return scripts, ids


async def _reap(scripts: Scripts) -> Reaped:
    raw = await scripts.redis.zrange(scripts.keys.in_progress("dead"), 0, -1)
    members = [(m, *m.decode().split(":", 1)) for m in raw]
    return await scripts.reap("dead", 1000, 3, ERR, MALFORMED, members)


async def test_a_reap_leaves_the_entries_of_a_partition_whose_count_is_not_one(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts, _ = await _dead_pool(redis, keys)
    prun = keys.partitions_running("work")
    for _ in range(2):  # (a re-sent call: the same entries left alone, nothing more reaped)
        done = await _reap(scripts)
        assert done.unfit_parts == {("work", "a"): "x"} and done.held == 2
        assert done.unfit == {} and not done.drained
    assert done.requeued == 0  # (the re-send's: the first requeued b1 and p1)
    assert sorted(await redis.zrange(keys.in_progress("dead"), 0, -1)) == [
        b"a1:work",
        b"a2:work",
    ]
    assert sorted(await redis.zrange(keys.queue("work"), 0, -1)) == [b"b1", b"p1"]
    assert await redis.hgetall(prun) == {b"a": b"x"}  # (b's freed, a's left as it is)
    assert await redis.hget(keys.running, "work") == b"2"
    assert None not in await redis.hmget(keys.attempts, ["a1", "a2"])  # (nothing written)
    assert await redis.zscore(keys.retired, "dead") is not None  # (kept: its entries wait)
    await redis.hset(prun, "a", "2")  # type: ignore[misc]  # repaired
    done = await _reap(scripts)
    assert done.requeued == 2 and done.drained and done.unfit_parts == {} and done.held == 0
    assert await redis.hget(keys.running, "work") == b"0"
    assert await redis.exists(prun) == 0
    assert await redis.zscore(keys.retired, "dead") is None


async def test_an_entry_left_alone_for_its_partition_cannot_refuse_the_reap(
    redis: Redis, namespace: str
) -> None:
    """a1 (partition a, its count 'x': left alone) is a member of a run whose key holds another
    type: only an entry taken back writes it, so the others are reaped, as for an entry left
    alone for its name's count (tests/store/test_reap_skipped.py). (The call was refused.)"""
    keys = Keys(namespace)
    scripts, ids = await _dead_pool(redis, keys)
    await redis.hset(keys.workflow_of, ids["a1"], "r1")  # type: ignore[misc]
    await redis.set(keys.workflow("r1"), "another type")
    done = await _reap(scripts)
    assert done.unfit_parts == {("work", "a"): "x"} and done.requeued == 2
    assert sorted(await redis.zrange(keys.queue("work"), 0, -1)) == [b"b1", b"p1"]


async def test_the_reaper_reads_past_them_and_logs_once(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reaper_module, "BATCH", 2)  # (a1 and a2 alone in the first read)
    keys = Keys(namespace)
    scripts, _ = await _dead_pool(redis, keys)
    prun = keys.partitions_running("work")
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == 2
        assert await reaper.reap_once() == 0  # (nothing spins: the pass ends)
    assert sorted(await redis.zrange(keys.queue("work"), 0, -1)) == [b"b1", b"p1"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # (one per partition, not one per pass)
    assert "partition 'a' of job name work" in errors[0] and "dead" in errors[0]
    assert f"HSET {prun} a <n>" in errors[0] and "'x'" in errors[0]
    await redis.hset(prun, "a", "2")  # type: ignore[misc]  # repaired
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == 0  # (listed again one dead timeout after its reap)
    assert "partition 'a' of job name work: its running count is a counter again" in caplog.text
    await redis.zadd(keys.retired, {"dead": 1})  # (that dead timeout stepped past: no sleep)
    assert await reaper.reap_once() == 2
    assert await redis.zscore(keys.retired, "dead") is None


async def test_a_pool_held_by_a_partition_is_listed_again_one_dead_timeout_later(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a pool held by a job name's count (tests/worker/test_reap_held.py): reap.lua sets
    its score in `retired` one dead timeout ahead, so the next pass does not read it again.
    (It was re-read, with a reap call, every pass.)"""
    keys = Keys(namespace)
    scripts, _ = await _dead_pool(redis, keys)
    calls: list[str] = []
    reap = scripts.reap

    async def counted(pool_id: str, *args: Any, **kwargs: Any) -> Reaped:
        calls.append(pool_id)
        return await reap(pool_id, *args, **kwargs)

    monkeypatch.setattr(scripts, "reap", counted)
    reaper = Reaper(scripts, SystemClock(), "me", None, 60.0, 1.0, max_recoveries=3)
    assert await reaper.reap_once() == 2 and calls == ["dead"]
    seconds, _ = await redis.time()
    due = await redis.zscore(keys.retired, "dead")
    assert due is not None and due >= (seconds + 59) * 1000  # (one dead timeout ahead)
    assert await reaper.reap_once() == 0 and calls == ["dead"]  # (not read again)
    await redis.zadd(keys.retired, {"dead": 1})  # (that dead timeout stepped past: no sleep)
    assert await reaper.reap_once() == 0 and calls == ["dead", "dead"]  # (read: still held)
