"""A run of a job that ends leaves alone what the worker notes of a later run of the same job in
the same pool (as test_rerun_entry.py for its entry in ``running``): a job snoozed with no delay
goes back on its queue, and this pool fetches it again, and starts it, while the first run's task
still settles. The first run's end dropped the later run's start time (the lookahead then fetched
ahead while it ran long) and its suspect mark (the pool could then take a second job recovered
from dead pools while this one ran: lua/fetch.lua's isolation); and while it settled, its task
passed for the later run's (a thread job's, when the pool stopped; a running one, when the pool
lost its lease)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, RetryLater, WorkerPool
from errands.store.keys import Keys
from errands.worker import lookahead
from errands.worker.loop import Worker
from tests.limits.support import until

Probe = Callable[[Worker, str], Awaitable[None]]


async def rerun_while_settling(
    redis: Redis,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    plain_def: bool = False,
    before_rerun: Probe | None = None,
    while_settling: Probe | None = None,
    after_first: Probe | None = None,
) -> None:
    """Job ``work`` snoozes (no delay) on its first run; its second run, started by this pool
    while the first run's task settles (its snooze held until then), waits until released.
    ``before_rerun`` runs just before the snooze puts it back on its queue, ``while_settling``
    in the first run's task once the second run started (in its thread, with ``plain_def``),
    ``after_first`` once the first run's task ended."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=2)
    release = threading.Event()
    runs: list[str] = []

    def first(job: Job) -> bool:  # (runs one at a time until the second run waits)
        runs.append(job.id)
        return len(runs) == 1

    if plain_def:

        @pool.job("work")
        def work(job: Job) -> None:
            if first(job):
                raise RetryLater(0)
            release.wait(10)

    else:

        @pool.job("work")
        async def work_async(job: Job) -> None:
            if first(job):
                raise RetryLater(0)
            await until(release.is_set, timeout=10)

    async with Enqueuer(redis, namespace=namespace) as enqueuer, pool:
        worker = pool.worker
        assert worker is not None
        snooze, tasks = worker.settler.snooze, worker.tasks
        settling: list[asyncio.Task[Any]] = []  # the first run's task

        def rerun_started(job_id: str) -> bool:
            entry = worker.running.get(job_id)
            if entry is None or entry[1] is settling[0]:
                return False
            return not plain_def or job_id in worker._in_thread

        async def held_snooze(job: Job, exc: RetryLater) -> bool:
            settling.append(asyncio.current_task())  # type: ignore[arg-type]
            if before_rerun is not None:  # (before the snooze: its fetch may come at once)
                await before_rerun(worker, job.id)
            assert await snooze(job, exc)  # (back on its queue)
            await until(lambda: rerun_started(job.id))
            if while_settling is not None:
                await while_settling(worker, job.id)
            return True

        monkeypatch.setattr(worker.settler, "snooze", held_snooze)
        job_id = (await enqueuer.enqueue("work")).id
        # (ended, and its end handled: its done callback freed its slot)
        await until(lambda: bool(settling) and settling[0].done() and settling[0] not in tasks)
        try:
            if after_first is not None:
                await after_first(worker, job_id)
        finally:
            release.set()
        await until(lambda: not worker.tasks)
        assert runs == [job_id, job_id]


async def test_the_end_of_a_run_leaves_a_later_runs_start_time(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def after_first(worker: Worker, job_id: str) -> None:
        assert worker.running[job_id][1] in worker.tasks  # (the later run goes on)
        # its start counted in the lookahead: once it ran for BUFFER_MAX_WAIT (0 s here),
        # nothing is fetched ahead (main: its start time gone with the first run's end)
        monkeypatch.setattr(lookahead, "BUFFER_MAX_WAIT", 0.0)
        assert worker._mean_run < lookahead.LOOKAHEAD_MAX_RUN
        assert len(worker._started_at) == 1
        assert worker.lookahead == 0

    await rerun_while_settling(redis, namespace, monkeypatch, after_first=after_first)


async def test_the_end_of_a_run_leaves_a_later_runs_suspect_mark(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks: list[int] = []

    async def recovered(worker: Worker, job_id: str) -> None:
        # taken back from dead pools meanwhile (as another pool that fetched it died): its next
        # run here is a suspect (the pool's max_recoveries of 3 isolates 2 recoveries)
        await redis.hset(Keys(namespace).recoveries, job_id, 2)

    async def marked(worker: Worker, job_id: str) -> None:
        marks.append(len(worker._suspects))  # what the next fetch sends as suspects

    await rerun_while_settling(
        redis,
        namespace,
        monkeypatch,
        before_rerun=recovered,
        while_settling=marked,
        after_first=marked,
    )
    # the later run a suspect, before and after the first run's end (main: [1, 0], and a
    # second suspect could then start beside it)
    assert marks == [1, 1]


async def test_a_settling_run_is_not_taken_for_a_later_run_in_its_thread(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, bool, list[str]]] = []

    async def while_settling(worker: Worker, job_id: str) -> None:
        threads = worker.thread_tasks(set(worker.tasks))
        jobs = [worker.thread_job(t).id for t in threads]
        seen.append((len(worker.tasks), asyncio.current_task() in threads, jobs))

    await rerun_while_settling(
        redis, namespace, monkeypatch, plain_def=True, while_settling=while_settling
    )
    # both tasks held, the later run's alone in a thread (main: the settling one too)
    [(tasks, settling_in_thread, jobs)] = seen
    assert (tasks, settling_in_thread, len(jobs)) == (2, False, 1)


async def test_a_settling_run_is_not_counted_as_running_when_the_lease_is_lost(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts: list[tuple[int, int, int]] = []

    async def while_settling(worker: Worker, job_id: str) -> None:
        counts.append(worker.abandon(keep_acks=True))

    await rerun_while_settling(redis, namespace, monkeypatch, while_settling=while_settling)
    assert counts == [(1, 0, 0)]  # the later run alone cancelled while running (main: 2)
