"""docs/observability.md#logging: every errands log line about one job's run carries, in
``extra``, the fields job_id, job_name and attempt (the attempt the line is about); the lines
about a job that never started carry job_id and job_name."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from errands import BatchOutcome, Enqueuer, FakeClock, Job, RetryLater, WorkerPool
from errands.longwork.iterable import _Run
from errands.store.keys import Keys

from .test_task_factory import _refusing_one_job_task
from .test_wake import QUIET, all_idle, make_pools, running, until


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every record of the errands loggers while the test runs."""
    logger, handler = logging.getLogger("errands"), Collect()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def about(records: list[logging.LogRecord], job_id: str) -> list[logging.LogRecord]:
    """The errands records whose message names the job."""
    return [r for r in records if r.name.startswith("errands") and job_id in r.getMessage()]


def check_fields(records: list[logging.LogRecord], job: Job, *, attempt: bool = True) -> None:
    """Each record about ``job`` has its job_id and job_name; with ``attempt``, the attempt
    too: the one the message names ("attempt N"), else that of the attempt settled."""
    lines = about(records, job.id)
    assert lines, f"no line about {job.name}"
    for r in lines:
        message = r.getMessage()
        assert getattr(r, "job_id", None) == job.id, message
        assert getattr(r, "job_name", None) == job.name, message
        if attempt:
            assert isinstance(getattr(r, "attempt", None), int), message
            named = re.search(r"\(attempt (\d+)", message)
            if named:
                assert r.attempt == int(named[1]), message


def bad_backoff(fails: int) -> float:
    raise ArithmeticError("no delay today")


async def test_lines_of_failed_retried_dead_and_snoozed_jobs_carry_the_job_fields(
    redis: Redis, namespace: str, records: list[logging.LogRecord]
) -> None:
    clock = FakeClock()
    pool = WorkerPool(redis, namespace=namespace, clock=clock, concurrency=4)

    @pool.job("flaky", max_fails=2, backoff=bad_backoff)  # failed, retried; then dead
    async def flaky(job: Job) -> None:
        raise RuntimeError(f"boom {job.attempt}")

    @pool.job("nan_snooze", max_fails=1)  # a snooze that cannot be built: failed, dead
    async def nan_snooze(job: Job) -> None:
        exc = RetryLater(5)
        exc.delay = float("nan")
        raise exc

    @pool.job("snoozer")
    async def snoozer(job: Job) -> None:
        raise RetryLater(3600)

    @pool.job("odd_result")  # done, its result stored as null
    async def odd_result(job: Job) -> Any:
        return {1, 2}

    @pool.batch_job("batched", max_size=2, max_fails=2)
    async def batched(jobs: list[Job]) -> BatchOutcome:
        failed = {j.id: RuntimeError("bulk refused") for j in jobs if j.args["n"] == 1}
        return BatchOutcome(failed=failed, results={j.id: {3} for j in jobs if j.args["n"] == 2})

    enqueuer = Enqueuer(redis, namespace=namespace, clock=clock)
    jobs = [
        await enqueuer.enqueue(name, {})
        for name in ("flaky", "nan_snooze", "snoozer", "odd_result")
    ]
    jobs += [await enqueuer.enqueue("batched", {"n": n}) for n in (1, 2)]
    async with pool:
        await pool.drain(timeout=5)
        clock.advance(3600)  # past the default backoff standing in for the bad one
        await pool.drain(timeout=5)
    for job in jobs:
        assert job is not None
        check_fields(records, job)
    messages = [r.getMessage() for r in records]
    for part in ("backoff raised", "cannot snooze", "snoozed 3.6e+03s", "stored as null"):
        assert any(part in m for m in messages), part
    assert any("bulk refused" in m for m in messages) and any("for good" in m for m in messages)


async def test_lines_of_requeued_and_checkpointing_jobs_carry_the_job_fields(
    redis: Redis,
    namespace: str,
    records: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=0.05)
    started = asyncio.Event()

    @pool.job("stuck")  # requeued when the pool stops
    async def stuck(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    @pool.iterable_job("walk", checkpoint_every=0)  # done, its checkpoints not written
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        for i in range(2):
            yield i

    async def unwritable(self: _Run) -> str | None:
        raise RedisConnectionError("checkpoint store away")

    monkeypatch.setattr(_Run, "_write", unwritable)
    enqueuer = Enqueuer(redis, namespace=namespace)
    walked = await enqueuer.enqueue("walk", {})
    held = await enqueuer.enqueue("stuck", {})
    assert walked is not None and held is not None
    async with pool:
        await asyncio.wait_for(started.wait(), 5)
        await until(lambda: any("checkpoint not written" in r.getMessage() for r in records), 5)
    check_fields(records, walked)
    check_fields(records, held)
    assert any("requeued (pool stopping)" in r.getMessage() for r in about(records, held.id))


async def test_a_handed_job_given_back_unstarted_is_logged_with_its_id_and_name(
    redis: Redis, redis_url: str, namespace: str, records: list[logging.LogRecord]
) -> None:
    """A job handed to an idle pool whose task cannot be created (an application's task factory
    raised): it never started, so its line has no attempt."""
    pools, started = make_pools(redis_url, namespace, 1, concurrency=2, poll_interval=QUIET)
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        await all_idle(redis, Keys(namespace), pools)
        loop.set_task_factory(_refusing_one_job_task())
        try:
            job = await enq.enqueue("w")
            await until(lambda: len(started) == 1, timeout=5)
        finally:
            loop.set_task_factory(previous)
    assert job is not None
    assert any("not started" in r.getMessage() for r in about(records, job.id))
    check_fields(records, job, attempt=False)
