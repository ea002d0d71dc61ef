"""What a batch handler's end does to its jobs when it is not a plain success or exception
(found by review, /tmp/hunt-long probes): a malformed BatchOutcome or the handler's own
CancelledError killed the batch's task after the handler returned, its jobs never settled and
requeued by the orphan sweep every ~10 s forever, no failure counted; RetryLater counted a
failure for every job. Each test runs one batch and awaits the task that ran it: it must end
without an error, every job settled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import BatchOutcome, Enqueuer, Job, WorkerPool
from errands.errors import BatchJobError, LimiterSnooze, RetryLater
from errands.longwork.batch import BatchRunner
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle, SettleRefused
from tests.support.invariants import assert_invariants

Handler = Callable[[list[Job]], Awaitable[Any]]


async def one_batch(redis: Redis, namespace: str, handler: Handler, n: int = 3) -> list[str]:
    """Run ``handler`` on one batch of ``n`` jobs (max_fails=1, no retry: a failed job goes
    to the dead set), await the task that ran it, check it ended cleanly; the jobs' ids."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=5.0)
    tasks: list[asyncio.Task[Any]] = []

    @pool.batch_job("b", max_size=n, max_wait=0.01, max_fails=1)
    async def b(jobs: list[Job]) -> Any:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        return await handler(jobs)

    enqueuer = Enqueuer(redis, namespace=namespace)
    ids = [f"j{i}" for i in range(n)]
    for job_id in ids:
        await enqueuer.enqueue("b", {}, job_id=job_id)
    async with pool:
        async with asyncio.timeout(10):
            while not tasks:
                await asyncio.sleep(0.01)
            await asyncio.wait(tasks)
        task = tasks[0]
        assert not task.cancelled(), "the batch task ended cancelled: its jobs never settled"
        assert task.exception() is None, f"the batch task died: {task.exception()!r}"
        assert len(tasks) == 1
        await pool.drain(timeout=10)  # (the acks, written by the acknowledger)
    keys = Keys(namespace)
    assert await redis.zcard(keys.queue("b")) == 0
    assert await redis.hgetall(keys.running) in ({}, {b"b": b"0"})
    await assert_invariants(redis, namespace, stopped=True)
    return ids


async def errors(redis: Redis, namespace: str) -> dict[str, str]:
    """The last error of each job that has one: {job id: "Type: message"}."""
    raw = await redis.hgetall(Keys(namespace).errors)
    return {k.decode(): orjson.loads(v)["error"] for k, v in raw.items()}


async def dead(redis: Redis, namespace: str) -> set[str]:
    return {m.decode() for m in await redis.zrange(Keys(namespace).dead, 0, -1)}


async def stats(redis: Redis, namespace: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in (await redis.hgetall(Keys(namespace).stats)).items()}


# -- 1. a malformed BatchOutcome --------------------------------------------------------------


async def test_a_failure_given_as_a_string_fails_its_job_with_that_message(
    redis: Redis, namespace: str
) -> None:
    async def handler(jobs: list[Job]) -> BatchOutcome:
        return BatchOutcome(failed={jobs[0].id: "could not index"})  # type: ignore[dict-item]

    ids = await one_batch(redis, namespace, handler)
    assert await dead(redis, namespace) == {ids[0]}
    assert await errors(redis, namespace) == {ids[0]: "BatchJobError: could not index"}
    assert (await stats(redis, namespace))["processed"] == 2


async def test_a_failure_neither_an_exception_nor_a_string_is_a_type_error_naming_it(
    redis: Redis, namespace: str
) -> None:
    async def handler(jobs: list[Job]) -> BatchOutcome:
        return BatchOutcome(failed={jobs[0].id: 42, jobs[1].id: None})  # type: ignore[dict-item]

    ids = await one_batch(redis, namespace, handler)
    assert await dead(redis, namespace) == {ids[0], ids[1]}
    got = await errors(redis, namespace)
    assert got[ids[0]] == "TypeError: BatchOutcome.failed['j0'] is 42, not an exception"
    assert got[ids[1]] == "TypeError: BatchOutcome.failed['j1'] is None, not an exception"
    assert (await stats(redis, namespace))["processed"] == 1


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (lambda ids: BatchOutcome(failed=set(ids[:1])), "BatchOutcome.failed is a set, not"),
        (lambda ids: BatchOutcome(results=[1, 2, 3]), "BatchOutcome.results is a list, not"),
        (lambda ids: BatchOutcome(failed={"x": ValueError()}), "names ids not of its batch: ['x']"),
        (lambda ids: BatchOutcome(results={1: "r"}), "names ids not of its batch: [1]"),
    ],
    ids=["failed-a-set", "results-a-list", "failed-stray-id", "results-stray-id"],
)
async def test_an_outcome_that_is_no_mapping_of_the_batch_ids_fails_every_job(
    redis: Redis, namespace: str, outcome: Callable[[list[str]], BatchOutcome], message: str
) -> None:
    async def handler(jobs: list[Job]) -> BatchOutcome:
        return outcome([j.id for j in jobs])

    ids = await one_batch(redis, namespace, handler)
    assert await dead(redis, namespace) == set(ids)
    got = await errors(redis, namespace)
    assert all(message in got[i] for i in ids), got
    assert "processed" not in await stats(redis, namespace)


