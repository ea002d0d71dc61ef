"""Limits changed at run time (Client.set_limits, ``errands limits``) reach every pool within a
second; Client.job says why a queued job waits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from errands import Client, Concurrency, Enqueuer, Job, JobStatus, Rate, WorkerPool
from errands.cli import main
from errands.limits import parse_limit
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

from .support import until


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        yield enq


@pytest.fixture
def client(redis: Redis, namespace: str) -> Client:
    return Client(redis, namespace=namespace)


async def test_set_limits_reaches_every_pool_and_clearing_restores_the_code(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    ran: list[str] = []
    pools = [WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4) for _ in range(2)]
    for pool in pools:

        @pool.job("sms", limits=[Concurrency(3)])
        async def sms(job: Job) -> None:
            ran.append(job.id)

    for pool in pools:
        await pool.start()
    try:
        await client.set_limits("sms", [Rate(1, per=timedelta(hours=1))])
        # within a second (polled: each pool re-reads every second)
        await until(
            lambda: all(p.worker and p.worker.limit_specs == {"sms": "r=1/3600000"} for p in pools),
            timeout=3,
        )
        assert all(p.job_types["sms"].max_concurrency == 0 for p in pools)  # replaced
        jobs = [await enqueuer.enqueue("sms", {}) for _ in range(3)]
        await until(lambda: len(ran) == 1)
        waiting = [j for j in jobs if j is not None and j.id not in ran]
        info = await client.job(waiting[0].id)
        assert info is not None and info.status == JobStatus.QUEUED
        assert info.waiting_for is not None and info.waiting_for.startswith("rate limited until")
        assert (await client.limits())["sms"].runtime == (Rate(1, per=timedelta(hours=1)),)

        await client.set_limits("sms", None)
        await until(lambda: len(ran) == 3, timeout=5)  # back to the code's limits
        await until(lambda: all(p.job_types["sms"].max_concurrency == 3 for p in pools), 3)
    finally:
        for pool in pools:
            await pool.stop()
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_job_waiting_for_its_busy_partition_says_so(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    release = asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4)

    @pool.job("charge", limits=[Concurrency(1, per_partition=True)])
    async def charge(job: Job) -> None:
        await release.wait()

    first = await enqueuer.enqueue("charge", {}, partition="cust:1")
    second = await enqueuer.enqueue("charge", {}, partition="cust:1")
    assert first is not None and second is not None
    async with pool:
        await until(lambda: client.job(first.id), timeout=5)

        async def first_runs() -> bool:
            info = await client.job(first.id)
            return info is not None and info.status == JobStatus.IN_PROGRESS

        await until(first_runs)
        info = await client.job(second.id)
        assert info is not None and info.partition == "cust:1"
        assert info.waiting_for == "partition 'cust:1' busy (1 running)"
        release.set()
        await until(lambda: _done(client, second.id))
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def _done(client: Client, job_id: str) -> bool:
    info = await client.job(job_id)
    return info is not None and info.status == JobStatus.FINISHED


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_the_limits_commands(
    capsys: pytest.CaptureFixture[str], redis_url: str, namespace: str
) -> None:
    where = ("--redis", redis_url, "--namespace", namespace)
    assert run(capsys, "limits", "show", *where)[1].strip() == "no limits"
    code, out = run(capsys, "limits", "set", "sms", "rate=20/1s", "concurrency=1:partition", *where)
    assert code == 0 and "within a second" in out
    assert run(capsys, "limits", "show", *where)[1].strip() == (
        "sms: rate=20/1000ms concurrency=1:partition (set at run time)"
    )
    data = json.loads(run(capsys, "limits", "show", "--json", *where)[1])
    assert data["sms"]["runtime"][0] == {"rate": 20, "per_ms": 1000, "per_partition": False}
    assert run(capsys, "limits", "clear", "sms", *where)[0] == 0
    assert run(capsys, "limits", "show", *where)[1].strip() == "no limits"
    assert run(capsys, "limits", "set", "sms", "rate=20", *where)[0] == 2
    many = [f"rate=1/{1 + i}s" for i in range(17)]  # REVIEW F6: at most 16 windows of a kind
    assert main(["limits", "set", "sms", *many, *where]) == 2
    assert "at most 16" in capsys.readouterr().err


def test_parse_limit() -> None:
    assert parse_limit("rate=5/1s:partition") == Rate(5, timedelta(seconds=1), True)
    assert parse_limit("rate=100/1m") == Rate(100, timedelta(minutes=1))
    assert parse_limit("concurrency=2") == Concurrency(2)
    for bad in ("rate=5", "concurrency=1/1s", "speed=3", "rate=0/1s"):
        with pytest.raises(ValueError):
            parse_limit(bad)


async def test_the_cap_shown_follows_limits_set_at_run_time(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    """queues().max_concurrency and waiting_for read the cap the pools publish: it was written
    once at start, so a code Concurrency(1) lifted at run time still showed (and a queued job
    was said to wait for it)."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=1)

    @pool.job("slow", limits=[Concurrency(1)])
    async def slow(job: Job) -> None:
        pass

    async def cap() -> int:
        return {q.name: q.max_concurrency for q in await client.queues()}.get("slow", -1)

    async def cap_is(n: int) -> bool:
        return await cap() == n

    assert await enqueuer.enqueue("slow", {}, delay=3600) is not None  # (a name queues() lists)
    async with pool:
        assert await cap() == 1
        await client.set_limits("slow", [Rate(1000), Concurrency(4)])
        await until(lambda: pool.job_types["slow"].max_concurrency == 4, timeout=3)
        await until(lambda: cap_is(4), timeout=3)  # (published after it, behind an await)
        await client.set_limits("slow", [Rate(1000)])
        await until(lambda: pool.job_types["slow"].max_concurrency == 0, timeout=3)
        await until(lambda: cap_is(0), timeout=3)
    job = await enqueuer.enqueue("slow", {})
    assert job is not None
    await redis.hset(Keys(namespace).running, "slow", 1)  # (one runs)
    info = await client.job(job.id)
    assert info is not None and info.waiting_for is None  # not "max_concurrency reached"
    await redis.hset(Keys(namespace).running, "slow", 0)


