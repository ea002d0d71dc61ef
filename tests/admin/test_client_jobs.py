"""Client API for single jobs: status of every kind, listing by status, cancel, destroy,
reschedule, run_scheduled_now, results (without polling) and their TTL, and checkins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import (
    Client,
    Job,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    JobStatus,
)
from tests.support.client_env import Env, traces, until


@pytest.fixture
async def env(redis: Redis, namespace: str) -> AsyncIterator[Env]:
    e = Env(redis, namespace, shutdown_grace=0.5)
    yield e
    await e.pool.stop()


def simple_jobs(env: Env) -> dict[str, list[dict[str, Any]]]:
    """Register ``ok`` (returns its args doubled), ``boom`` (always fails, 3 tries),
    ``fatal`` (fails once for good); returns the calls of each."""
    calls: dict[str, list[dict[str, Any]]] = {"ok": [], "boom": [], "fatal": []}

    @env.pool.job("ok")
    async def ok(job: Job) -> dict[str, Any]:
        calls["ok"].append(job.args)
        return {"doubled": job.args.get("x", 0) * 2}

    @env.pool.job("boom", max_fails=3)
    async def boom(job: Job) -> None:
        calls["boom"].append(job.args)
        raise RuntimeError(f"boom on attempt {job.attempt}")

    @env.pool.job("fatal", max_fails=1)
    async def fatal(job: Job) -> None:
        calls["fatal"].append(job.args)
        raise ValueError("fatal error")

    return calls


class Gate:
    """A handler that records it started, waits for ``release``, then records completion."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.completed: list[str] = []
        self.cancelled: list[str] = []

    async def __call__(self, job: Job) -> str:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(job.id)
            raise
        self.completed.append(job.id)
        return "completed"


# -- job(id) for every status ----------------------------------------------------------------
async def test_job_queued(env: Env) -> None:
    job = await env.enqueuer.enqueue("ok", {"x": 1}, priority=5, meta={"trace": "t1"})
    assert job is not None
    info = await env.client.job(job.id)
    assert info is not None
    assert info.status == JobStatus.QUEUED
    assert (info.id, info.name, info.args, info.priority) == (job.id, "ok", {"x": 1}, 5)
    assert info.meta == {"trace": "t1"}
    assert info.enqueued_at == env.clock.now()
    assert (info.fails, info.attempts, info.error, info.started_at, info.duration) == (
        0,
        0,
        None,
        None,
        None,
    )
    assert not info.corrupt


async def test_job_unknown_id_is_none(env: Env) -> None:
    assert await env.client.job("no-such-job") is None
    assert await env.client.job("0123456789abcdef0123456789abcdef") is None


async def test_job_scheduled(env: Env) -> None:
    job = await env.enqueuer.enqueue("ok", {"x": 1}, delay=90)
    assert job is not None
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.SCHEDULED
    assert info.due_at == pytest.approx(env.clock.now() + 90)


async def test_job_in_progress_has_pool_and_start(env: Env) -> None:
    gate = Gate()
    env.pool.register("slow", gate)
    job = await env.enqueuer.enqueue("slow", {"n": 1})
    assert job is not None
    started = env.clock.now()
    await env.pool.start()
    await until(gate.started.is_set)
    info = await env.client.job(job.id)
    assert info is not None
    assert info.status == JobStatus.IN_PROGRESS
    assert info.pool_id == env.pool.id
    assert info.started_at == pytest.approx(started)
    assert info.attempts == 1 and info.finished_at is None
    gate.release.set()
    await until(lambda: _status(env.client, job.id, JobStatus.FINISHED))


async def _status(client: Client, job_id: str, status: str) -> bool:
    info = await client.job(job_id)
    return info is not None and info.status == status


async def test_job_retrying_has_due_and_last_error(env: Env) -> None:
    simple_jobs(env)
    job = await env.enqueuer.enqueue("boom", {"x": 1})
    assert job is not None
    await env.pool.drain(timeout=5)
    info = await env.client.job(job.id)
    assert info is not None
    assert info.status == JobStatus.RETRYING
    assert info.fails == 1 and info.attempts == 1
    assert info.due_at is not None and info.due_at > env.clock.now()
    assert info.error is not None
    assert info.error["error"] == "RuntimeError: boom on attempt 1"
    assert "Traceback" in info.error["traceback"]
    assert info.error["attempt"] == 1