class Exploding(Mapping[str, Any]):
    """A mapping that fails when read (an error of the user's code, after the handler returned)."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("lookup exploded")

    def __iter__(self) -> Iterator[str]:
        return iter(["j0"])

    def __len__(self) -> int:
        return 1


async def test_an_error_reading_the_outcome_fails_every_job(redis: Redis, namespace: str) -> None:
    async def handler(jobs: list[Job]) -> BatchOutcome:
        return BatchOutcome(results=Exploding())

    ids = await one_batch(redis, namespace, handler)
    assert await dead(redis, namespace) == set(ids)
    assert set((await errors(redis, namespace)).values()) == {"RuntimeError: lookup exploded"}


async def test_a_batch_of_one_reads_its_outcome_the_same_way() -> None:
    """``BatchRunner`` called with one job (a batch of one): a string failure is raised as a
    BatchJobError of that message, not as ``raise "..."`` (TypeError: exceptions must derive
    from BaseException), and a stray id is refused."""
    job = Job("b", {}, id="j0", enqueued_at=0.0)
    outcome: Any = BatchOutcome(failed={"j0": "could not index"})

    async def fn(jobs: list[Job]) -> BatchOutcome:
        return outcome

    runner = BatchRunner("b", fn, 10, 0.0)
    with pytest.raises(BatchJobError, match=r"^could not index$"):
        await runner(job)
    outcome = BatchOutcome(results={"j1": 1})
    with pytest.raises(ValueError, match=r"names ids not of its batch: \['j1'\]"):
        await runner(job)
    outcome = BatchOutcome(results={"j0": 7})
    assert await runner(job) == 7


# -- 2. the handler's own CancelledError ------------------------------------------------------


async def test_a_handler_raising_its_own_cancelled_error_fails_the_batch(
    redis: Redis, namespace: str
) -> None:
    """Nobody cancelled the task: the handler awaited a future cancelled elsewhere. As for a
    plain job (worker/outcomes.py _interrupted), that is the handler's failure."""

    async def handler(jobs: list[Job]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    ids = await one_batch(redis, namespace, handler)
    assert await dead(redis, namespace) == set(ids)
    assert set((await errors(redis, namespace)).values()) == {"CancelledError: "}
    assert (await stats(redis, namespace))["dead"] == 3


# -- 3. RetryLater: no failure counted --------------------------------------------------------


async def scheduled(redis: Redis, namespace: str) -> dict[str, float]:
    got = await redis.zrange(Keys(namespace).scheduled("b"), 0, -1, withscores=True)
    return {m.decode(): s for m, s in got}


async def snoozes(redis: Redis, namespace: str, job_id: str) -> tuple[int, int]:
    """The job's stored fails and limiter snoozes (envelope ``f`` and ``s``)."""
    env = orjson.loads(await redis.hget(Keys(namespace).jobs, job_id) or b"{}")
    return int(env.get("f", 0)), int(env.get("s", 0))


@pytest.mark.parametrize("limiter", [False, True])
async def test_a_handler_raising_retry_later_snoozes_every_job(
    redis: Redis, namespace: str, limiter: bool
) -> None:
    async def handler(jobs: list[Job]) -> None:
        if limiter:
            raise LimiterSnooze(60, reason="limiter 'api' over its limit")
        raise RetryLater(60, reason="upstream says 429")

    before = await redis.time()
    ids = await one_batch(redis, namespace, handler)
    due = await scheduled(redis, namespace)
    assert set(due) == set(ids)
    assert all(s >= (before[0] + 59) * 1000 for s in due.values()), due
    assert await stats(redis, namespace) == {}
    assert await errors(redis, namespace) == {}
    assert {await snoozes(redis, namespace, i) for i in ids} == {(0, 1 if limiter else 0)}


async def test_retry_later_in_the_outcome_snoozes_that_job_in_the_same_settle_call(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    report = Scripts.settle_report

    async def counted(
        self: Scripts, pool_id: str, settles: Sequence[Settle]
    ) -> list[bool | SettleRefused]:
        calls.append([s.mode for s in settles])
        return await report(self, pool_id, settles)

    monkeypatch.setattr(Scripts, "settle_report", counted)

    async def handler(jobs: list[Job]) -> BatchOutcome:
        later, bad, _fine = jobs
        return BatchOutcome(failed={later.id: RetryLater(60), bad.id: ValueError("bad")})

    ids = await one_batch(redis, namespace, handler)
    assert calls == [["later", "dead"]]
    assert set(await scheduled(redis, namespace)) == {ids[0]}
    assert await dead(redis, namespace) == {ids[1]}
    assert await stats(redis, namespace) == {"processed": 1, "dead": 1}
    assert await errors(redis, namespace) == {ids[1]: "ValueError: bad"}


# -- 4. a handler that changes its list -------------------------------------------------------


@pytest.mark.parametrize("change", ["pop", "clear", "replace"])
async def test_a_handler_emptying_its_list_of_jobs_still_settles_each_job(
    redis: Redis, namespace: str, change: str
) -> None:
    """The list is the handler's: consumed in chunks (``while jobs: jobs.pop()``), cleared, or
    refilled, each job of the batch is still settled by its outcome. The worker settled the
    jobs left in the list it gave: none, so they stayed in progress until the orphan sweep
    requeued them (~10 s), run again while their pool lived, the same again each time."""

    async def handler(jobs: list[Job]) -> BatchOutcome:
        first = jobs[0].id
        results = {job.id: job.id.upper() for job in jobs}
        if change == "pop":
            while jobs:
                jobs.pop()
        elif change == "clear":
            jobs.clear()
        else:
            jobs[:] = jobs[:1]
        return BatchOutcome(failed={first: ValueError("bad")}, results=results)

    ids = await one_batch(redis, namespace, handler)
    assert await dead(redis, namespace) == {ids[0]}
    assert await stats(redis, namespace) == {"processed": 2, "dead": 1}
    for job_id in ids[1:]:
        record = await Enqueuer(redis, namespace=namespace).result(job_id, timeout=1)
        assert record == job_id.upper()
