"""Errors of a job's end that killed its task (found by review, /tmp/rv-batch probes 4 and 6),
and a real cancel of a batch task. ``RetryLater(inf)`` / ``nan`` (``to_ms`` raised building the
settle) or ``1e300`` (settle.lua refused the score: the job parked, in progress, logged as
snoozed); an exception whose ``__str__`` raises (the failure's message raised): a batch's task
died, its jobs (all of them: one settle call) unsettled; a plain job's task the same. Now a
RetryLater refuses a delay that is no finite number >= 0 and caps it at ``MAX_DELAY``, a settle
that cannot be built fails its job instead, and an error is formatted whatever its ``__str__``
does."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import BatchOutcome, Enqueuer, FakeClock, Job, WorkerPool
from errands.errors import RetryLater
from errands.store.keys import Keys
from tests.longwork.test_batch_outcomes import dead, errors, one_batch, scheduled, stats


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str exploded")


BAD_STR = "BadStr: <str() failed: RuntimeError>"
NOT_FINITE = "ValueError: RetryLater delay must be a finite number >= 0, not "


@pytest.mark.parametrize("delay", [math.inf, -math.inf, math.nan, -1.0])
def test_retry_later_refuses_a_delay_that_is_no_finite_number_at_least_0(delay: float) -> None:
    with pytest.raises(ValueError, match="RetryLater delay must be a finite number >= 0"):
        RetryLater(delay)


def test_retry_later_caps_its_delay_at_ten_years() -> None:
    assert RetryLater.MAX_DELAY == 10 * 365 * 86400
    assert RetryLater(1e300).delay == RetryLater.MAX_DELAY
    assert str(RetryLater(1e300)) == "retry later, in 3.1536e+08s"
    assert RetryLater(RetryLater.MAX_DELAY - 1).delay == RetryLater.MAX_DELAY - 1


# -- batches ------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", ["inf", "nan"])
async def test_a_batch_handler_raising_retry_later_of_no_finite_delay_fails_every_job(
    redis: Redis, namespace: str, delay: str
) -> None:
    """The ValueError RetryLater raises in the handler is an ordinary failure of the batch."""

    async def handler(jobs: list[Job]) -> None:
        raise RetryLater(float(delay))

    ids = await one_batch(redis, namespace, handler)
    assert await dead(redis, namespace) == set(ids)
    assert {e.startswith(NOT_FINITE) for e in (await errors(redis, namespace)).values()} == {True}
    assert await stats(redis, namespace) == {"dead": 3}


async def test_a_batch_snoozed_for_a_huge_delay_is_snoozed_for_ten_years(
    redis: Redis, namespace: str
) -> None:
    async def handler(jobs: list[Job]) -> None:
        raise RetryLater(1e300)

    now = float((await redis.time())[0])
    ids = await one_batch(redis, namespace, handler)
    due = await scheduled(redis, namespace)
    assert set(due) == set(ids)
    cap = RetryLater.MAX_DELAY * 1000
    assert all(0 <= s - now * 1000 - cap < 60_000 for s in due.values()), due
    assert await stats(redis, namespace) == {}


@pytest.mark.parametrize("delay", [math.inf, math.nan, 1e300, -1.0])
async def test_a_snooze_in_the_outcome_that_cannot_be_settled_fails_that_job_alone(
    redis: Redis, namespace: str, delay: float
) -> None:
    """A RetryLater whose delay was changed after it was made (or a subclass that skipped its
    ``__init__``): its settle cannot be built (or settle.lua would refuse it); that job fails,
    the others of the batch settled in the same call as they are."""

    async def handler(jobs: list[Job]) -> BatchOutcome:
        later = RetryLater(60)
        later.delay = delay
        fine = RetryLater(60)
        return BatchOutcome(
            failed={jobs[0].id: later, jobs[1].id: ValueError("v"), jobs[2].id: fine}
        )

    ids = await one_batch(redis, namespace, handler)
    assert await dead(redis, namespace) == {ids[0], ids[1]}
    assert set(await scheduled(redis, namespace)) == {ids[2]}
    got = await errors(redis, namespace)
    assert got == {ids[0]: "RetryLater: retry later, in 60s", ids[1]: "ValueError: v"}
    assert await stats(redis, namespace) == {"dead": 2}


async def test_a_batch_handler_raising_an_exception_whose_str_raises_fails_every_job(
    redis: Redis, namespace: str
) -> None:
    async def handler(jobs: list[Job]) -> None:
        raise BadStr

    ids = await one_batch(redis, namespace, handler)
    assert await dead(redis, namespace) == set(ids)
    assert await errors(redis, namespace) == dict.fromkeys(ids, BAD_STR)


async def test_an_exception_whose_str_raises_in_the_outcome_fails_its_job(
    redis: Redis, namespace: str
) -> None:
    async def handler(jobs: list[Job]) -> BatchOutcome:
        return BatchOutcome(failed={jobs[0].id: BadStr(), jobs[1].id: ValueError("v")})

    ids = await one_batch(redis, namespace, handler)
    assert await errors(redis, namespace) == {ids[0]: BAD_STR, ids[1]: "ValueError: v"}
    assert await stats(redis, namespace) == {"dead": 2, "processed": 1}


async def test_a_batch_task_cancelled_from_outside_ends_cancelled_no_failure_counted(
    redis: Redis, namespace: str
) -> None:
    """Not the pool's stop (its jobs requeued) nor the handler's own CancelledError (a failure):
    a ``task.cancel()`` of the batch's task is re-raised (batching.py _batch_interrupted). Its
    jobs, no longer held by the batch, stay in progress (the orphan sweep gives them back)."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=5.0)
    tasks: list[asyncio.Task[Any]] = []
    started = asyncio.Event()

    @pool.batch_job("b", max_size=3, max_wait=0.01, max_fails=1)
    async def b(jobs: list[Job]) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        started.set()
        await asyncio.Event().wait()

    enqueuer = Enqueuer(redis, namespace=namespace)
    for i in range(3):
        await enqueuer.enqueue("b", {}, job_id=f"j{i}")
    async with pool:
        async with asyncio.timeout(10):
            await started.wait()
            tasks[0].cancel()
            await asyncio.wait(tasks)
        assert tasks[0].cancelled(), f"the cancel was swallowed: {tasks[0].exception()!r}"
        assert pool.worker is not None and not pool.worker._batches
    assert await dead(redis, namespace) == set()
    assert await errors(redis, namespace) == {}
    assert "dead" not in await stats(redis, namespace)