async def test_job_finished_has_result_times_and_duration(env: Env) -> None:
    @env.pool.job("timed")
    async def timed(job: Job) -> dict[str, int]:
        env.clock.advance(2.5)
        return {"answer": 42}

    job = await env.enqueuer.enqueue("timed", {"q": "life"})
    assert job is not None
    started = env.clock.now()
    await env.pool.drain(timeout=5)
    info = await env.client.job(job.id)
    assert info is not None
    assert info.status == JobStatus.FINISHED
    assert info.result == {"answer": 42}
    assert info.args == {"q": "life"}
    assert info.started_at == pytest.approx(started)
    assert info.finished_at == pytest.approx(started + 2.5)
    assert info.duration == pytest.approx(2.5)
    assert info.attempts == 1 and info.error is None


async def test_job_dead_has_error_and_traceback(env: Env) -> None:
    simple_jobs(env)
    job = await env.enqueuer.enqueue("fatal", {"x": 1})
    assert job is not None
    await env.pool.drain(timeout=5)
    info = await env.client.job(job.id)
    assert info is not None
    assert info.status == JobStatus.DEAD
    assert info.fails == 1
    assert info.finished_at == pytest.approx(env.clock.now())
    assert info.error is not None and info.error["error"] == "ValueError: fatal error"
    assert 'raise ValueError("fatal error")' in info.error["traceback"]


async def test_job_cancelled(env: Env) -> None:
    job = await env.enqueuer.enqueue("ok", {"x": 1})
    assert job is not None
    assert await env.client.cancel(job.id) == "cancelled"
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.CANCELLED
    assert info.finished_at == pytest.approx(env.clock.now())
    assert info.args == {"x": 1}


# -- jobs_by_status / count_by_status --------------------------------------------------------
async def test_jobs_by_status_and_counts(env: Env) -> None:
    calls = simple_jobs(env)
    gate = Gate()
    env.pool.register("slow", gate)
    await env.pool.start()
    finished = await env.enqueuer.enqueue("ok", {"x": 1})
    retrying = await env.enqueuer.enqueue("boom", {"x": 2})
    dead = await env.enqueuer.enqueue("fatal", {"x": 3})
    await env.pool.drain(timeout=5)
    running = await env.enqueuer.enqueue("slow", {})
    await until(gate.started.is_set)
    await env.client.pause("ok")
    queued = [await env.enqueuer.enqueue("ok", {"x": 10 + i}) for i in range(2)]
    scheduled = await env.enqueuer.enqueue("ok", {"x": 20}, delay=60)
    cancelled = await env.enqueuer.enqueue("ok", {"x": 30})
    assert cancelled is not None and await env.client.cancel(cancelled.id) == "cancelled"
    assert None not in (finished, retrying, dead, running, scheduled, *queued)
    assert len(calls["ok"]) == 1

    def ids(page: Any) -> list[str]:
        return [j.id for j in page.items]

    by = env.client.jobs_by_status
    page = await by(JobStatus.QUEUED)
    assert sorted(ids(page)) == sorted(j.id for j in queued if j) and page.total == 2
    assert all(j.status == JobStatus.QUEUED for j in page.items)
    assert ids(await by(JobStatus.SCHEDULED)) == [scheduled.id]  # type: ignore[union-attr]
    assert ids(await by(JobStatus.RETRYING)) == [retrying.id]  # type: ignore[union-attr]
    assert ids(await by(JobStatus.DEAD)) == [dead.id]  # type: ignore[union-attr]
    assert ids(await by(JobStatus.CANCELLED)) == [cancelled.id]
    in_progress = await by(JobStatus.IN_PROGRESS)
    assert ids(in_progress) == [running.id]  # type: ignore[union-attr]
    assert in_progress.items[0].pool_id == env.pool.id
    with pytest.raises(ValueError, match="history"):
        await by(JobStatus.FINISHED)
    with pytest.raises(ValueError, match="unknown status 'nope'"):
        await by("nope")

    counts = await env.client.count_by_status()
    assert counts == {
        JobStatus.QUEUED: 2,
        JobStatus.SCHEDULED: 1,
        JobStatus.IN_PROGRESS: 1,
        JobStatus.RETRYING: 1,
        JobStatus.FINISHED: 1,
        JobStatus.DEAD: 1,
        JobStatus.CANCELLED: 1,
    }
    gate.release.set()


