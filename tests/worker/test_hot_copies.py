"""The worker's hot path copies a few things for speed: the lookahead's moving mean of run times
(Lookahead._observe) and call_handler's first branch (an async handler taking just the job, run
without middleware) in worker/loop.py, Job.history_attempt's sum in Worker._ack, and
Job.workflow_id's read in Acker.add. Each copy must keep doing what its original does."""

from __future__ import annotations

import contextvars
import math
import types
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool, Workflow
from errands.store.scripts import Acked
from errands.worker.lookahead import Lookahead


async def test_run_keeps_the_mean_as_observe_does(redis: Redis, namespace: str) -> None:
    """Worker._run updates the lookahead's mean inline: as Lookahead._observe would, given each
    job's run time (its Acked.ran_ms)."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=1)

    @pool.job("work")
    async def work(job: Job) -> None: ...

    runs: list[float] = []
    async with pool:
        worker = pool.worker
        assert worker is not None
        add = worker.acker.add

        def spy(acked: Acked, wake: bool) -> None:
            runs.append(acked.ran_ms / 1000)
            add(acked, wake)

        worker.acker.add = spy  # type: ignore[method-assign]
        async with Enqueuer(redis, namespace=namespace) as enqueuer:
            await enqueuer.enqueue_many([("work", {})] * 3)
        await pool.drain(timeout=5)
        ref = types.SimpleNamespace(_mean_run=math.inf)
        for ran in runs:
            Lookahead._observe(ref, ran)  # type: ignore[arg-type]
        assert len(runs) == 3
        assert worker._mean_run == pytest.approx(ref._mean_run, rel=1e-9)


async def _context_in_handler(redis: Redis, namespace: str, middleware: bool) -> list[Any]:
    seen: list[Any] = []
    pool = WorkerPool(redis, namespace=namespace, concurrency=1)
    if middleware:

        @pool.middleware
        async def passthrough(job: Job, next: Any) -> Any:
            return await next()

    @pool.job("ctx")
    async def ctx(job: Job) -> None:
        seen.append(sorted(
            (var.name, value is job) for var, value in contextvars.copy_context().items()
            if var.name.startswith("errands")
        ))  # fmt: skip

    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        await enqueuer.enqueue("ctx", {})
    async with pool:
        await pool.drain(timeout=5)
    return seen


async def test_the_bare_path_sets_what_call_handler_sets(redis: Redis, namespace: str) -> None:
    """Without middleware Worker._run runs call_handler's first branch itself: a handler sees
    the same errands context variables either way."""
    bare = await _context_in_handler(redis, namespace, False)
    through = await _context_in_handler(redis, namespace + "m", True)
    assert bare == through and bare[0]


async def test_acks_carry_history_attempt_and_note_members(redis: Redis, namespace: str) -> None:
    """Worker._ack's attempt is Job.history_attempt; Acker.add notes a workflow member (its
    run's walks go on after the ack) as Job.workflow_id says, and a plain job not."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=1)

    @pool.job("work")
    async def work(job: Job) -> None: ...

    seen: list[tuple[int, int, bool, bool]] = []
    async with pool:
        worker = pool.worker
        assert worker is not None
        acker, add = worker.acker, worker.acker.add

        def spy(acked: Acked, wake: bool) -> None:
            acker._members = False
            add(acked, wake)
            job = acked.job
            seen.append((acked.attempt, job.history_attempt, acker._members, bool(job.workflow_id)))

        acker.add = spy  # type: ignore[method-assign]
        wf = Workflow("one", id="w1")
        wf.add("work", {}, id="a")
        async with Enqueuer(redis, namespace=namespace) as enqueuer:
            await enqueuer.enqueue_workflow(wf)
            await enqueuer.enqueue("work", {})
        await pool.drain(timeout=5)
    assert sorted(seen) == [(1, 1, False, False), (1, 1, True, True)]
