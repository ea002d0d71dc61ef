"""The parked acks of a job name whose own key (its history) holds another type
(ack.lua's ack_name_keys, worker/acker.py, worker/namekeys.py): what a pool does while the key
stays bad, when it stops after the repair, and what the acker logs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Acked
from errands.worker.namekeys import NameKeys
from tests.support.procs import eventually


async def _true(value: bool) -> bool:
    return value


async def _handler(job: Job) -> None:
    return None


async def test_a_bad_names_jobs_are_not_run_and_parked_without_bound(
    redis: Redis, namespace: str
) -> None:
    """hist:bad is a string: each job of `bad` the pool runs is parked (its ack left alone),
    held in memory and in progress until the repair, and run again if the pool is gone first.
    The pool must not go on fetching and running the name's jobs without bound (it did: all
    parked): after many fetch rounds (and rounds of parked acks), most of the name's jobs
    still wait on its queue; once the key is repaired, a round ends the parked ones and the
    others are fetched and run."""
    keys = Keys(namespace)
    await redis.set(keys.history_of("bad"), "x")
    async with Enqueuer(redis, namespace=namespace) as enq:
        for i in range(100):
            await enq.enqueue("bad", {}, job_id=f"b{i}")
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=0.02)
    pool.job("bad")(_handler)
    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.parked_interval = 0.05  # (a minute by default)
        calls = [0]
        fetch = worker._fetch

        async def counted(asked: int, order: Any) -> Any:
            calls[0] += 1
            return await fetch(asked, order)

        worker._fetch = counted  # type: ignore[method-assign]
        acker = worker.acker
        first: list[int] = []  # the jobs run when the first unfit ack came back
        note = acker.bad_keys.note

        async def noted(*args: Any) -> Any:
            if not first:
                first.append(len(acker.parked) + len(acker.pending) + len(acker.inflight))
            return await note(*args)

        acker.bad_keys.note = noted  # type: ignore[method-assign]
        await eventually(lambda: _true(bool(first)), 5, "a bad ack parked")
        # (the jobs run before the first ack's reply, a pool start's script loads and
        # connections included, are parked too: counted from then on)
        ran = first[0]
        calls[0] = 0
        await eventually(lambda: _true(calls[0] >= 12), 5, "fetch rounds after the parking")
        # (a pool's worth, concurrency + lookahead, may be under way then: the name is held
        # from the fetches from that reply on, while its keys' types are read too)
        bound = ran + (worker.concurrency + worker.lookahead)
        left = await redis.zcard(keys.queue("bad"))
        assert len(acker.parked) <= bound and left >= 100 - bound, (
            f"{len(acker.parked)} acks parked ({ran} at the first); {left} of 100 left on the "
            f"queue (concurrency {worker.concurrency}, lookahead {worker.lookahead})"
        )
        await redis.delete(keys.history_of("bad"))  # repaired: the next round fetches again

        async def done() -> bool:
            return int(await redis.hget(keys.stats, "processed") or 0) == 100

        await eventually(done, 5, "the 100 jobs done")
        assert not worker.acker.parked and await redis.zcard(keys.queue("bad")) == 0
    finally:
        await pool.stop(grace=1)


async def test_a_names_parked_acks_log_one_error_not_one_per_job(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/reliability.md: the pool "logs one error per such name", not one per parked job of
    it too ("finished but not acknowledged": a name running thousands of jobs flooded the log
    with thousands of errors). (A job unfit for another reason, a key of its workflow run, is
    still logged on its own: tests/worker/test_ack_unfit_job.py.)"""
    keys = Keys(namespace)
    await redis.set(keys.history_of("bad"), "x")
    async with Enqueuer(redis, namespace=namespace) as enq:
        for i in range(12):
            await enq.enqueue("bad", {}, job_id=f"b{i}")
    caplog.set_level(logging.WARNING, logger="errands.worker")
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=0.02)
    pool.job("bad")(_handler)
    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        await eventually(lambda: _true(len(worker.acker.parked) >= 12), 5, "12 acks parked")
        errors = [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.ERROR and r.name == "errands.worker"
        ]
        assert len(errors) == 1, f"{len(errors)} error lines for one bad key: {errors[:3]}"
        assert errors[0].startswith("job name bad: its jobs' acknowledgements are left alone")
    finally:
        await pool.stop(grace=1)