# -- cancel ----------------------------------------------------------------------------------
async def test_cancel_queued_scheduled_and_retrying_jobs_never_run(env: Env) -> None:
    calls = simple_jobs(env)
    retrying = await env.enqueuer.enqueue("boom", {"which": "retrying"})
    assert retrying is not None
    await env.pool.drain(timeout=5)
    assert len(calls["boom"]) == 1
    queued = await env.enqueuer.enqueue("ok", {"which": "queued"})
    scheduled = await env.enqueuer.enqueue("ok", {"which": "scheduled"}, delay=30)
    assert queued is not None and scheduled is not None
    for job in (queued, scheduled, retrying):
        assert await env.client.cancel(job.id) == "cancelled"
        assert await env.client.cancel(job.id) == "already"
    await env.advance(3600)  # everything would be due by now
    assert calls["ok"] == [] and len(calls["boom"]) == 1
    for job in (queued, scheduled, retrying):
        info = await env.client.job(job.id)
        assert info is not None and info.status == JobStatus.CANCELLED
        with pytest.raises(JobCancelledError):
            await env.client.result(job.id, timeout=2)
    assert await env.redis.zcard(env.keys.retry("boom")) == 0
    assert await env.redis.zcard(env.keys.scheduled("ok")) == 0
    assert await env.redis.zcard(env.keys.queue("ok")) == 0


async def test_cancel_releases_unique_lock(env: Env) -> None:
    first = await env.enqueuer.enqueue_unique("u", {"k": 1})
    assert first is not None
    assert await env.enqueuer.enqueue_unique("u", {"k": 1}) is None  # locked
    assert await env.client.cancel(first.id) == "cancelled"
    second = await env.enqueuer.enqueue_unique("u", {"k": 1})
    assert second is not None and second.id != first.id
    later = await env.enqueuer.enqueue_unique("u", {"k": 2}, delay=60)
    assert later is not None and await env.client.cancel(later.id) == "cancelled"
    assert await env.enqueuer.enqueue_unique("u", {"k": 2}, delay=60) is not None


async def test_cancel_running_job_within_a_second_and_not_retried(env: Env) -> None:
    gate = Gate()
    env.pool.register("slow", gate, max_fails=5)
    job = await env.enqueuer.enqueue("slow", {"n": 1})
    assert job is not None
    await env.pool.start()
    await until(gate.started.is_set)
    t0 = time.perf_counter()
    assert await env.client.cancel(job.id) == "running"
    await until(lambda: _status(env.client, job.id, JobStatus.CANCELLED), timeout=1.0)
    assert time.perf_counter() - t0 < 1.0
    assert gate.cancelled == [job.id] and gate.completed == []
    gate.release.set()  # had it not been cancelled, it would complete now
    await env.pool.drain(timeout=5)
    assert gate.completed == []
    assert await env.redis.zcard(env.keys.retry("slow")) == 0
    assert await env.redis.zcard(env.keys.queue("slow")) == 0
    assert await env.redis.zcard(env.keys.in_progress(env.pool.id)) == 0
    assert int(await env.redis.hget(env.keys.running, "slow") or 0) == 0
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.CANCELLED and info.error is None
    with pytest.raises(JobCancelledError):
        await env.client.result(job.id, timeout=2)
    history = await env.client.history_job(job.id)
    assert [h.status for h in history] == ["cancelled"]
    assert await env.client.cancel(job.id) == "already"


async def test_cancel_finished_dead_and_unknown(env: Env) -> None:
    simple_jobs(env)
    ok = await env.enqueuer.enqueue("ok", {"x": 1})
    dead = await env.enqueuer.enqueue("fatal", {})
    assert ok is not None and dead is not None
    await env.pool.drain(timeout=5)
    assert await env.client.cancel(ok.id) == "finished"
    assert await env.client.cancel(dead.id) == "dead"
    with pytest.raises(JobNotFoundError, match="nope"):
        await env.client.cancel("nope")


