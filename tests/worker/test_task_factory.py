"""An application's own task factory keeps working under a pool: one written the older way,
`factory(loop, coro)` with no `context` keyword (aiotask-context and the like), is called for every
job task, and the pool runs its jobs."""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.records import Fetched

from .test_wake import QUIET, all_idle, handed, make_pools, running, until

Factory = Any  # a task factory: (loop, coro) -> Task


async def _drain_under(
    redis: Redis,
    namespace: str,
    factory: Factory,
    pool: WorkerPool | None = None,
    jobs: int = 8,
    inside: Callable[[WorkerPool], None] | None = None,
) -> list[int]:
    """Run `jobs` jobs on a pool (concurrency 4, unless given) while the loop has `factory` as its
    task factory; the numbers of the jobs that ran, once the pool drained and stopped."""
    loop = asyncio.get_running_loop()
    pool = pool or WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=0.5)
    done: list[int] = []

    @pool.job("work")
    async def work(job: Job, n: int) -> None:
        done.append(n)

    await Enqueuer(redis, namespace=namespace).enqueue_many(
        [("work", {"n": i}) for i in range(jobs)]
    )
    previous = loop.get_task_factory()
    loop.set_task_factory(factory)
    try:
        async with pool:
            await pool.drain(timeout=5)
            if inside is not None:
                inside(pool)
    finally:
        loop.set_task_factory(previous)
    return sorted(done)


class _refusing_one_job_task:
    """A task factory that raises for the first job task (Worker._run) and creates the rest."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        if not self.failed and getattr(coro, "__qualname__", "").endswith("_run"):
            self.failed.append(coro.__qualname__)
            coro.close()
            raise RuntimeError("no task for you")
        return asyncio.Task(coro, loop=loop)


async def test_a_task_factory_without_context_keyword_runs_the_jobs(
    redis: Redis, namespace: str
) -> None:
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        made.append(getattr(coro, "__qualname__", ""))
        return asyncio.Task(coro, loop=loop)

    assert await _drain_under(redis, namespace, factory) == list(range(8))
    assert any(name.endswith("_run") for name in made)


async def test_a_job_task_started_inside_the_creation_of_another(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An eager task factory (Python 3.12's asyncio.eager_task_factory) runs a job task's first
    step inside create_task: a job that ends there starts the next held job from within the
    creation of its own task. Simulated here by a factory that has the pool create a task while
    it creates one (entering the pool's context a second time raised RuntimeError)."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=0.5)
    inner: list[asyncio.Task[Any]] = []

    async def aside() -> None:
        pass

    def factory(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop)
        worker = pool.worker
        if worker is not None and not inner and getattr(coro, "__qualname__", "").endswith("_run"):
            inner.append(task)
            worker._spawn(aside(), None, "aside")  # (the next job, started in a freed slot)
        return task

    with caplog.at_level(logging.WARNING, logger="errands"):
        done = await _drain_under(redis, namespace, factory, pool=pool, jobs=4)
    assert inner and done == list(range(4))
    worker_logs = [r for r in caplog.records if r.name == "errands.worker"]
    assert not [r for r in worker_logs if r.levelno >= logging.WARNING], caplog.text


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory: Python 3.12+")
async def test_an_eager_task_factory_leaves_no_job_behind_as_running(
    redis: Redis, namespace: str
) -> None:
    """Under an eager task factory a handler that never awaits ends inside create_task: the job is
    not left in the pool's running jobs (which every cancel poll walks) once it is done."""

    def no_job_left_running(pool: WorkerPool) -> None:
        assert pool.worker is not None
        assert pool.worker.running == {}

    factory = asyncio.eager_task_factory  # type: ignore[attr-defined,unused-ignore]
    done = await _drain_under(redis, namespace, factory, inside=no_job_left_running)
    assert done == list(range(8))


