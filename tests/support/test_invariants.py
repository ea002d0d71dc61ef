"""The invariant checker itself (tests/support/invariants): it passes on the states a real pool
leaves behind, and each of its checks fails on a state broken on purpose (real Redis)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.invariants import (
    LAYOUT,
    InvariantViolations,
    OracleLog,
    Report,
    Run,
    assert_invariants,
    check_invariants,
)


def test_layout_names_every_key_keys_builds() -> None:
    """A key added to Keys must be taught to the checker (else it reports it as stray)."""
    built = {
        name
        for name, attr in vars(Keys).items()
        if not name.startswith("_") and (isinstance(attr, property) or inspect.isfunction(attr))
    } - {"prefix", "done_many"}  # (done_many: the keys of the "done" family, for many ids)
    known = {name for names in LAYOUT.values() for name in names}
    assert built == known


async def make_state(redis_url: str, namespace: str) -> dict[str, str]:
    """A realistic namespace: jobs finished, dead (with an error), waiting in a queue, scheduled,
    unique-locked, cancelled; the pool stopped. Returns ids by role."""
    pool = WorkerPool(url=redis_url, namespace=namespace, concurrency=2, dead_timeout=1.0,
                      heartbeat_interval=0.25)  # fmt: skip

    @pool.job("ok")
    async def ok(job: Job, x: int = 0) -> int:
        await job.checkin("working")
        return x

    @pool.job("bad", max_fails=1)
    async def bad(job: Job) -> None:
        raise RuntimeError("broken")

    @pool.job("capped", max_concurrency=1)
    def capped(job: Job) -> None:
        pass

    async with Enqueuer.from_url(redis_url, namespace=namespace) as e:
        done = [(await e.enqueue("ok", {"x": i})) for i in range(3)]
        dead = await e.enqueue("bad", priority=5)
        await e.enqueue("capped")
        await pool.drain(timeout=10)
        waiting = await e.enqueue("ok", {"x": 10}, priority=3)
        scheduled = await e.enqueue("capped", delay=3600)
        unique = await e.enqueue_unique("ok", {"x": 11})
        cancelled = await e.enqueue("ok", {"x": 12})
    assert all(j is not None for j in (*done, dead, waiting, scheduled, unique, cancelled))
    from errands import Client

    async with Client.from_url(redis_url, namespace=namespace) as client:
        assert await client.cancel(cancelled.id) == "cancelled"  # type: ignore[union-attr]
    return {
        "done": done[0].id,  # type: ignore[union-attr]
        "dead": dead.id,  # type: ignore[union-attr]
        "waiting": waiting.id,  # type: ignore[union-attr]
        "scheduled": scheduled.id,  # type: ignore[union-attr]
        "unique": unique.id,  # type: ignore[union-attr]
        "cancelled": cancelled.id,  # type: ignore[union-attr]
    }


@pytest.fixture
async def state(redis_url: str, namespace: str, redis: Redis) -> dict[str, str]:
    ids = await make_state(redis_url, namespace)
    report = await check_invariants(redis, namespace)
    assert report.ok, report.describe()
    return ids


def expect(report: Report, check: str, *words: str) -> None:
    hits = [v for v in report.violations if v.check == check and all(w in v.detail for w in words)]
    assert hits, f"no [{check}] violation with {words}:\n{report.describe()}"


async def test_a_real_pools_states_pass(
    redis: Redis, namespace: str, state: dict[str, str]
) -> None:
    k = Keys(namespace)
    await redis.rpush(k.prefix + "test:starts", b"{}")  # the records of tests.support.apps
    report = await assert_invariants(redis, namespace)
    assert report.figures["places"] == {"dead": 1, "queue": 2, "scheduled": 1, "cancelled": 1}
    assert report.figures["finished_records"] == 4
    # and with the waiting jobs gone, the namespace counts as drained with every pool stopped
    await redis.delete(k.queue("ok"), k.scheduled("capped"))
    for role in ("waiting", "scheduled", "unique"):
        await redis.hdel(k.jobs, state[role])
    await redis.hdel(k.priorities, state["waiting"])
    await redis.delete(k.unique, k.unique_of_job, k.unique_expiry)
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def seq(*steps: Awaitable[object]) -> None:
    for step in steps:
        await step


Breaker = Callable[[Redis, Keys, dict[str, str]], Awaitable[object]]

BROKEN: dict[str, tuple[Breaker, str, tuple[str, ...]]] = {
    "two places": (
        lambda r, k, ids: r.zadd(k.dead, {ids["waiting"]: 1}),
        "places",
        ("in 2 places", "queue:ok", "dead"),
    ),
    "orphaned envelope (popped and never put back)": (
        lambda r, k, ids: r.zrem(k.queue("ok"), ids["waiting"]),
        "places",
        ("in no place",),
    ),
    "place without envelope": (
        lambda r, k, ids: r.zadd(k.retry("ok"), {"f" * 32: 1}),
        "places",
        ("has no envelope",),
    ),
    "queue of another name": (
        lambda r, k, ids: seq(
            r.zadd(k.queue("bad"), {ids["waiting"]: 1}), r.zrem(k.queue("ok"), ids["waiting"])
        ),
        "places",
        ("of name 'ok' is in queue:bad",),
    ),
    "finished yet alive": (
        lambda r, k, ids: seq(
            r.hset(k.jobs, ids["done"], b'{"n":"ok","a":{}}'),
            r.zadd(k.queue("ok"), {ids["done"]: 9}),
        ),
        "places",
        ("finished", "yet is alive"),
    ),
    "stray key": (lambda r, k, ids: r.set(k.prefix + "mystery", 1), "keys", ("mystery",)),
    "stray key beside the tests' own records": (
        lambda r, k, ids: seq(r.rpush(k.prefix + "test:starts", 1), r.set(k.prefix + "tes", 1)),
        "keys",
        ("tes'",),
    ),
    "finished record without TTL": (
        lambda r, k, ids: r.persist(k.done(ids["done"])),
        "keys",
        ("has no TTL",),
    ),
    "description of an unregistered pool": (
        lambda r, k, ids: r.set(k.pool_info("p0"), b"{}", px=60_000),
        "keys",
        ("unregistered pool p0",),
    ),
    "idle mark of an unregistered pool": (
        lambda r, k, ids: r.sadd(k.idle, "p0"),
        "keys",
        ("idle mark", "p0"),
    ),
    "hand-off list of an unregistered pool": (
        lambda r, k, ids: r.lpush(k.handoff("p0"), b""),
        "keys",
        ("hand-off list of unregistered pool p0",),
    ),
    "served names kept for ever": (
        lambda r, k, ids: r.set(k.serves("p0"), b'["x"]'),
        "keys",
        ("served names of pool p0", "no TTL"),
    ),
    "history record outside the index": (
        lambda r, k, ids: r.hset(k.history_data, "x:1", b"{}"),
        "keys",
        ("x:1", "not in the history index"),
    ),
    "recovery counter of a dead job": (
        lambda r, k, ids: r.hset(k.recoveries, ids["dead"], 1),
        "fields",
        ("recovery counter", "dead"),
    ),
    "check-in of a finished job": (
        lambda r, k, ids: r.hset(k.checkins, ids["done"], b"{}"),
        "fields",
        ("check-in", "its job is gone"),
    ),
    "cancel request of a waiting job": (
        lambda r, k, ids: r.hset(k.cancel_requests, ids["waiting"], "cancel"),
        "fields",
        ("cancel request", "queue:ok"),
    ),
    "priority of a deleted job": (
        lambda r, k, ids: r.hset(k.priorities, "e" * 32, 3),
        "fields",
        ("priority", "no envelope"),
    ),
    "last error of a deleted job": (
        lambda r, k, ids: r.hset(k.errors, "e" * 32, b"{}"),
        "fields",
        ("last error", "no envelope"),
    ),
    "checkpoint of a finished job": (
        lambda r, k, ids: r.hset(k.checkpoints, ids["done"], b"{}"),
        "fields",
        ("checkpoint", "no envelope"),
    ),
    "running counter leaked": (
        lambda r, k, ids: r.hincrby(k.running, "capped", 1),
        "running",
        ("running[capped] = 1 but 0", "leaked"),
    ),
    "running counter below zero": (
        lambda r, k, ids: r.hincrby(k.running, "ok", -1),
        "running",
        ("running[ok] = -1",),
    ),
    "unique lock of a job that started": (
        lambda r, k, ids: seq(
            r.zrem(k.queue("ok"), ids["unique"]), r.zadd(k.dead, {ids["unique"]: 1})
        ),
        "unique",
        ("not waiting", "dead"),
    ),
    "unique record without its lock": (
        lambda r, k, ids: r.hset(k.unique_of_job, ids["waiting"], "d" * 32),
        "unique",
        ("a lock it does not hold",),
    ),
    "dedup key of a dead job": (
        lambda r, k, ids: seq(
            r.hset(k.dedup, "ok:k", ids["dead"]), r.hset(k.dedup_of_job, ids["dead"], "fok:k")
        ),
        "dedup",
        ("ok:k", "not live", "dead"),
    ),
    "dedup record without its key": (
        lambda r, k, ids: r.hset(k.dedup_of_job, ids["waiting"], "sok:k"),
        "dedup",
        ("key not owned",),
    ),
    "dedup rerun waiting for no running job": (
        lambda r, k, ids: seq(
            r.zrem(k.queue("ok"), ids["waiting"]),
            r.zadd(k.dedup_reruns, {ids["waiting"]: 1}),
            r.hset(k.dedup_next, "ok:k", ids["waiting"]),
            r.hset(k.dedup_of_job, ids["waiting"], "nok:k"),
        ),
        "dedup",
        ("waits for no running job",),
    ),
    "throttle window kept for ever": (
        lambda r, k, ids: r.set(k.dedup_window("ok:k"), ids["waiting"]),
        "dedup",
        ("throttle window", "no TTL"),
    ),
    "unique expiry without its lock": (
        lambda r, k, ids: r.zadd(k.unique_expiry, {"d" * 32: 1}),
        "unique",
        ("nobody holds",),
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
async def test_each_check_fails_on_a_broken_state(
    redis: Redis, namespace: str, state: dict[str, str], case: str
) -> None:
    breaker, check, words = BROKEN[case]
    await breaker(redis, Keys(namespace), state)
    report = await check_invariants(redis, namespace)
    expect(report, check, *words)
    with pytest.raises(InvariantViolations, match=rf"\[{check}\]"):
        await assert_invariants(redis, namespace, context="after " + case)


async def test_in_progress_sets_and_pools(
    redis: Redis, namespace: str, state: dict[str, str]
) -> None:
    """A job running in a registered pool is in its place; in the set of an unregistered pool
    (nobody will reap it) it is not, and a malformed entry is reported."""
    k = Keys(namespace)
    job = state["waiting"]
    await redis.zrem(k.queue("ok"), job)
    await redis.zadd(k.pools, {"p1": 1})
    await redis.zadd(k.in_progress("p1"), {f"{job}:ok": 1})
    await redis.hincrby(k.running, "ok", 1)
    expect(
        await check_invariants(redis, namespace), "attempts", job, "in progress in p1: attempt none"
    )
    await redis.hset(k.attempts, job, "p2:7")
    expect(await check_invariants(redis, namespace), "attempts", job, "attempt p2:7")
    await redis.hset(k.attempts, job, "p1:7")
    await assert_invariants(redis, namespace)  # running is fine
    report = await check_invariants(redis, namespace, drained=True, stopped=True)
    expect(report, "drained", job, "still in in-progress:p1")
    expect(report, "drained", "pool p1 still registered")
    expect(report, "drained", "running[ok] = 1")

    await redis.zrem(k.pools, "p1")
    await redis.zadd(k.retired, {"p1": 1})  # a reaper took its lease: it is being drained
    await assert_invariants(redis, namespace)
    await redis.zrem(k.retired, "p1")
    await redis.zadd(k.in_progress("p1"), {b"garbage": 2})
    report = await check_invariants(redis, namespace)
    expect(report, "places", "pool p1, neither registered nor retired, holds 1 jobs", job)
    expect(report, "places", "malformed in-progress entry b'garbage'")
    await redis.zrem(k.in_progress("p1"), f"{job}:ok")
    expect(await check_invariants(redis, namespace), "attempts", "p1:7", job, "not in progress")


async def test_drained(redis: Redis, namespace: str, state: dict[str, str]) -> None:
    report = await check_invariants(redis, namespace, drained=True)
    expect(report, "drained", state["waiting"], "still waits in queue:ok")
    k = Keys(namespace)
    await redis.zadd(k.scheduled("capped"), {state["scheduled"]: 1000})
    expect(await check_invariants(redis, namespace, drained=True), "drained", "overdue")
    await redis.sadd(k.paused, "ok")  # a paused name's jobs may wait
    report = await check_invariants(redis, namespace, drained=True)
    assert not [v for v in report.violations if "queue:ok" in v.detail], report.describe()


# -- the oracle ------------------------------------------------------------------------------
async def test_oracle_double_runs(redis: Redis, namespace: str, state: dict[str, str]) -> None:
    j = state["done"]
    one_after_other = [Run(j, "ok", 1, 10.0, 11.0, "error"), Run(j, "ok", 2, 11.0, 12.0, "ok")]
    await assert_invariants(redis, namespace, OracleLog(runs=one_after_other))

    overlapping = [Run(j, "ok", 1, 10.0, 12.0, "ok"), Run(j, "ok", 2, 11.0, 11.5, "ok")]
    report = await check_invariants(redis, namespace, OracleLog(runs=overlapping))
    expect(report, "double-run", j, "2x at once at 11.000")
    assert report.figures["double_runs"] == 1

    # a run without an end lasts until its process exited (a SIGKILL at 10.5)
    killed = [Run(j, "ok", 1, 10.0), Run(j, "ok", 2, 11.0, 12.0, "ok")]
    await assert_invariants(redis, namespace, OracleLog(runs=killed, exits={1: 10.5}))
    report = await check_invariants(redis, namespace, OracleLog(runs=killed, exits={1: 11.2}))
    expect(report, "double-run", j)
    report = await check_invariants(redis, namespace, OracleLog(runs=killed))  # never exited
    expect(report, "double-run", j)


async def test_oracle_frozen_processes(redis: Redis, namespace: str, state: dict[str, str]) -> None:
    """A process frozen (SIGSTOP) from 10.5 to 20 runs nothing meanwhile; what it runs after
    its resume (beyond the allowance) overlaps the new run."""
    j = state["done"]
    runs = [Run(j, "ok", 1, 10.0, 20.2, "ok"), Run(j, "ok", 2, 12.0, 21.0, "ok")]
    log = OracleLog(runs=runs, frozen={1: [(10.5, 20.0)]}, resume_allowance=0.5)
    await assert_invariants(redis, namespace, log)
    log.resume_allowance = 0.1
    expect(await check_invariants(redis, namespace, log), "double-run", j, "at 20.100")


async def test_oracle_caps(redis: Redis, namespace: str, state: dict[str, str]) -> None:
    runs = [Run(f"{i:032x}", "capped", i, 10.0 + i, 10.0 + i + 1.5, "ok") for i in range(4)]
    report = await check_invariants(redis, namespace, OracleLog(runs=runs, caps={"capped": 2}))
    assert report.ok and report.figures["cap_max"] == {"capped": 2}
    report = await check_invariants(redis, namespace, OracleLog(runs=runs, caps={"capped": 1}))
    expect(report, "cap", "2 runs of capped at once at 11.000 (max_concurrency 1)")


async def test_oracle_lost_jobs(redis: Redis, namespace: str, state: dict[str, str]) -> None:
    acked = list(state.values())
    await assert_invariants(redis, namespace, OracleLog(acknowledged=acked))
    k = Keys(namespace)
    # popped from its queue and never put back: orphaned, so lost
    await redis.zrem(k.queue("ok"), state["waiting"])
    # deleted without a finished record
    await redis.zrem(k.dead, state["dead"])
    await redis.hdel(k.jobs, state["dead"])
    await redis.hdel(k.errors, state["dead"])
    await redis.hdel(k.priorities, state["dead"])
    # a finished job whose record expired counts as lost too (the checker cannot tell)
    log = OracleLog(acknowledged=acked, runs=[Run(state["dead"], "bad", 1, 1.0, 2.0, "error")])
    report = await check_invariants(redis, namespace, log)
    expect(report, "lost", state["waiting"], "orphaned", "it never ran")
    expect(report, "lost", state["dead"], "gone without a finished record", "pid 1")
    assert report.figures["lost"] == 2
    log.gone_by_design = [state["dead"], state["waiting"]]
    assert not [v for v in (await check_invariants(redis, namespace, log)).violations
                if v.check == "lost"]  # fmt: skip