# -- destroy ---------------------------------------------------------------------------------
async def test_destroy_removes_every_trace(env: Env) -> None:
    simple_jobs(env)
    finished = await env.enqueuer.enqueue("ok", {"x": 1})
    dead = await env.enqueuer.enqueue("boom", {"x": 2})
    assert finished is not None and dead is not None
    await env.pool.drain(timeout=5)
    for _ in range(2):  # attempts 2 and 3: dead
        await env.advance(3600)
    queued = await env.enqueuer.enqueue("ok", {"x": 3})
    scheduled = await env.enqueuer.enqueue("ok", {"x": 4}, delay=60)
    retrying = await env.enqueuer.enqueue("boom", {"x": 5})
    cancelled = await env.enqueuer.enqueue_unique("ok", {"x": 6}, delay=60)
    unique = await env.enqueuer.enqueue_unique("ok", {"x": 7}, delay=60)
    assert queued and scheduled and retrying and cancelled and unique
    await env.client.pause("ok")
    await env.pool.drain(timeout=5)
    await env.client.cancel(cancelled.id)
    statuses = {
        finished.id: JobStatus.FINISHED,
        dead.id: JobStatus.DEAD,
        queued.id: JobStatus.QUEUED,
        scheduled.id: JobStatus.SCHEDULED,
        retrying.id: JobStatus.RETRYING,
        cancelled.id: JobStatus.CANCELLED,
        unique.id: JobStatus.SCHEDULED,
    }
    assert len(await env.client.history_job(dead.id)) == 3
    for job_id, status in statuses.items():
        info = await env.client.job(job_id)
        assert info is not None and info.status == status, job_id
        assert await traces(env.redis, env.namespace, job_id), job_id
        assert await env.client.destroy(job_id) is True
        assert await env.client.job(job_id) is None
        assert await traces(env.redis, env.namespace, job_id) == [], status
        assert await env.client.destroy(job_id) is False
    assert await env.client.history_count() == 0
    assert await env.client.history_count("boom") == 0
    assert await env.enqueuer.enqueue_unique("ok", {"x": 7}, delay=60) is not None


async def test_destroy_running_job(env: Env) -> None:
    gate = Gate()
    env.pool.register("slow", gate)
    job = await env.enqueuer.enqueue("slow", {})
    assert job is not None
    await env.pool.start()
    await until(gate.started.is_set)
    assert await env.client.destroy(job.id) is True
    await until(lambda: gate.cancelled, timeout=1.0)
    await env.pool.drain(timeout=5)
    assert gate.completed == []
    assert await env.client.job(job.id) is None
    assert await traces(env.redis, env.namespace, job.id) == []
    assert await env.client.history_count() == 0


# -- reschedule ------------------------------------------------------------------------------
async def _job_in(env: Env, status: str, calls: dict[str, list[dict[str, Any]]]) -> str:
    """A job of ``flaky`` (fails on its first run only) in ``status``."""
    if status == JobStatus.SCHEDULED:
        job = await env.enqueuer.enqueue("flaky", {"s": status}, delay=600)
    elif status == JobStatus.CANCELLED:
        job = await env.enqueuer.enqueue("flaky", {"s": status}, delay=600)
        assert job is not None
        await env.client.cancel(job.id)
    else:
        job = await env.enqueuer.enqueue(
            "flaky" if status == JobStatus.RETRYING else "flaky_once", {"s": status}
        )
        await env.pool.drain(timeout=5)
    assert job is not None
    info = await env.client.job(job.id)
    assert info is not None and info.status == status
    return job.id


def flaky_jobs(env: Env) -> dict[str, list[dict[str, Any]]]:
    calls: dict[str, list[dict[str, Any]]] = {"flaky": [], "flaky_once": []}

    @env.pool.job("flaky", max_fails=5)
    async def flaky(job: Job) -> str:
        calls["flaky"].append({"attempt": job.attempt, **job.args})
        if job.attempt == 1 and job.args["s"] == JobStatus.RETRYING:
            raise RuntimeError("first run fails")
        return "ok"

    @env.pool.job("flaky_once", max_fails=1)
    async def flaky_once(job: Job) -> str:
        calls["flaky_once"].append({"attempt": job.attempt, **job.args})
        if len(calls["flaky_once"]) == 1:
            raise RuntimeError("dies on the first run")
        return "ok"

    return calls


