"""Issue 14: admin actions on single jobs are one script each (or proven safe by a concurrent
test), and every ending of a job publishes its event and writes its history. The invariant
checker runs after every test of this module."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Client, Job, JobNotFoundError, WorkerPool
from errands.clock import to_ms
from errands.errors import JobChangedError
from errands.store.scripts import Scripts
from tests.support.client_env import Env, traces, until
from tests.support.invariants import assert_invariants


@pytest.fixture(autouse=True)
async def invariants(redis: Redis, namespace: str) -> AsyncIterator[None]:
    yield  # (torn down after the env fixture: its pool is stopped by then)
    await assert_invariants(redis, namespace, context="after the test:")


@pytest.fixture
async def env(redis: Redis, namespace: str) -> AsyncIterator[Env]:
    e = Env(redis, namespace, shutdown_grace=0.5, concurrency=40)
    yield e
    await e.pool.stop()


class Events:
    """Every event published while the block runs (``async with Events(client) as seen``)."""

    def __init__(self, client: Client) -> None:
        self.stream = client.events()
        self.seen: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> list[dict[str, Any]]:
        await self.stream.start()

        async def collect() -> None:
            async for event in self.stream:
                self.seen.append(event)

        self._task = asyncio.create_task(collect())
        return self.seen

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.stream.aclose()

    def of(self, job_id: str) -> list[str]:
        return [e["event"] for e in self.seen if e.get("id") == job_id]


# -- item 2: destroy is one script -----------------------------------------------------------
async def test_destroy_racing_a_failing_attempt_leaves_nothing_to_retry(env: Env) -> None:
    """destroy() used to look the job up, then act: an attempt that failed in between put the
    job into the retry set, destroy() said True, and the retry ran later."""
    runs: Counter[str] = Counter()
    release = asyncio.Event()

    @env.pool.job("flaky", max_fails=5)
    async def flaky(job: Job) -> None:
        runs[job.id] += 1
        await release.wait()
        raise RuntimeError("fails")

    jobs = [await env.enqueuer.enqueue("flaky", {"i": i}) for i in range(30)]
    ids = [j.id for j in jobs if j is not None]
    await env.pool.start()
    await until(lambda: len(runs) == len(ids))
    release.set()  # every attempt fails now, while destroy() looks each job up
    destroyed = await asyncio.gather(*(env.client.destroy(i) for i in ids))
    assert destroyed == [True] * len(ids)
    await env.pool.drain(timeout=5)
    await env.advance(3600)  # a retry that slipped through would run now
    assert set(runs.values()) == {1}
    for job_id in ids:
        assert await traces(env.redis, env.namespace, job_id) == [], job_id


async def test_destroy_of_a_job_only_in_the_dead_set_removes_the_entry(env: Env) -> None:
    """The orphan branch deleted the stored job while its id stayed in the dead set."""
    await env.redis.zadd(env.keys.dead, {"gone": 1})
    await env.redis.hset(env.keys.jobs, "orphan", b'{"n": "ok", "a": {}, "t": 1}')
    await env.redis.zadd(env.keys.dead, {"orphan": 1})
    assert await env.client.destroy("orphan") is True
    assert await env.client.dead_count() == 1
    assert await traces(env.redis, env.namespace, "orphan") == []
    await env.redis.delete(env.keys.dead)


# -- item 1: every ending publishes its event and writes its history -------------------------
async def test_deleting_or_destroying_a_waiting_job_is_published_and_recorded(env: Env) -> None:
    scheduled = await env.enqueuer.enqueue("ok", {"x": 1}, delay=60)
    retrying = await env.enqueuer.enqueue("ok", {"x": 2}, delay=60)
    doomed = await env.enqueuer.enqueue("ok", {"x": 3}, delay=60)
    assert scheduled and retrying and doomed
    # (a job waiting for its retry: as settle leaves it)
    await env.redis.zrem(env.keys.scheduled("ok"), retrying.id)
    await env.redis.zadd(env.keys.retry("ok"), {retrying.id: 1})
    events = Events(env.client)
    async with events:
        assert await env.client.delete_scheduled_job(scheduled.id) is True
        assert await env.client.delete_retry_job(retrying.id) is True
        assert await env.client.destroy(doomed.id) is True
        await until(lambda: len(events.seen) >= 3)
    assert events.of(scheduled.id) == events.of(retrying.id) == ["deleted"]
    assert events.of(doomed.id) == ["deleted"]
    reasons = {e["id"]: e["reason"] for e in events.seen}
    assert reasons[doomed.id] == "destroyed" and reasons[scheduled.id] == "deleted"
    for job in (scheduled, retrying):
        history = await env.client.history_job(job.id)
        assert [(h.attempt, h.status) for h in history] == [(1, "deleted")]
    assert await env.client.history_job(doomed.id) == []  # destroy: every trace goes
    assert await traces(env.redis, env.namespace, doomed.id) == []


async def test_result_answers_at_once_when_a_waiting_job_is_destroyed(env: Env) -> None:
    """result() waited for a terminal event of its job: a destroyed job ended without one, and
    other traffic (an event every 0.2 s) kept the waiter from re-checking until its timeout."""
    job = await env.enqueuer.enqueue("ok", {}, delay=60)
    assert job is not None
    waiter = asyncio.create_task(env.client.result(job.id, timeout=20))
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            await env.enqueuer.enqueue("other", {}, delay=3600)
            await asyncio.sleep(0.2)

    busy = asyncio.create_task(traffic())
    await asyncio.sleep(0.3)  # (the waiter subscribes)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await env.client.destroy(job.id) is True
    with pytest.raises(JobNotFoundError):
        await waiter
    stop.set()
    await busy
    assert loop.time() - began < 5


async def test_destroy_of_a_job_cycling_through_retries_stops_it(env: Env) -> None:
    """A job failing with no backoff moves queue -> running -> retry -> queue all the time:
    destroy() used to look for it in one place after another, gave up after three misses and
    still said True, and the job kept running."""
    runs: Counter[str] = Counter()
    env.pool = WorkerPool(
        env.redis, namespace=env.namespace, concurrency=40, shutdown_grace=0.5, poll_interval=0.01
    )

    @env.pool.job("spin", max_fails=1_000_000, backoff=lambda _n: 0.0)
    async def spin(job: Job) -> None:
        runs[job.id] += 1
        await asyncio.sleep(0)
        raise RuntimeError("again")

    jobs = [await env.enqueuer.enqueue("spin", {"i": i}) for i in range(10)]
    ids = [j.id for j in jobs if j is not None]
    await env.pool.start()
    await until(lambda: all(runs[i] > 5 for i in ids), timeout=20)
    assert await asyncio.gather(*(env.client.destroy(i) for i in ids)) == [True] * len(ids)
    await until(lambda: env.pool.worker is not None and not env.pool.worker.tasks)
    settled = dict(runs)
    await asyncio.sleep(0.5)
    assert dict(runs) == settled  # none of them runs any more
    for job_id in ids:
        assert await traces(env.redis, env.namespace, job_id) == [], job_id


# -- item 9: cancel of a job that finished meanwhile -----------------------------------------
async def test_cancel_of_a_job_that_finished_after_its_lookup_says_finished(env: Env) -> None:
    release = asyncio.Event()

    @env.pool.job("slow")
    async def slow(job: Job) -> str:
        await release.wait()
        return "done"

    job = await env.enqueuer.enqueue("slow", {})
    assert job is not None
    await env.pool.start()
    await until(lambda: env.pool.worker is not None and env.pool.worker.running)
    looked_up = env.client.job

    async def lookup_then_finish(job_id: str) -> Any:
        info = await looked_up(job_id)  # running, at the lookup
        release.set()
        await until(lambda: env.redis.exists(env.keys.done(job_id)))
        return info

    env.client.job = lookup_then_finish  # type: ignore[method-assign]
    assert await env.client.cancel(job.id) == "finished"


# -- item 6 and issue 16: bulk actions on the dead set ---------------------------------------
async def test_retry_all_dead_jobs_is_not_stopped_by_corrupt_entries_at_the_old_end(
    env: Env,
) -> None:
    @env.pool.job("fatal", max_fails=1)
    async def fatal(job: Job) -> None:
        raise ValueError("fatal")

    good = [await env.enqueuer.enqueue("fatal", {"i": i}) for i in range(3)]
    await env.pool.drain(timeout=5)
    assert await env.client.dead_count() == 3
    # 600 corrupt entries, older than every good one
    await env.redis.hset(env.keys.jobs, mapping={f"bad{i}": b"{{{" for i in range(600)})
    await env.redis.zadd(env.keys.dead, {f"bad{i}": i for i in range(600)})
    assert await env.client.retry_all_dead_jobs() == 3
    for job in good:
        assert job is not None
        info = await env.client.job(job.id)
        assert info is not None and info.status == "queued"
    assert await env.client.delete_all_dead_jobs() == 600
    assert await env.client.dead_count() == 0
    await env.pool.drain(timeout=5)
    assert await env.client.delete_all_dead_jobs() == 3


async def test_retry_all_dead_jobs_retries_each_dead_job_once(env: Env) -> None:
    """It re-read the dead set until empty: jobs dying again at once were retried again (three
    dead jobs gave "retry 10")."""
    runs: Counter[str] = Counter()

    @env.pool.job("fatal", max_fails=1)
    async def fatal(job: Job) -> None:
        runs[job.id] += 1
        raise ValueError("fatal")

    for i in range(3):
        await env.enqueuer.enqueue("fatal", {"i": i})
    await env.pool.start()  # (running while the dead jobs are retried: they die again at once)
    await until(async_equal(env.client.dead_count, 3))
    for total in (6, 9, 12):
        assert await env.client.retry_all_dead_jobs() == 3
        await until(lambda: sum(runs.values()) == total)  # noqa: B023
        await until(async_equal(env.client.dead_count, 3))
    assert set(runs.values()) == {4}


def async_equal(read: Any, expected: Any) -> Any:
    async def check() -> bool:
        return bool(await read() == expected)

    return check


# -- suspected: reschedule and the unique lock -----------------------------------------------
async def test_rescheduling_a_unique_job_later_moves_its_lock_expiry(env: Env) -> None:
    """The lock expired a day after the old due time although the job now waits longer: a
    duplicate enqueue_unique slipped in."""
    job = await env.enqueuer.enqueue_unique("ok", {"k": 1}, delay=60)
    assert job is not None
    assert await env.enqueuer.enqueue_unique("ok", {"k": 1}, delay=60) is None
    assert await env.client.reschedule(job.id, env.clock.now() + 3 * 86400) is True
    env.clock.advance(2 * 86400)  # past the old lock expiry, before the new due time
    await Scripts(env.redis, env.keys).unique_gc(to_ms(env.clock.now()))
    assert await env.enqueuer.enqueue_unique("ok", {"k": 1}, delay=60) is None
    assert await env.client.destroy(job.id) is True


async def test_concurrent_retries_of_dead_jobs_keep_every_attempt_recorded(env: Env) -> None:
    """Two operators retry every dead job over and over while the jobs die again at once: each
    retry writes an envelope made from the one it read, and only onto that very one (a retry
    made from an older envelope would renumber the attempts and overwrite their records)."""
    runs: Counter[str] = Counter()

    @env.pool.job("fatal", max_fails=1)
    async def fatal(job: Job) -> None:
        runs[job.id] += 1
        raise ValueError("fatal")

    for i in range(5):
        await env.enqueuer.enqueue("fatal", {"i": i})
    await env.pool.start()
    await until(async_equal(env.client.dead_count, 5))
    other = Client(env.redis, namespace=env.namespace, clock=env.clock)
    for _ in range(8):
        await asyncio.gather(env.client.retry_all_dead_jobs(), other.retry_all_dead_jobs())
    await env.pool.drain(timeout=10)
    await until(async_equal(env.client.dead_count, 5))
    for job_id, n in runs.items():
        history = await env.client.history_job(job_id)
        assert [h.attempt for h in history] == list(range(1, n + 1)), job_id


async def test_a_retry_made_from_an_envelope_read_before_the_job_died_again_moves_nothing(
    env: Env,
) -> None:
    runs: Counter[str] = Counter()

    @env.pool.job("fatal", max_fails=1)
    async def fatal(job: Job) -> None:
        runs[job.id] += 1
        raise ValueError("fatal")

    job = await env.enqueuer.enqueue("fatal", {})
    assert job is not None
    await env.pool.start()
    await until(async_equal(env.client.dead_count, 1))
    other = Client(env.redis, namespace=env.namespace, clock=env.clock)
    move = env.client.scripts.move

    async def late_move(*args: Any, **kwargs: Any) -> bool:
        # meanwhile another operator retries the job, and it dies again
        assert await other.retry_dead_job(job.id)
        await until(lambda: runs[job.id] == 2)
        await until(async_equal(env.client.dead_count, 1))
        return await move(*args, **kwargs)

    env.client.scripts.move = late_move  # type: ignore[method-assign]
    with pytest.raises(JobChangedError):  # (still dead: it said "False", as for no dead job)
        await env.client.retry_dead_job(job.id)
    history = await env.client.history_job(job.id)
    assert [(h.attempt, h.status) for h in history] == [(1, "dead"), (2, "dead")]


# -- pause: one command, checked by the fetch script -----------------------------------------
async def test_no_job_of_a_paused_name_starts_once_pause_returned(env: Env) -> None:
    """Pools fetch all the time while pause() is called: every fetch after it (the paused set is
    read inside the fetch script) takes nothing of that name. A marker published right after
    pause() returned orders it among the `started` events of the fetch scripts."""
    env.pool = WorkerPool(
        env.redis, namespace=env.namespace, concurrency=8, shutdown_grace=0.5, poll_interval=0.01
    )

    @env.pool.job("quick")
    async def quick(job: Job) -> None:
        await asyncio.sleep(0)

    stop = asyncio.Event()

    async def feed() -> None:
        while not stop.is_set():
            await env.enqueuer.enqueue_many([("quick", {})] * 20)
            await asyncio.sleep(0.005)

    events = Events(env.client)
    async with events:
        await env.pool.start()
        feeder = asyncio.create_task(feed())
        await until(lambda: sum(e["event"] == "started" for e in events.seen) > 50)
        await env.client.pause("quick")
        await env.redis.publish(env.keys.events_channel, b'{"event":"marker"}')
        await until(lambda: any(e["event"] == "marker" for e in events.seen))
        await asyncio.sleep(0.3)  # (fetches go on, finding the name paused)
        stop.set()
        await feeder
    after = events.seen[[e["event"] for e in events.seen].index("marker") :]
    assert [e for e in after if e["event"] == "started"] == []
    await env.client.unpause("quick")
    await env.pool.drain(timeout=10)