@types.coroutine
def _resumed(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """The rest of `coro`, whose first step ran already and yielded `yielded`, as a coroutine a
    Task can run."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # (a cancel: passed on)
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


def _eager_job_tasks(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
    """On Python 3.11, a task factory that, as 3.12's eager_task_factory, runs a job task's first
    step inside create_task (of Worker._run only: the rest as usual). Not the same in all: during
    that step the current task is the caller's (asyncio.timeout in it would time the caller), and
    a coroutine ended there comes back as a task not yet done."""
    if not getattr(coro, "__qualname__", "").endswith("_run"):
        return asyncio.Task(coro, loop=loop)
    try:
        yielded = coro.send(None)
    except StopIteration:

        async def ended() -> None:
            pass

        return asyncio.Task(ended(), loop=loop)
    return asyncio.Task(_resumed(coro, yielded), loop=loop)


# the real one where there is one
EAGER: Factory = getattr(asyncio, "eager_task_factory", _eager_job_tasks)


async def test_a_job_that_fails_in_its_first_step_is_not_left_as_running(
    redis: Redis, namespace: str
) -> None:
    """Under an eager task factory a handler that raises before its first await ends inside
    create_task, and its task goes on settling the failure (a Redis call): the job is not noted
    as running once create_task returns (it stayed in the pool's running jobs for good, walked
    by every cancel poll, a cancel of its retry looking there)."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=0.5)
    failed: list[int] = []

    @pool.job("boom", max_fails=1)
    async def boom(job: Job, n: int) -> None:
        failed.append(n)
        raise ValueError("boom")

    await Enqueuer(redis, namespace=namespace).enqueue_many([("boom", {"n": i}) for i in range(6)])
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    loop.set_task_factory(EAGER)
    try:
        async with pool:
            await pool.drain(timeout=5)
            assert pool.worker is not None
            assert sorted(failed) == list(range(6))
            assert pool.worker.running == {}
            assert not pool.worker._ended_unheld
    finally:
        loop.set_task_factory(previous)


async def test_an_eagerly_run_job_that_awaits_is_running_until_its_handler_ends(
    redis: Redis, namespace: str
) -> None:
    """The same factory, a handler that awaits: noted running while it waits, not after."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=0.5)
    seen: list[bool] = []

    @pool.job("wait")
    async def wait(job: Job) -> None:
        await asyncio.sleep(0)
        assert pool.worker is not None
        seen.append(job.id in pool.worker.running)

    await Enqueuer(redis, namespace=namespace).enqueue_many([("wait", {}) for _ in range(4)])
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    loop.set_task_factory(EAGER)
    try:
        async with pool:
            await pool.drain(timeout=5)
            assert pool.worker is not None
            assert seen == [True] * 4 and pool.worker.running == {}
    finally:
        loop.set_task_factory(previous)


async def test_a_run_that_finds_no_running_entry_outside_create_task_marks_nothing(
    redis: Redis, namespace: str
) -> None:
    """Without an eager factory: the same job started twice (a later run fetched while the first
    one's handler still ran) has its first run take the later run's running entry; the later run
    then finds none as its handler ends. It ended outside create_task: nothing is marked (marked,
    its id() stayed, and a later job given the same address was left out of running)."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=0.5)
    gate = asyncio.Event()
    runs: list[str] = []

    @pool.job("w")
    async def w(job: Job) -> None:
        runs.append(job.id)
        await gate.wait()

    await Enqueuer(redis, namespace=namespace).enqueue("w")
    async with pool:
        worker = pool.worker
        assert worker is not None
        await until(lambda: bool(worker.running), timeout=5)
        ((job_id, (job, _task)),) = worker.running.items()
        worker._start("w", Fetched(1, job_id, job._raw or b"", job._attempt))
        await until(lambda: len(runs) == 2, timeout=5)
        gate.set()
        await until(lambda: not worker.tasks, timeout=5)
        assert worker.running == {} and not worker._ended_unheld


async def test_a_job_task_that_cannot_be_created_leaves_the_pool_fetching(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An application's task factory that raises for one job task: the error is logged and the
    fetch loop goes on; that job and the others of its fetch, left unheld, go back to their
    queue (the orphan sweep) and run. (The fetch loop ended: the pool fetched nothing more.)"""
    factory = _refusing_one_job_task()
    with caplog.at_level(logging.WARNING, logger="errands"):
        done = await _drain_under(redis, namespace, factory)
    assert factory.failed and done == list(range(8))
    assert "no task for you" in caplog.text


async def test_a_handed_job_whose_task_cannot_be_created_keeps_the_hand_offs(
    redis: Redis, redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The same for a job an enqueue handed to an idle pool (lib/handoff.lua): the error ended the
    pool's hand-off reader (no more hand-offs; the job came back by the 10 s orphan sweep). Now it
    is logged, the job goes back to its queue at once and runs, and the next one is handed off."""
    keys = Keys(namespace)
    pools, started = make_pools(redis_url, namespace, 1, concurrency=2, poll_interval=QUIET)
    pool = pools[0]
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    with caplog.at_level(logging.WARNING, logger="errands"):
        async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
            await all_idle(redis, keys, pools)
            loop.set_task_factory(_refusing_one_job_task())
            try:
                await enq.enqueue("w")
                await until(lambda: len(started) == 1, timeout=5)  # (not the 10 s sweep)
                assert handed(pool) == 1
                await all_idle(redis, keys, pools)
                await enq.enqueue("w")
                await until(lambda: len(started) == 2, timeout=5)
                assert handed(pool) == 2
            finally:
                loop.set_task_factory(previous)
    assert "no task for you" in caplog.text


async def test_a_suspect_whose_task_cannot_be_created_runs_later(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A suspect (taken back from dead pools before: run alone, lua/fetch.lua) whose task the
    application's factory refuses: its mark goes with it, so the pool takes suspects again and
    the job, back on its queue, runs. (Before, the mark stayed: the pool told every fetch it ran
    a suspect, and no fetch gave it one again: the job stayed queued.)"""
    loop = asyncio.get_running_loop()
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, shutdown_grace=0.5)
    done: list[str] = []

    @pool.job("work")
    async def work(job: Job) -> None:
        done.append(job.id)

    job = await Enqueuer(redis, namespace=namespace).enqueue("work")
    assert job is not None
    await redis.hset(Keys(namespace).recoveries, job.id, 2)  # (max_recoveries 3: isolated)
    factory = _refusing_one_job_task()
    previous = loop.get_task_factory()
    loop.set_task_factory(factory)
    try:
        with caplog.at_level(logging.WARNING, logger="errands"):
            async with pool:
                await pool.drain(timeout=5)
                assert pool.worker is not None and not pool.worker._suspects
    finally:
        loop.set_task_factory(previous)
    assert factory.failed and done == [job.id]