@pytest.mark.parametrize(
    "status", [JobStatus.SCHEDULED, JobStatus.RETRYING, JobStatus.DEAD, JobStatus.CANCELLED]
)
async def test_reschedule_future_then_past(env: Env, status: str) -> None:
    calls = flaky_jobs(env)
    job_id = await _job_in(env, status, calls)
    runs = len(calls["flaky"]) + len(calls["flaky_once"])
    at = datetime.fromtimestamp(env.clock.now() + 7200, UTC)
    assert await env.client.reschedule(job_id, at) is True
    info = await env.client.job(job_id)
    assert info is not None and info.status == JobStatus.SCHEDULED
    assert info.due_at == pytest.approx(env.clock.now() + 7200)
    await env.advance(3600)  # not due yet
    assert len(calls["flaky"]) + len(calls["flaky_once"]) == runs
    # a time in the past queues it now, and it runs (a naive datetime means UTC)
    past = datetime.fromtimestamp(env.clock.now() - 5, UTC).replace(tzinfo=None)
    assert await env.client.reschedule(job_id, past) is True
    info = await env.client.job(job_id)
    assert info is not None and info.status == JobStatus.QUEUED
    await env.pool.drain(timeout=5)
    assert len(calls["flaky"]) + len(calls["flaky_once"]) == runs + 1
    info = await env.client.job(job_id)
    assert info is not None and info.status == JobStatus.FINISHED, info
    assert await env.client.result(job_id, timeout=2) == "ok"


async def test_reschedule_epoch_seconds(env: Env) -> None:
    job = await env.enqueuer.enqueue("ok", {}, delay=60)
    assert job is not None
    assert await env.client.reschedule(job.id, env.clock.now() + 10) is True
    info = await env.client.job(job.id)
    assert info is not None and info.due_at == pytest.approx(env.clock.now() + 10)


async def test_reschedule_rejects_finished_queued_and_unknown(env: Env) -> None:
    simple_jobs(env)
    finished = await env.enqueuer.enqueue("ok", {})
    assert finished is not None
    await env.pool.drain(timeout=5)
    queued = await env.enqueuer.enqueue("ok", {})
    assert queued is not None
    at = env.clock.now() + 60
    with pytest.raises(ValueError, match=r"is finished; only scheduled, retrying, dead or"):
        await env.client.reschedule(finished.id, at)
    with pytest.raises(ValueError, match=r"is queued; only scheduled"):
        await env.client.reschedule(queued.id, at)
    with pytest.raises(JobNotFoundError):
        await env.client.reschedule("nope", at)


async def test_run_scheduled_now(env: Env) -> None:
    calls = simple_jobs(env)
    job = await env.enqueuer.enqueue("ok", {"x": 5}, delay=3600)
    assert job is not None
    await env.pool.drain(timeout=5)
    assert calls["ok"] == []
    assert await env.client.run_scheduled_now(job.id) is True
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.QUEUED
    await env.pool.drain(timeout=5)  # the clock did not move
    assert calls["ok"] == [{"x": 5}]
    assert await env.client.run_scheduled_now(job.id) is False  # finished now
    with pytest.raises(JobNotFoundError):
        await env.client.run_scheduled_now("nope")


# -- results ---------------------------------------------------------------------------------
async def test_result_is_pushed_not_polled(redis: Redis, namespace: str) -> None:
    env = Env(redis, namespace, poll_interval=30)
    gate = Gate()
    env.pool.register("slow", gate)
    async with env.pool:
        job = await env.enqueuer.enqueue("slow", {})
        assert job is not None
        waiter = asyncio.create_task(job.result(timeout=10))
        await until(gate.started.is_set)
        await asyncio.sleep(0.05)  # the waiter is subscribed and waiting
        t0 = time.perf_counter()
        gate.release.set()
        assert await waiter == "completed"
        elapsed = time.perf_counter() - t0
        # the waiter re-checks only once a second; the result arrived by pub/sub well before
        assert elapsed < 0.4, elapsed
        assert await env.client.result(job.id, timeout=1) == "completed"
        # a quick job end to end, with a pool whose poll interval is 30 s
        t0 = time.perf_counter()
        env2 = await env.enqueuer.enqueue("slow", {})
        assert env2 is not None
        assert await env2.result(timeout=5) == "completed"
        assert time.perf_counter() - t0 < 0.5