async def test_a_stop_after_the_repair_acknowledges_the_parked_jobs(
    redis: Redis, namespace: str
) -> None:
    """The key is repaired, then the pool stops before its next round of parked acks (about a
    minute apart): the stop must not leave the parked jobs in progress for a reaper to run
    again (they succeeded, and one ack would end them now). acker.close() waits for pending and
    in-flight acks only, never sends the parked ones."""
    keys = Keys(namespace)
    key = keys.history_of("bad")
    await redis.set(key, "x")
    async with Enqueuer(redis, namespace=namespace) as enq:
        await enq.enqueue("bad", {}, job_id="b0")
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=0.02)
    pool.job("bad")(_handler)
    await pool.start()
    worker = pool.worker
    assert worker is not None
    pool_id = worker.pool_id
    try:
        await eventually(lambda: _true("b0" in worker.acker.parked), 5, "b0's ack parked")
        await redis.delete(key)  # repaired
    finally:
        await pool.stop(grace=1)
    assert await redis.zrange(keys.in_progress(pool_id), 0, -1) == []
    assert int(await redis.hget(keys.stats, "processed") or 0) == 1


async def test_a_stop_while_the_key_is_bad_leaves_the_parked_jobs_in_progress(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The stop's last round of parked acks leaves a job whose key is still bad alone (nothing
    written: in progress, for a reaper once the key is repaired), and says so."""
    keys = Keys(namespace)
    await redis.set(keys.history_of("bad"), "x")
    async with Enqueuer(redis, namespace=namespace) as enq:
        await enq.enqueue("bad", {}, job_id="b0")
    caplog.set_level(logging.WARNING, logger="errands.worker")
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=0.02)
    pool.job("bad")(_handler)
    await pool.start()
    worker = pool.worker
    assert worker is not None
    pool_id = worker.pool_id
    try:
        await eventually(lambda: _true("b0" in worker.acker.parked), 5, "b0's ack parked")
    finally:
        await pool.stop(grace=1)
    assert await redis.zrange(keys.in_progress(pool_id), 0, -1) == [b"b0:bad"]
    assert int(await redis.hget(keys.stats, "processed") or 0) == 0
    assert [r for r in caplog.records if "1 parked acks not acknowledged at the stop" in r.message]


async def test_a_name_still_bad_is_not_logged_repaired_when_its_acks_were_taken_back(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """NameKeys.note logged a name as repaired ("its keys are of their types again") when the
    batch held a job of it that was not unfit; a job of it the fence refused (taken back) is
    not unfit either, though its key is as bad as before: a false repair line, and the next
    parked job of the name logged the error again. Only an acknowledged job of it tells."""
    keys = Keys(namespace)
    await redis.set(keys.history_of("bad"), "x")
    caplog.set_level(logging.WARNING, logger="errands.worker")
    names = NameKeys(redis, keys)

    def acked(job_id: str, name: str) -> Acked:
        return Acked(job_id, name, b"1", 1, 60_000, 1, "t")

    assert await names.note([acked("b0", "bad")], ["b0"], []) == {"bad"}  # parked: logged
    # a later round: b0 was taken back (refused, not unfit), a job of `other` still unfit
    # (its workflow run's key, say): bad's key is still a string
    await names.note([acked("b0", "bad"), acked("o0", "other")], ["o0"], ["b0"])
    repaired = [r.getMessage() for r in caplog.records if "of their types again" in r.getMessage()]
    assert repaired == [], repaired
    assert await redis.type(keys.history_of("bad")) == b"string"
    assert names.logged == {"bad": keys.history_of("bad")}  # (still logged: no second line)
    await redis.delete(keys.history_of("bad"))
    await names.note([acked("b1", "bad")], [], [])  # one of its jobs acknowledged: repaired
    assert [r.getMessage() for r in caplog.records if "of their types again" in r.getMessage()]
