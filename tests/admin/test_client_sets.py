"""Client API over sets and processes: scheduled/retry/dead pages and actions, corrupt entries,
queues, pools, workers, pause, redis_info, the attempt history and its trimming, and events."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, FixedBackoff, Job, JobStatus, LinearBackoff
from errands.admin.jobinfo import WorkerInfo
from errands.store.keys import Keys
from tests.support.client_env import Env, traces, until
from tests.support.commandstats import command_calls


@pytest.fixture
async def env(redis: Redis, namespace: str) -> AsyncIterator[Env]:
    e = Env(redis, namespace, shutdown_grace=0.5)
    yield e
    await e.pool.stop()


def register(env: Env) -> dict[str, list[int]]:
    """``ok`` returns its args; ``boom`` fails (3 tries, fixed 60 s backoff); ``fatal`` dies at
    once; ``heal`` fails while ``env.pool.context['broken']`` is true (2 tries)."""
    calls: dict[str, list[int]] = {"ok": [], "boom": [], "fatal": [], "heal": []}
    env.pool.context["broken"] = True

    @env.pool.job("ok")
    async def ok(job: Job) -> dict[str, Any]:
        calls["ok"].append(job.attempt)
        return job.args

    @env.pool.job("boom", max_fails=3, backoff=FixedBackoff(60))
    async def boom(job: Job) -> None:
        calls["boom"].append(job.attempt)
        raise RuntimeError(f"boom {job.attempt}")

    @env.pool.job("fatal", max_fails=1)
    async def fatal(job: Job) -> None:
        calls["fatal"].append(job.attempt)
        raise ValueError("fatal")

    @env.pool.job("heal", max_fails=2, backoff=LinearBackoff(10))
    async def heal(job: Job) -> str:
        calls["heal"].append(job.attempt)
        if job.context["broken"]:
            raise RuntimeError(f"broken on attempt {job.attempt}")
        return f"healed on attempt {job.attempt}"

    return calls


# -- paging ----------------------------------------------------------------------------------
async def test_scheduled_pages_merge_job_names_in_due_order(env: Env) -> None:
    names = ["alpha", "beta", "gamma"]
    jobs = [
        await env.enqueuer.enqueue(names[i % 3], {"i": i}, delay=1000 - 7 * i) for i in range(45)
    ]
    expected = [j.id for j in sorted(jobs, key=lambda j: j.run_at or 0) if j]
    seen: list[str] = []
    for page_no, size in ((1, 20), (2, 20), (3, 5)):
        page = await env.client.scheduled_jobs(page_no)
        assert (page.total, page.page, page.per_page, page.pages) == (45, page_no, 20, 3)
        assert len(page.items) == size
        assert all(j.status == JobStatus.SCHEDULED for j in page.items)
        dues = [j.due_at or 0 for j in page.items]
        assert dues == sorted(dues)
        seen += [j.id for j in page.items]
    assert seen == expected
    beyond = await env.client.scheduled_jobs(4)
    assert (beyond.items, beyond.total) == ([], 45)
    assert (await env.client.scheduled_jobs(99)).items == []
    assert [j.id for j in (await env.client.scheduled_jobs(0)).items] == expected[:20]
    assert (await env.client.jobs_by_status(JobStatus.SCHEDULED, 3)).total == 45


async def test_retry_pages_merge_job_names(env: Env) -> None:
    register(env)

    @env.pool.job("boom2", max_fails=3, backoff=FixedBackoff(30))
    async def boom2(job: Job) -> None:
        raise RuntimeError("boom2")

    for i in range(25):
        await env.enqueuer.enqueue("boom" if i % 2 else "boom2", {"i": i})
    await env.pool.drain(timeout=5)
    first, second, third = [await env.client.retry_jobs(p) for p in (1, 2, 3)]
    assert (first.total, len(first.items), len(second.items), third.items) == (25, 20, 5, [])
    items = first.items + second.items
    assert {j.name for j in items} == {"boom", "boom2"}
    assert [j.due_at for j in items] == sorted(j.due_at or 0 for j in items)
    assert items[0].name == "boom2"  # due in 30 s, before every boom (60 s)
    assert all(j.status == JobStatus.RETRYING and j.error for j in items)
    assert items[-1].error is not None and items[-1].error["error"] == "RuntimeError: boom 1"


async def test_dead_pages_newest_first(env: Env) -> None:
    register(env)
    for i in range(23):
        await env.enqueuer.enqueue("fatal", {"i": i})
        await env.pool.drain(timeout=5)
        env.clock.advance(1)
    first, second, third = [await env.client.dead_jobs(p) for p in (1, 2, 3)]
    assert (first.total, len(first.items), len(second.items), third.items) == (23, 20, 3, [])
    order = [j.args["i"] for j in first.items + second.items]
    assert order == list(range(22, -1, -1))
    assert all(j.error and j.error["error"] == "ValueError: fatal" for j in first.items)
    assert await env.client.dead_count() == 23


# -- actions on the sets ---------------------------------------------------------------------
async def test_delete_scheduled_retry_and_dead_jobs(env: Env) -> None:
    register(env)
    retrying = await env.enqueuer.enqueue("boom", {})
    dead = await env.enqueuer.enqueue("fatal", {})
    await env.pool.drain(timeout=5)
    scheduled = await env.enqueuer.enqueue("ok", {}, delay=60)
    assert retrying and dead and scheduled
    # each delete works only on its own set
    assert await env.client.delete_dead_job(scheduled.id) is False
    assert await env.client.delete_retry_job(scheduled.id) is False
    assert await env.client.delete_scheduled_job(dead.id) is False
    assert await env.client.delete_scheduled_job("nope") is False
    assert await env.client.delete_retry_job("nope") is False
    assert await env.client.delete_dead_job("nope") is False
    assert await env.client.delete_scheduled_job(scheduled.id) is True
    assert await env.client.delete_retry_job(retrying.id) is True
    assert await env.client.delete_dead_job(dead.id) is True
    for job in (scheduled, retrying, dead):
        assert await env.client.job(job.id) is None
    counts = await env.client.count_by_status()
    assert counts[JobStatus.SCHEDULED] == counts[JobStatus.RETRYING] == counts[JobStatus.DEAD] == 0
    await env.advance(3600)
    assert await env.client.job(retrying.id) is None


async def test_retry_dead_job_resets_fails_and_runs_again(env: Env) -> None:
    calls = register(env)
    job = await env.enqueuer.enqueue("heal", {"n": 1})
    assert job is not None
    await env.pool.drain(timeout=5)
    await env.advance(3600)
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.DEAD and info.fails == 2
    assert await env.client.retry_dead_job(job.id) is True
    assert await env.client.retry_dead_job(job.id) is False  # not dead any more
    info = await env.client.job(job.id)
    assert info is not None
    assert (info.status, info.fails, info.error) == (JobStatus.QUEUED, 0, None)
    # attempts counts the current run only; the earlier runs' are in previous_attempts
    assert (info.attempts, info.previous_attempts) == (0, 2)
    env.pool.context["broken"] = False
    await env.pool.drain(timeout=5)
    assert calls["heal"] == [1, 2, 1]
    assert await env.client.result(job.id, timeout=1) == "healed on attempt 1"
    info = await env.client.job(job.id)
    assert info is not None and info.status == JobStatus.FINISHED
    assert (info.attempts, info.previous_attempts) == (1, 2)
    # the history keeps every attempt, the earlier life of the job included, in order
    history = await env.client.history_job(job.id)
    assert [h.status for h in history] == ["failed", "dead", "finished"]
    assert [h.finished_at for h in history] == sorted(h.finished_at or 0 for h in history)
    assert await env.client.retry_dead_job("nope") is False


async def test_retry_all_and_delete_all_dead_jobs(env: Env) -> None:
    calls = register(env)
    jobs = [await env.enqueuer.enqueue("fatal", {"i": i}) for i in range(5)]
    await env.pool.drain(timeout=5)
    assert await env.client.dead_count() == 5
    assert await env.client.retry_all_dead_jobs() == 5
    assert await env.client.dead_count() == 0
    assert (await env.client.count_by_status())[JobStatus.QUEUED] == 5
    await env.pool.drain(timeout=5)
    assert len(calls["fatal"]) == 10
    assert await env.client.dead_count() == 5
    assert await env.client.delete_all_dead_jobs() == 5
    assert await env.client.dead_count() == 0
    for job in jobs:
        assert job is not None and await env.client.job(job.id) is None
        assert await env.redis.hexists(env.keys.errors, job.id) == 0
    assert await env.client.retry_all_dead_jobs() == 0
    assert await env.client.delete_all_dead_jobs() == 0


class InFlight:
    """Wraps a Client's one-job action: records the order ids start in and the most running
    at once; raises ``RuntimeError`` for the ids in ``failing``."""

    def __init__(self, action: Any, failing: frozenset[str] | set[str] = frozenset()) -> None:
        self.action, self.failing = action, failing
        self.started: list[str] = []
        self.running = self.most = 0

    async def __call__(self, job_id: str) -> bool:
        self.started.append(job_id)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if job_id in self.failing:
                raise RuntimeError(f"failed {job_id}")
            return bool(await self.action(job_id))
        finally:
            self.running -= 1


async def _many_dead(env: Env, n: int, corrupt: int) -> list[str]:
    """``n`` dead jobs and ``corrupt`` corrupt dead entries between them; every id of the dead
    set, oldest first."""
    register(env)
    await env.enqueuer.enqueue_many([("fatal", {"i": i}) for i in range(n)])
    await env.pool.drain(timeout=30)
    good = sorted(text.decode() for text in await env.redis.zrange(env.keys.dead, 0, -1))
    assert len(good) == n
    bad = [f"bad-{i}" for i in range(corrupt)]
    await env.redis.hset(env.keys.jobs, mapping=dict.fromkeys(bad, b"{{{"))
    order = [*good]
    for i, job_id in enumerate(bad):  # one corrupt entry after every (n // corrupt) good ones
        order.insert((i + 1) * (n // corrupt) + i, job_id)
    base = int(env.clock.now() * 1000) - 60_000  # (recent: the pools trim old dead entries)
    await env.redis.zadd(env.keys.dead, {job_id: base + i for i, job_id in enumerate(order)})
    return order


async def test_retry_all_and_delete_all_over_many_windows(env: Env) -> None:
    """300 dead jobs and 30 corrupt entries: each acted on once, oldest first window by window,
    several at once (one at a time before), counts exact, corrupt ones skipped by the retry."""
    order = await _many_dead(env, 300, 30)
    retry = InFlight(env.client.retry_dead_job)
    env.client.retry_dead_job = retry  # type: ignore[method-assign]
    assert await env.client.retry_all_dead_jobs() == 300
    assert sorted(retry.started) == sorted(order)  # each once
    window = retry.most
    assert 1 < window <= 64
    for start in range(0, len(order), window):  # window by window, oldest first
        assert set(retry.started[start : start + window]) == set(order[start : start + window])
    assert await env.redis.zcard(env.keys.queue("fatal")) == 300
    assert {m.decode() for m in await env.redis.zrange(env.keys.dead, 0, -1)} == {
        i for i in order if i.startswith("bad-")
    }
    await env.pool.drain(timeout=30)  # (they die again)
    delete = InFlight(env.client.delete_dead_job)
    env.client.delete_dead_job = delete  # type: ignore[method-assign]
    assert await env.client.delete_all_dead_jobs() == 330
    assert delete.most > 1 and await env.client.dead_count() == 0


async def test_an_error_in_one_job_of_a_bulk_action_leaves_none_of_the_others_undone(
    env: Env,
) -> None:
    """It stopped at the first error: the jobs after it were neither retried nor deleted."""
    order = await _many_dead(env, 200, 10)
    failing = order[50]
    retry = InFlight(env.client.retry_dead_job, {failing})
    env.client.retry_dead_job = retry  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match=f"failed {failing}") as caught:
        await env.client.retry_all_dead_jobs()
    assert await env.redis.zcard(env.keys.queue("fatal")) == 199
    assert caught.value.__notes__ == ["bulk action: 199 of 210 done, 1 failed"]
    dead = {m.decode() for m in await env.redis.zrange(env.keys.dead, 0, -1)}
    assert dead == {failing} | {i for i in order if i.startswith("bad-")}
    delete = InFlight(env.client.delete_dead_job, {"bad-3"})
    env.client.delete_dead_job = delete  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="failed bad-3"):
        await env.client.delete_all_dead_jobs()
    assert [m.decode() for m in await env.redis.zrange(env.keys.dead, 0, -1)] == ["bad-3"]


async def test_bulk_actions_keep_within_a_small_connection_pool(env: Env, redis_url: str) -> None:
    """A client whose plain pool allows 4 connections (redis-py raises past them, rather than
    wait): the bulk actions keep within it (two at a time)."""
    await _many_dead(env, 100, 5)
    small = Redis.from_url(redis_url, max_connections=4)
    try:
        client = Client(small, namespace=env.namespace, clock=env.clock)
        assert await client.retry_all_dead_jobs() == 100
        assert await client.delete_all_dead_jobs() == 5
    finally:
        await small.aclose()


async def test_bulk_dead_actions_over_ids_errands_never_accepts(env: Env) -> None:
    """70 dead-set members errands never accepts as ids (braces, a newline, NUL, empty, not
    UTF-8), the oldest, then 3 dead jobs: the retry skips the 70 (it raised for each, and a
    window of them all raising stopped it: the 3 stayed dead), the delete removes them (it
    raised "0 of 73 done, 50 failed, 23 not tried")."""
    register(env)
    await env.enqueuer.enqueue_many([("fatal", {"i": i}) for i in range(3)])
    await env.pool.drain(timeout=5)
    good = {m.decode() for m in await env.redis.zrange(env.keys.dead, 0, -1)}
    odd: list[bytes] = [b"", b"a\nb", b"nul\x00", b"\xff\xfe", b"half\xc3"]
    odd += [f"bad{{{i}}}".encode() for i in range(70 - len(odd))]
    base = int(env.clock.now() * 1000) - 120_000  # (older than the 3; recent: not trimmed)
    await env.redis.zadd(env.keys.dead, {m: base + i for i, m in enumerate(odd)})
    assert await env.client.retry_all_dead_jobs() == 3
    assert await env.redis.zcard(env.keys.queue("fatal")) == 3
    assert set(await env.redis.zrange(env.keys.dead, 0, -1)) == set(odd)
    await env.pool.drain(timeout=5)  # (they die again)
    assert await env.client.delete_all_dead_jobs() == 73
    assert await env.client.dead_count() == 0
    for job_id in good:
        assert await env.client.job(job_id) is None


# -- corrupt entries -------------------------------------------------------------------------
CORRUPT_ENVELOPES = {
    "c-missing": None,
    "c-notjson": b"\x00not json{",
    "c-list": b"[1, 2]",
    "c-noargs": b'{"n": "ok"}',
    "c-badfails": b'{"n": "ok", "a": {}, "f": "many", "p": [1]}',
    "c-badname": b'{"n": "bad{name} x", "a": {}}',
    "c-namenotstr": b'{"n": {"x": 1}, "a": {}}',
}


async def _plant(env: Env, key: str, score: float) -> None:
    for job_id, raw in CORRUPT_ENVELOPES.items():
        if raw is not None:
            await env.redis.hset(env.keys.jobs, job_id, raw)
        await env.redis.zadd(key, {job_id: score})


async def test_corrupt_entries_in_the_dead_set_are_listed(env: Env) -> None:
    register(env)
    good = await env.enqueuer.enqueue("fatal", {"good": True})
    assert good is not None
    await env.pool.drain(timeout=5)
    await env.redis.hset(env.keys.errors, "c-notjson", b"not json either")
    await _plant(env, env.keys.dead, 1000)
    page = await env.client.dead_jobs()
    assert page.total == len(CORRUPT_ENVELOPES) + 1
    by_id = {j.id: j for j in page.items}
    assert not by_id[good.id].corrupt and by_id[good.id].args == {"good": True}
    for job_id in CORRUPT_ENVELOPES:
        assert by_id[job_id].corrupt, job_id
        assert by_id[job_id].status == JobStatus.DEAD
        info = await env.client.job(job_id)
        if CORRUPT_ENVELOPES[job_id] is not None:
            assert info is not None and info.corrupt and info.status == JobStatus.DEAD, job_id
            assert info.raw == CORRUPT_ENVELOPES[job_id]
    assert (await env.client.count_by_status())[JobStatus.DEAD] == page.total
    # retrying skips what cannot run; deleting removes everything
    assert await env.client.retry_dead_job("c-notjson") is False
    assert await env.client.retry_all_dead_jobs() == 1
    assert await env.client.delete_all_dead_jobs() == len(CORRUPT_ENVELOPES)
    assert await env.client.dead_count() == 0
    for job_id in CORRUPT_ENVELOPES:
        assert await traces(env.redis, env.namespace, job_id) == [], job_id


async def test_corrupt_entries_in_scheduled_and_retry_sets_are_listed(env: Env) -> None:
    register(env)
    good = await env.enqueuer.enqueue("ok", {"good": True}, delay=5)
    assert good is not None
    await _plant(env, env.keys.scheduled("ok"), 1000)
    page = await env.client.scheduled_jobs()
    assert page.total == len(CORRUPT_ENVELOPES) + 1
    corrupt = [j for j in page.items if j.corrupt]
    assert sorted(j.id for j in corrupt) == sorted(CORRUPT_ENVELOPES)
    assert page.items[-1].id == good.id and not page.items[-1].corrupt
    for job_id, raw in CORRUPT_ENVELOPES.items():
        info = await env.client.job(job_id)
        if raw is not None:
            assert info is not None and info.corrupt, job_id
            assert info.status == JobStatus.SCHEDULED, (job_id, info.status)
    for what in ("queued", "retrying", "dead", "cancelled", "in_progress"):
        await env.client.jobs_by_status(what)
    await env.client.count_by_status()
    await env.client.queues()
    # a pool buries them as corrupt when they come due, and runs the good one
    await env.advance(10)
    assert (await env.client.scheduled_jobs()).total == 0
    assert await env.client.result(good.id, timeout=1) == {"good": True}
    dead = await env.client.dead_jobs()
    assert {j.id for j in dead.items} <= set(CORRUPT_ENVELOPES)
    assert await env.client.destroy("c-notjson") is True
    assert await traces(env.redis, env.namespace, "c-notjson") == []


async def test_corrupt_history_and_pool_records_do_not_crash(env: Env) -> None:
    register(env)
    job = await env.enqueuer.enqueue("ok", {})
    assert job is not None
    await env.pool.drain(timeout=5)
    await env.redis.hset(env.keys.history_data, "x:1", b"garbage")
    await env.redis.zadd(env.keys.history_of("ok"), {"x:1": 1, "y:1": 2})
    await env.redis.hset(env.keys.history_data, "y:1", b'{"status": 3, "job": [1], "attempt": "x"}')
    await env.redis.set(env.keys.done("z"), b'{"job": "nope"}')
    await env.redis.zadd(env.keys.pools, {"ghost": 1})
    await env.redis.set(env.keys.pool_info("ghost"), b'["not", "a", "dict"]')
    await env.redis.zadd(env.keys.pools, {"ghost2": 1})
    await env.redis.set(env.keys.pool_info("ghost2"), b'{"pid": "x", "concurrency": null}')
    hist = await env.client.history()
    assert hist.total == 3 and job.id in {h.id for h in hist.items}
    assert await env.client.job("z") is None or (await env.client.job("z")).corrupt  # type: ignore[union-attr]
    pools = await env.client.worker_pools()
    assert {"ghost", "ghost2"} <= {p.id for p in pools}
    await env.client.workers()


# -- queues, pools, workers, pause, redis_info -----------------------------------------------
async def test_queues_report_sizes_latency_pause_and_limits(env: Env) -> None:
    register(env)
    gate = asyncio.Event()
    started = asyncio.Event()

    @env.pool.job("limited", max_concurrency=2)
    async def limited(job: Job) -> None:
        started.set()
        await gate.wait()

    await env.pool.start()
    for _ in range(3):
        await env.enqueuer.enqueue("limited", {})
    await until(started.is_set)
    await env.client.pause("ok")
    await env.enqueuer.enqueue("ok", {})
    await env.enqueuer.enqueue("ok", {}, delay=100)
    env.clock.advance(30)
    queues = {q.name: q for q in await env.client.queues()}
    ok, lim = queues["ok"], queues["limited"]
    assert (ok.queued, ok.scheduled, ok.retrying, ok.running, ok.paused) == (1, 1, 0, 0, True)
    assert ok.latency == pytest.approx(30)
    assert ok.max_concurrency == 0
    await until(lambda: _running(env, "limited", 2))
    queues = {q.name: q for q in await env.client.queues()}
    lim = queues["limited"]
    assert (lim.queued, lim.running, lim.max_concurrency, lim.paused) == (1, 2, 2, False)
    assert lim.latency == pytest.approx(30)
    # a scheduled job waits from its due time, not from when it was enqueued
    await env.redis.delete(env.keys.queue("ok"))
    env.clock.advance(75)
    await env.pool.requeuer.promote_once()  # type: ignore[union-attr]
    env.clock.advance(5)
    ok = {q.name: q for q in await env.client.queues()}["ok"]
    assert (ok.queued, ok.scheduled) == (1, 0)
    assert ok.latency == pytest.approx(10)  # due at +100, now +110 (enqueued at +0)
    sizes = await env.client.queue_sizes()
    assert sizes["ok"] == {"queued": 1, "scheduled": 0, "retry": 0, "running": 0}
    gate.set()


async def _running(env: Env, name: str, n: int) -> bool:
    queues = {q.name: q for q in await env.client.queues()}
    return name in queues and queues[name].running == n


async def test_pause_and_unpause(env: Env) -> None:
    calls = register(env)
    await env.client.pause("ok")
    assert await env.client.paused() == {"ok"}
    await env.enqueuer.enqueue("ok", {})
    await env.pool.drain(timeout=5)
    assert calls["ok"] == []
    await env.client.unpause("ok")
    assert await env.client.paused() == set()
    await env.pool.drain(timeout=5)
    assert len(calls["ok"]) == 1
    with pytest.raises(ValueError, match="invalid job name"):
        await env.client.pause("bad name")


async def test_worker_pools_and_workers_while_a_pool_runs(env: Env) -> None:
    register(env)
    gate = asyncio.Event()
    running: list[str] = []

    @env.pool.job("slow")
    async def slow(job: Job) -> None:
        running.append(job.id)
        await job.checkin(f"working on {job.args['i']}")
        await gate.wait()

    assert await env.client.worker_pools() == []
    before = time.time()
    await env.pool.start()
    jobs = [await env.enqueuer.enqueue("slow", {"i": i}) for i in range(3)]
    await until(lambda: len(running) == 3)
    pools = await env.client.worker_pools()
    assert len(pools) == 1
    p = pools[0]
    assert (p.id, p.host, p.pid, p.concurrency) == (
        env.pool.id,
        socket.gethostname(),
        os.getpid(),
        4,
    )
    assert p.job_names == ["boom", "fatal", "heal", "ok", "slow"]
    assert before - 1 <= p.started_at <= time.time()
    assert abs(p.last_beat - time.time()) < 5
    assert p.busy == 3
    workers = await until(lambda: _checked_in_workers(env, 3))
    assert {w.job_id for w in workers} == {j.id for j in jobs if j}
    assert all(w.pool_id == env.pool.id and w.job_name == "slow" for w in workers)
    assert sorted(w.checkin["message"] for w in workers if w.checkin) == [
        f"working on {i}" for i in range(3)
    ]
    gate.set()
    await env.pool.drain(timeout=5)
    assert await env.client.workers() == []
    await env.pool.stop()
    assert await env.client.worker_pools() == []


async def test_workers_of_many_pools_read_in_a_fixed_number_of_commands(
    own_redis: Redis, namespace: str
) -> None:
    """Five pools (one idle), one running 1,500 jobs: every running job, pool by pool in the
    pools' order, each pool's oldest first; the envelopes and checkins read by HMGETs of at
    most 1,000 ids (four here: eight before, two per busy pool, of all its ids)."""
    keys = Keys(namespace)
    counts = {"p0": 3, "p1": 2, "p2": 0, "p3": 1500, "p4": 1}
    await own_redis.zadd(keys.pools, {"p0": 5, "p1": 4, "p2": 3, "p3": 2, "p4": 1})
    expected: dict[str, list[WorkerInfo]] = {}
    for pool, n in counts.items():
        ids = [f"{pool}-{i:04d}" for i in range(n)]  # (the later, the earlier started)
        if ids:
            started = {f"{job_id}:work": 2_000_000 - i for i, job_id in enumerate(ids)}
            await own_redis.zadd(keys.in_progress(pool), started)
            envelopes = {job_id: orjson.dumps({"n": "work", "a": {"i": i}}) for i, job_id in
                         enumerate(ids) if i != 1}  # fmt: skip
            await own_redis.hset(keys.jobs, mapping=envelopes)  # (one without its envelope)
            checkins = {job_id: orjson.dumps({"at": i}) for i, job_id in enumerate(ids) if i % 2}
            if checkins:
                await own_redis.hset(keys.checkins, mapping=checkins)
        expected[pool] = [
            WorkerInfo(pool, job_id, "work", {"i": i} if i != 1 else {}, (2_000_000 - i) / 1000,
                       {"at": i} if i % 2 else None)
            for i, job_id in reversed(list(enumerate(ids)))
        ]  # fmt: skip
    client = Client(own_redis, namespace=namespace)
    await own_redis.config_resetstat()
    workers = await client.workers()
    calls = await command_calls(own_redis)
    assert workers == [w for pool in ("p4", "p3", "p2", "p1", "p0") for w in expected[pool]]
    assert calls["zrange"] == 1 + 5 and calls["hmget"] == 2 * 2


async def _checked_in_workers(env: Env, n: int) -> list[Any]:
    workers = await env.client.workers()
    return workers if len(workers) == n and all(w.checkin for w in workers) else []


async def test_redis_info(env: Env) -> None:
    await env.enqueuer.enqueue("ok", {})
    info = await env.client.redis_info()
    assert isinstance(info["version"], str) and info["version"][0].isdigit()
    assert isinstance(info["used_memory"], str) and info["used_memory"]
    assert info["connected_clients"] >= 1
    assert isinstance(info["ops_per_sec"], int)
    assert info["keys"] >= 1
    assert info["uptime_seconds"] >= 0


# -- history ---------------------------------------------------------------------------------
async def test_history_records_every_attempt(env: Env) -> None:
    register(env)
    ok = await env.enqueuer.enqueue("ok", {"x": 1})
    healed = await env.enqueuer.enqueue("heal", {"x": 2})
    dead = await env.enqueuer.enqueue("fatal", {"x": 3})
    assert ok and healed and dead
    await env.pool.drain(timeout=5)
    env.pool.context["broken"] = False
    await env.advance(60)
    assert await env.client.history_count() == 4
    assert await env.client.history_count("heal") == 2
    assert await env.client.history_count("nothing") == 0
    page = await env.client.history()
    assert page.total == 4 and len(page.items) == 4
    assert [h.finished_at for h in page.items] == sorted(
        (h.finished_at or 0 for h in page.items), reverse=True
    )
    assert page.items[0].id == healed.id and page.items[0].status == "finished"
    outcomes = {(h.id, h.attempt): h for h in page.items}
    assert outcomes[(ok.id, 1)].status == "finished"
    assert outcomes[(ok.id, 1)].result == {"x": 1} and outcomes[(ok.id, 1)].args == {"x": 1}
    assert outcomes[(dead.id, 1)].status == "dead"
    assert outcomes[(dead.id, 1)].error["error"] == "ValueError: fatal"  # type: ignore[index]
    failed = outcomes[(healed.id, 1)]
    assert failed.status == "failed" and failed.name == "heal"
    assert failed.error is not None and failed.error["error"] == "RuntimeError: broken on attempt 1"
    attempts = await env.client.history_job(healed.id)
    assert [(h.attempt, h.status) for h in attempts] == [(1, "failed"), (2, "finished")]
    assert attempts[1].result == "healed on attempt 2"
    assert attempts[1].started_at == pytest.approx(env.clock.now())
    assert attempts[1].duration == pytest.approx(0)
    only_heal = await env.client.history(job_name="heal")
    assert {h.id for h in only_heal.items} == {healed.id} and only_heal.total == 2
    assert await env.client.history_job("nope") == []


async def test_history_pages(env: Env) -> None:
    register(env)
    for i in range(25):
        await env.enqueuer.enqueue("ok", {"i": i})
        await env.pool.drain(timeout=5)
        env.clock.advance(1)
    first, second, third = [await env.client.history(p) for p in (1, 2, 3)]
    assert (first.total, len(first.items), len(second.items), third.items) == (25, 20, 5, [])
    assert [h.args["i"] for h in first.items + second.items] == list(range(24, -1, -1))
    assert (await env.client.history(2, job_name="ok")).items == second.items


async def test_history_trimmed_by_retention_and_length(redis: Redis, namespace: str) -> None:
    env = Env(redis, namespace, history_retention=3600, history_max=5)
    register(env)
    async with env.pool:
        old = [await env.enqueuer.enqueue("ok", {"old": i}) for i in range(3)]
        await env.pool.drain(timeout=5)
        env.clock.advance(1800)
        mid = [await env.enqueuer.enqueue("fatal", {"mid": i}) for i in range(2)]
        await env.pool.drain(timeout=5)
        assert await env.client.history_count() == 5
        env.clock.advance(1801)  # the first three are now older than the retention
        await env.pool.requeuer.collect_garbage()  # type: ignore[union-attr]
        assert await env.client.history_count() == 2
        assert await env.client.history_count("ok") == 0
        assert await env.client.history_count("fatal") == 2
        assert {h.id for h in (await env.client.history()).items} == {j.id for j in mid if j}
        for job in old:
            assert job is not None and await env.client.history_job(job.id) == []
        # six more at the same moment: only the newest five are kept
        new = [await env.enqueuer.enqueue("ok", {"new": i}) for i in range(6)]
        await env.pool.drain(timeout=5)
        assert await env.client.history_count() == 8
        await env.pool.requeuer.collect_garbage()  # type: ignore[union-attr]
        assert await env.client.history_count() == 5
        assert await env.redis.hlen(env.keys.history_data) == 5
        per_name = await env.client.history_count("ok") + await env.client.history_count("fatal")
        assert per_name == 5
        assert await env.client.history_count("fatal") == 0
        kept = {h.id for h in (await env.client.history()).items}
        assert kept < {j.id for j in new if j}
        page = await env.client.history(job_name="ok")
        assert page.total == len(page.items) == 5


# -- events ----------------------------------------------------------------------------------
async def test_events_stream(env: Env) -> None:
    register(env)
    gate = asyncio.Event()

    @env.pool.job("progress")
    async def progress(job: Job) -> None:
        await job.checkin("half way")
        await gate.wait()

    @env.pool.job("dropped", max_fails=1, skip_dead=True)
    async def dropped(job: Job) -> None:
        raise RuntimeError("dropped")

    events: list[dict[str, Any]] = []
    async with env.client.events() as stream:
        await env.pool.start()
        ok = await env.enqueuer.enqueue("ok", {})
        boom = await env.enqueuer.enqueue("boom", {})
        fatal = await env.enqueuer.enqueue("fatal", {})
        drop = await env.enqueuer.enqueue("dropped", {})
        later = await env.enqueuer.enqueue("ok", {}, delay=60)
        prog = await env.enqueuer.enqueue("progress", {})
        assert ok and boom and fatal and drop and later and prog
        await env.client.cancel(later.id)
        expected = {
            ("enqueued", ok.id),
            ("started", ok.id),
            ("finished", ok.id),
            ("failed", boom.id),
            ("dead", fatal.id),
            ("dropped", drop.id),
            ("enqueued", later.id),
            ("cancelled", later.id),
            ("progress", prog.id),
        }
        async with asyncio.timeout(5):
            async for event in stream:
                events.append(event)
                if expected <= {(e["event"], e["id"]) for e in events}:
                    break
        # a running job cancelled by request
        assert await env.client.cancel(prog.id) == "running"
        async with asyncio.timeout(5):
            async for event in stream:
                events.append(event)
                if event["event"] == "cancelled" and event["id"] == prog.id:
                    break
    names = {e["id"]: e["name"] for e in events}
    assert names[ok.id] == "ok" and names[prog.id] == "progress"
    progress_event = next(e for e in events if e["event"] == "progress")
    assert progress_event["checkin"]["message"] == "half way"


async def test_events_iterated_directly(env: Env) -> None:
    """``async for event in client.events()`` without ``async with`` works too."""
    got: list[dict[str, Any]] = []

    async def collect() -> None:
        async for event in env.client.events():
            got.append(event)
            if len(got) == 2:
                return

    task = asyncio.create_task(collect())
    await until(lambda: env.redis.exists(env.keys.listening))
    await asyncio.sleep(0.05)
    a = await env.enqueuer.enqueue("ok", {})
    b = await env.enqueuer.enqueue("ok", {})
    async with asyncio.timeout(5):
        await task
    assert [e["id"] for e in got] == [a.id, b.id]  # type: ignore[union-attr]


async def test_no_events_published_without_listeners(env: Env) -> None:
    register(env)
    pubsub = env.redis.pubsub()
    await pubsub.subscribe(env.keys.events_channel)
    await env.enqueuer.enqueue("ok", {})
    await env.pool.drain(timeout=5)
    messages = []
    for _ in range(3):
        m = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
        if m:
            messages.append(orjson.loads(m["data"]))
    await pubsub.aclose()
    assert messages == []