async def test_result_of_dead_cancelled_and_timeout(env: Env) -> None:
    simple_jobs(env)
    dead = await env.enqueuer.enqueue("fatal", {})
    assert dead is not None
    waiting = asyncio.create_task(dead.result(timeout=5))
    await asyncio.sleep(0.05)
    await env.pool.drain(timeout=5)
    with pytest.raises(JobFailedError) as caught:
        await waiting
    assert caught.value.error == "ValueError: fatal error"
    assert caught.value.traceback is not None and "ValueError" in caught.value.traceback
    assert caught.value.job_id == dead.id
    with pytest.raises(JobFailedError, match="fatal error"):
        await env.client.result(dead.id, timeout=1)

    never = await env.enqueuer.enqueue("ok", {}, delay=3600)
    assert never is not None
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError):
        await never.result(timeout=0.2)
    assert time.perf_counter() - t0 < 1.0
    cancelling = asyncio.create_task(env.client.result(never.id, timeout=5))
    await asyncio.sleep(0.05)
    await env.client.cancel(never.id)
    with pytest.raises(JobCancelledError):
        await cancelling
    with pytest.raises(JobNotFoundError):
        await env.client.result("nope", timeout=1)


async def test_result_of_a_retried_job_waits_for_the_last_attempt(env: Env) -> None:
    calls = flaky_jobs(env)
    job = await env.enqueuer.enqueue("flaky", {"s": JobStatus.RETRYING})
    assert job is not None
    waiter = asyncio.create_task(job.result(timeout=5))
    await env.pool.drain(timeout=5)
    await asyncio.sleep(0.05)
    assert not waiter.done()  # a failed attempt that will be retried is not the end
    await env.advance(3600)
    assert await waiter == "ok"
    assert len(calls["flaky"]) == 2


async def test_result_ttl_per_job_type(env: Env) -> None:
    @env.pool.job("short", result_ttl=timedelta(minutes=5))
    async def short(job: Job) -> int:
        return 1

    @env.pool.job("default")
    async def default(job: Job) -> int:
        return 2

    @env.pool.job("none", result_ttl=0)
    async def none(job: Job) -> int:
        return 3

    jobs = [await env.enqueuer.enqueue(n, {}) for n in ("short", "default", "none")]
    await env.pool.drain(timeout=5)
    short_id, default_id, none_id = (j.id for j in jobs if j is not None)
    pttl_short = await env.redis.pttl(env.keys.done(short_id))
    pttl_default = await env.redis.pttl(env.keys.done(default_id))
    assert 300_000 - 5_000 < pttl_short <= 300_000
    assert 86_400_000 - 5_000 < pttl_default <= 86_400_000
    assert await env.redis.exists(env.keys.done(none_id)) == 0
    assert await env.client.result(short_id, timeout=1) == 1
    assert await env.client.result(default_id, timeout=1) == 2
    # no record kept: the job is gone, but its history still tells
    assert await env.client.job(none_id) is None
    assert [h.result for h in await env.client.history_job(none_id)] == [3]


async def test_cancelled_record_ttl(env: Env) -> None:
    job = await env.enqueuer.enqueue("ok", {})
    assert job is not None
    await env.client.cancel(job.id)
    assert 86_400_000 - 5_000 < await env.redis.pttl(env.keys.done(job.id)) <= 86_400_000