async def test_a_pool_started_again_after_a_clear_has_its_code_limits(
    redis_url: str, namespace: str, client: Client
) -> None:
    """The job types keep the limits a pool applied; a pool started again in the same process
    after `limits clear` read no runtime limits, which it took for "seen already": it kept the
    cleared ones until the next set_limits."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4)

    @pool.job("sms", limits=[Concurrency(3)])
    async def sms(job: Job) -> None:
        pass

    await client.set_limits("sms", [Concurrency(1)])
    async with pool:
        await until(lambda: pool.job_types["sms"].max_concurrency == 1, timeout=3)
    await client.set_limits("sms", None)  # (limits clear)
    async with pool:
        await until(lambda: pool.job_types["sms"].max_concurrency == 3, timeout=3)


async def test_a_cap_whose_write_failed_is_written_at_the_next_refresh(
    redis: Redis, namespace: str
) -> None:
    from errands.limits.spec import limit_to_dict
    from errands.store.keys import Keys as _Keys
    from errands.worker.limitwatch import LimitWatch

    pool = WorkerPool(redis, namespace=namespace)

    @pool.job("sms", limits=[Concurrency(3)])
    async def sms(job: Job) -> None:
        pass

    keys = _Keys(namespace)
    failing = [True]

    class Flaky:
        def __getattr__(self, name: str) -> object:
            return getattr(redis, name)

        async def hset(self, *args: object, **kwargs: object) -> object:
            if failing.pop() if failing else False:
                raise ConnectionError("lost")
            return await redis.hset(*args, **kwargs)  # type: ignore[arg-type]

    await redis.hset(keys.runtime_limits, "sms", json.dumps([limit_to_dict(Concurrency(2))]))
    watch = LimitWatch(Flaky(), keys, pool.job_types, lambda: None, interval=3600)
    await watch.refresh()  # applied, its cap's write failed
    assert pool.job_types["sms"].max_concurrency == 2
    assert await redis.hget(keys.limits, "sms") is None
    await watch.refresh()  # nothing changed: the cap written again
    assert await redis.hget(keys.limits, "sms") == b"2"