# -- plain jobs ---------------------------------------------------------------------------------


async def plain_job(redis: Redis, namespace: str, exc: BaseException | None) -> FakeClock:
    """Run one plain job ``j`` (max_fails=1) that raises ``exc`` (or RetryLater(inf), made in
    the handler, for None) until the pool drains."""
    clock = FakeClock()
    pool = WorkerPool(redis, namespace=namespace, clock=clock, concurrency=2)

    @pool.job("a", max_fails=1)
    async def a(job: Job) -> None:
        raise exc if exc is not None else RetryLater(math.inf)

    await Enqueuer(redis, namespace=namespace, clock=clock).enqueue("a", {}, job_id="j")
    async with pool:
        await pool.drain(timeout=10)
    assert await redis.hgetall(Keys(namespace).running) in ({}, {b"a": b"0"})
    return clock


async def test_a_plain_job_raising_retry_later_of_no_finite_delay_fails(
    redis: Redis, namespace: str
) -> None:
    await plain_job(redis, namespace, None)
    assert await dead(redis, namespace) == {"j"}
    got = await errors(redis, namespace)
    assert got["j"] == NOT_FINITE + "inf"


async def test_a_plain_job_snoozed_for_a_huge_delay_is_snoozed_for_ten_years(
    redis: Redis, namespace: str
) -> None:
    clock = await plain_job(redis, namespace, RetryLater(1e300))
    due = await redis.zscore(Keys(namespace).scheduled("a"), "j")
    assert due == int((clock.now() + RetryLater.MAX_DELAY) * 1000)


async def test_a_plain_job_whose_retry_later_delay_was_changed_fails(
    redis: Redis, namespace: str
) -> None:
    later = RetryLater(60)
    later.delay = math.nan
    await plain_job(redis, namespace, later)
    assert await dead(redis, namespace) == {"j"}
    assert await errors(redis, namespace) == {"j": "RetryLater: retry later, in 60s"}


async def test_a_plain_job_raising_an_exception_whose_str_raises_fails(
    redis: Redis, namespace: str
) -> None:
    await plain_job(redis, namespace, BadStr())
    assert await dead(redis, namespace) == {"j"}
    assert await errors(redis, namespace) == {"j": BAD_STR}