# -- checkin ---------------------------------------------------------------------------------
async def test_checkin_visible_in_job_and_workers(env: Env) -> None:
    release = asyncio.Event()
    checked = asyncio.Event()

    @env.pool.job("long")
    async def long(job: Job) -> str:
        await job.checkin("processed 10 of 100")
        await job.checkin("processed 50 of 100")
        checked.set()
        await release.wait()
        return "done"

    job = await env.enqueuer.enqueue("long", {"batch": 7})
    assert job is not None
    await env.pool.start()
    await until(checked.is_set)
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.IN_PROGRESS
    assert info.checkin == {"message": "processed 50 of 100", "at": env.clock.now()}
    workers = await env.client.workers()
    assert len(workers) == 1
    w = workers[0]
    assert (w.pool_id, w.job_id, w.job_name, w.args) == (env.pool.id, job.id, "long", {"batch": 7})
    assert w.checkin is not None and w.checkin["message"] == "processed 50 of 100"
    assert w.started_at == pytest.approx(env.clock.now())
    release.set()
    assert await job.result(timeout=5) == "done"
    assert await env.redis.hexists(env.keys.checkins, job.id) == 0
    assert await env.client.workers() == []


async def test_checkin_outside_a_handler_is_an_error() -> None:
    job = Job("x", {}, id="1", enqueued_at=0.0)
    with pytest.raises(RuntimeError, match="inside a running handler"):
        await job.checkin("hi")
    with pytest.raises(RuntimeError, match="not bound"):
        await job.result(timeout=1)


# -- races and odd corners -------------------------------------------------------------------
@pytest.mark.parametrize("when", ["just_after_start", "just_before_start"])
async def test_cancel_racing_the_start_of_the_job(env: Env, when: str) -> None:
    """The cancel message may reach the pool between fetch and the job's task running its
    first line, or even before the pool registered the job at all."""
    gate = Gate()
    env.pool.register("slow", gate)
    await env.pool.start()
    worker = env.pool.worker
    assert worker is not None
    original = worker._start

    pending: set[asyncio.Future[Any]] = set()

    def start(name: str, item: Any) -> None:
        # as cancel.lua does: the request is stored (the attempt runs: fetch recorded it), then
        # the message sent; a message without a stored request is not acted on (issue 14, 4)
        pending.add(
            asyncio.ensure_future(env.redis.hset(env.keys.cancel_requests, item.id, "cancel"))
        )
        if when == "just_before_start":
            worker.cancel_job(item.id)
        original(name, item)
        if when == "just_after_start":
            worker.cancel_job(item.id)

    worker._start = start  # type: ignore[method-assign]
    job = await env.enqueuer.enqueue("slow", {})
    assert job is not None
    await until(lambda: _status(env.client, job.id, JobStatus.CANCELLED), timeout=2)
    gate.release.set()
    await env.pool.drain(timeout=5)
    assert gate.completed == []
    assert await env.redis.zcard(env.keys.in_progress(env.pool.id)) == 0
    assert int(await env.redis.hget(env.keys.running, "slow") or 0) == 0


async def test_cancel_request_during_the_settle_of_a_failure(env: Env) -> None:
    """A cancel arriving while a failed job is being settled must not interrupt the settle
    (that would strand the job in the pool's in-progress set)."""
    simple_jobs(env)
    await env.pool.start()
    worker = env.pool.worker
    assert worker is not None
    original = worker.settler.fail

    async def fail(job: Job, jt: Any, exc: BaseException, started_ms: int) -> str:
        worker.cancel_job(job.id)
        await asyncio.sleep(0.01)  # the cancel takes effect on the next turn of the loop
        return await original(job, jt, exc, started_ms)

    worker.settler.fail = fail  # type: ignore[method-assign]
    job = await env.enqueuer.enqueue("boom", {})
    assert job is not None
    await until(lambda: _status(env.client, job.id, JobStatus.RETRYING))
    assert await env.redis.zcard(env.keys.in_progress(env.pool.id)) == 0


async def test_cancel_running_job_with_timeout_and_middleware(env: Env) -> None:
    seen: list[str] = []

    @env.pool.middleware
    async def swallow(job: Job, call_next: Any) -> Any:
        try:
            return await call_next()
        except Exception as exc:  # must not turn a cancellation into anything else
            seen.append(type(exc).__name__)
            raise

    gate = Gate()
    env.pool.register("slow", gate, timeout=30, max_fails=5)
    job = await env.enqueuer.enqueue("slow", {})
    assert job is not None
    await env.pool.start()
    await until(gate.started.is_set)
    assert await env.client.cancel(job.id) == "running"
    await until(lambda: _status(env.client, job.id, JobStatus.CANCELLED), timeout=1.0)
    assert seen == [] and gate.completed == []
    assert await env.redis.zcard(env.keys.retry("slow")) == 0


