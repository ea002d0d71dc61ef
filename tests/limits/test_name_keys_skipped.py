"""A job name's own key of another type (its queue, a key of its limits, its idle set: written by
hand, a bad restore) skips that name alone, as a `running` count that is not a counter does: the
fetch takes nothing of it and writes nothing of it, serves the other names, and its reply names
the key (``FetchResult.skipped_keys``). It failed the whole fetch with a WRONGTYPE error: no job
of any name was fetched until the key was repaired. A partition index entry written by hand (no
queue score, or no partition) is passed as stale: it raised after the fetch's first write."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from errands import Concurrency, Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.procs import eventually
from tests.support.ready import ready_to_fetch

# every key of a name a fetch touches (fetch.lua's KEYS[19..]: eight per name)
FAMILIES = ["queue", "partition_queue", "partitions_ready", "partitions_waiting",
            "partitions_running", "rate_log", "rate_expiry", "idle_for"]  # fmt: skip
SPEC = "c=1;r=5/60000;R=5/60000"  # (every limits key of the name read)


@pytest.mark.parametrize("batch", [1, 10], ids=["all-asked", "fewer"])
@pytest.mark.parametrize("bad_first", [True, False], ids=["bad-first", "bad-last"])
@pytest.mark.parametrize("family", FAMILIES)
async def test_a_name_key_of_another_type_skips_its_name_alone(
    redis: Redis, namespace: str, family: str, bad_first: bool, batch: int
) -> None:
    keys = Keys(namespace)
    jobs = [("bad", {}, {"partition": "a"}), ("bad", {}, {}), ("good", {}, {})]
    scripts = await ready_to_fetch(redis, namespace, jobs)
    await redis.zadd(keys.idle_for("bad"), {"p": -1e15})  # (an idle mark of the pool's)
    key = getattr(keys, family)("bad")
    await redis.delete(key)
    await redis.set(key, "x")
    own = [getattr(keys, f)("bad") for f in FAMILIES if f != "idle_for"]
    before = [await redis.dump(k) for k in own]
    queues = [("bad", 0), ("good", 0)] if bad_first else [("good", 0), ("bad", 0)]
    got = await scripts.fetch("p", 1, batch, queues, specs={"bad": SPEC})
    assert got is not None and len(got) == 1 and got[0].queue_index == (2 if bad_first else 1)
    assert got.skipped_keys == {"bad": key} and got.skipped == {}
    assert [await redis.dump(k) for k in own] == before  # nothing of it written
    assert await redis.hget(keys.running, "bad") is None
    assert await redis.hget(keys.running, "good") == b"1"
    if family != "idle_for":  # its idle mark goes: an enqueue of it wakes not this pool
        assert await redis.zscore(keys.idle_for("bad"), "p") is None
    assert await redis.get(key) == b"x"
    await redis.delete(key)  # repaired: its jobs are fetched
    again = await scripts.fetch("p", 1, 10, [("bad", 0)], specs={"bad": SPEC})
    assert again is not None and again.skipped_keys == {}
    assert len(again) >= (0 if family == "queue" else 1)  # (a queue deleted: its jobs unqueued)


async def test_a_partition_entry_without_a_score_is_passed_as_stale(
    redis: Redis, namespace: str
) -> None:
    """Partition a's head is looked up in its index (not in the queue's first entries), where
    an entry written by hand sorts first: its score is not a number."""
    keys = Keys(namespace)
    jobs = [("other", {}, {})] + [("sms", {}, {"partition": p}) for p in "bba"]
    scripts = await ready_to_fetch(redis, namespace, jobs)
    bogus = "a\0" + "!" * 16 + "\0bogus"
    await redis.zadd(keys.partition_queue("sms"), {bogus: 0})
    got = await scripts.fetch("p", 1, 3, [("other", 0), ("sms", 0)], specs={"sms": "c=1"})
    assert got is not None and len(got) == 3  # other's job, b's head, a's head
    assert await redis.zscore(keys.partition_queue("sms"), bogus) is None


async def test_an_index_entry_of_no_partition_does_not_fail_the_pruning(
    redis: Redis, namespace: str
) -> None:
    """The turns are pruned when the index holds fewer entries than there are turns: each
    entry's partition ends at its first NUL, which an entry written by hand lacks."""
    keys = Keys(namespace)
    jobs = [("other", {}, {})] + [("sms", {}, {"partition": p}) for p in "abc"]
    scripts = await ready_to_fetch(redis, namespace, jobs)
    await redis.zadd(keys.partition_queue("sms"), {"garbage": 0})
    got = await scripts.fetch("p", 1, 3, [("other", 0), ("sms", 0)], specs={"sms": "c=1"})
    assert got is not None and len(got) == 3
    assert await redis.zscore(keys.partitions_ready("sms"), "c") is not None  # c's job waits


def _lines(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.name == "errands.worker" and text in r.getMessage()
    ]


async def _true(value: bool) -> bool:
    return value


async def test_a_pool_logs_the_key_once_and_serves_the_name_once_repaired(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every fetch of the pool failed, for both names, until the key was repaired."""
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=0.05)
    ran: list[str] = []

    @pool.job("good")
    async def good(job: Job) -> None:
        ran.append(job.id)

    @pool.job("bad", limits=[Concurrency(1, per_partition=True)])
    async def bad(job: Job) -> None:
        ran.append(job.id)

    async with Enqueuer(redis, namespace=namespace) as enq:
        for i in range(3):
            await enq.enqueue("good", {}, job_id=f"g{i}")
            await enq.enqueue("bad", {}, job_id=f"b{i}", partition=f"k{i}")
    key = keys.partitions_waiting("bad")
    await redis.set(key, "x")
    caplog.set_level(logging.INFO, logger="errands.worker")
    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        fetches = [0]
        note = worker._note_skipped

        def counted(*args: object) -> None:
            fetches[0] += 1
            note(*args)  # type: ignore[arg-type]

        worker._note_skipped = counted  # type: ignore[method-assign]
        await eventually(lambda: _true(sorted(ran) == ["g0", "g1", "g2"]), 5, "the good jobs")
        await eventually(lambda: _true(fetches[0] >= 5), 5, "fetches that skip bad")
        assert sorted(ran) == ["g0", "g1", "g2"]
        errors = _lines(caplog, logging.ERROR, "job name bad is not fetched")
        assert len(errors) == 1, errors
        assert f"its key {key} holds another type" in errors[0] and f"DEL {key}" in errors[0]
        await redis.delete(key)  # repaired
        await eventually(lambda: _true(len(ran) == 6), 5, "the bad jobs, once repaired")
        assert _lines(caplog, logging.WARNING, "job name bad: its keys are of their types again")
    finally:
        await pool.stop()