async def test_cancel_running_sync_handler(env: Env) -> None:
    """A plain-def handler runs in a thread that cannot be interrupted: the job keeps its slot
    until the thread returns, then settles as cancelled, its return value discarded (issue 14,
    item 3; it used to count as finished), and it is never run again."""
    import threading

    release = threading.Event()
    started = threading.Event()
    finished: list[str] = []

    @env.pool.job("blocking", max_fails=5)
    def blocking(job: Job) -> str:
        started.set()
        release.wait(5)
        finished.append(job.id)
        return "done"

    job = await env.enqueuer.enqueue("blocking", {})
    assert job is not None
    await env.pool.start()
    await until(started.is_set)
    assert await env.client.cancel(job.id) == "running"
    await asyncio.sleep(0.1)
    assert await _status(env.client, job.id, JobStatus.IN_PROGRESS)
    release.set()
    await until(lambda: _status(env.client, job.id, JobStatus.CANCELLED), timeout=2.0)
    assert finished == [job.id]
    await env.pool.drain(timeout=5)
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.CANCELLED and info.result is None
    assert await env.redis.zcard(env.keys.retry("blocking")) == 0
    assert await env.redis.hget(env.keys.cancel_requests, job.id) is None
    assert finished == [job.id]


async def test_result_of_a_dropped_job_raises_its_error(env: Env) -> None:
    @env.pool.job("skipper", max_fails=1, skip_dead=True)
    async def skipper(job: Job) -> None:
        raise RuntimeError("not worth keeping")

    job = await env.enqueuer.enqueue("skipper", {})
    assert job is not None
    waiter = asyncio.create_task(job.result(timeout=5))
    await asyncio.sleep(0.05)
    await env.pool.drain(timeout=5)
    with pytest.raises(JobFailedError, match="not worth keeping"):
        await waiter
    assert await env.client.job(job.id) is None
    assert [h.status for h in await env.client.history_job(job.id)] == ["dropped"]


async def test_destroy_orphaned_envelope(env: Env) -> None:
    await env.redis.hset(env.keys.jobs, "orphan", b'{"n": "ok", "a": {}, "t": 1}')
    info = await env.client.job("orphan")
    assert info is not None and info.status == JobStatus.IN_PROGRESS and info.pool_id is None
    assert await env.client.destroy("orphan") is True
    assert await traces(env.redis, env.namespace, "orphan") == []


async def test_corrupt_envelope_on_a_queue_reports_its_set(env: Env) -> None:
    await env.enqueuer.enqueue("ok", {})  # makes the name known
    await env.redis.hset(env.keys.jobs, "corrupt", b"{{{")
    await env.redis.zadd(env.keys.queue("ok"), {"corrupt": 1})
    info = await env.client.job("corrupt")
    assert info is not None and info.corrupt
    assert (info.status, info.name) == (JobStatus.QUEUED, "ok")
    page = await env.client.jobs_by_status(JobStatus.QUEUED)
    assert {j.id: j.corrupt for j in page.items}["corrupt"] is True
    assert await env.client.cancel("corrupt") == "cancelled"
    assert await env.client.destroy("corrupt") is True
    assert await traces(env.redis, env.namespace, "corrupt") == []


async def test_destroy_after_retry_of_a_dead_job_removes_all_attempts(env: Env) -> None:
    calls = simple_jobs(env)
    job = await env.enqueuer.enqueue("fatal", {})
    assert job is not None
    await env.pool.drain(timeout=5)
    for _ in range(3):
        assert await env.client.retry_dead_job(job.id) is True
        await env.pool.drain(timeout=5)
    assert len(calls["fatal"]) == 4
    attempts = await env.client.history_job(job.id)
    assert [(h.attempt, h.status) for h in attempts] == [(i, "dead") for i in range(1, 5)]
    assert await env.client.destroy(job.id) is True
    assert await traces(env.redis, env.namespace, job.id) == []
