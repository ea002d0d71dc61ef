"""Enqueueing: stored jobs, argument checks, scheduling, batches and per-job priority."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from redis.asyncio import Redis

from errands import Enqueuer, FakeClock, Job, RetryOptions, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker.requeuer import Requeuer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str, clock: FakeClock) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace, clock=clock) as enq:
        yield enq


async def stored(redis: Redis, keys: Keys, job_id: str) -> dict[str, object]:
    raw = await redis.hget(keys.jobs, job_id)
    assert raw is not None, f"job {job_id} is not in the jobs hash"
    return orjson.loads(raw)  # type: ignore[no-any-return]


async def queue_ids(redis: Redis, keys: Keys, name: str) -> list[str]:
    return [m.decode() for m in await redis.zrange(keys.queue(name), 0, -1)]


# -- storing ---------------------------------------------------------------------------------
async def test_enqueue_returns_stored_job(redis: Redis, namespace: str, enqueuer: Enqueuer) -> None:
    keys = Keys(namespace)
    job = await enqueuer.enqueue("send_email", {"address": "a@example.com", "n": 3})
    assert isinstance(job, Job)
    assert job.id and len(job.id) >= 16
    assert job.name == "send_email"
    assert job.args == {"address": "a@example.com", "n": 3}
    env = await stored(redis, keys, job.id)
    assert env["n"] == "send_email"
    assert env["a"] == {"address": "a@example.com", "n": 3}
    assert env["t"] == FakeClock().now()
    assert await queue_ids(redis, keys, "send_email") == [job.id]
    assert await redis.sismember(keys.names, "send_email")
    # ids are unique per job
    other = await enqueuer.enqueue("send_email", {"address": "a@example.com", "n": 3})
    assert other is not None and other.id != job.id
    assert await queue_ids(redis, keys, "send_email") == [job.id, other.id]


async def test_enqueue_without_args_stores_empty_dict(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    job = await enqueuer.enqueue("tick")
    assert job is not None
    assert (await stored(redis, Keys(namespace), job.id))["a"] == {}


@pytest.mark.parametrize("bad", [[1, 2], "address", 5, ("a", 1)])
async def test_args_must_be_a_dict(
    redis: Redis, namespace: str, enqueuer: Enqueuer, bad: object
) -> None:
    with pytest.raises(TypeError, match=r"args of job 'send_email' must be a dict"):
        await enqueuer.enqueue("send_email", bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a dict"):
        await enqueuer.enqueue_many([("send_email", bad)])  # type: ignore[list-item]
    assert await redis.hlen(Keys(namespace).jobs) == 0


@pytest.mark.parametrize(
    "name",
    # (docs/enqueueing.md: 1 to 200 characters, no whitespace, quote, backslash, brace, colon)
    [
        "",
        "a:b",
        "a{b}",
        "line\nbreak",
        "nul\x00",
        None,
        7,
        "a b",
        'q"uote',
        "back\\slash",
        "x" * 201,
    ],
)
async def test_invalid_names_raise(
    redis: Redis, namespace: str, enqueuer: Enqueuer, name: object
) -> None:
    with pytest.raises(ValueError, match="invalid job name"):
        await enqueuer.enqueue(name, {})  # type: ignore[arg-type]
    assert await redis.hlen(Keys(namespace).jobs) == 0


async def test_a_name_of_200_characters_is_taken(enqueuer: Enqueuer) -> None:
    job = await enqueuer.enqueue("x" * 200, {})
    assert job is not None and job.name == "x" * 200


async def test_unserializable_args_raise(redis: Redis, namespace: str, enqueuer: Enqueuer) -> None:
    with pytest.raises(ValueError, match="JSON-serializable"):
        await enqueuer.enqueue("x", {"when": object()})
    assert await redis.hlen(Keys(namespace).jobs) == 0


# -- scheduling ------------------------------------------------------------------------------
NOW_MS = int(FakeClock().now() * 1000)


@pytest.mark.parametrize(
    ("kwargs", "due_ms"),
    [
        ({"delay": timedelta(minutes=5)}, NOW_MS + 300_000),
        ({"delay": 90}, NOW_MS + 90_000),
        ({"delay": 2.5}, NOW_MS + 2_500),
        ({"at": datetime(2026, 1, 1, 1, 0, tzinfo=UTC)}, NOW_MS + 3_600_000),
        # aware, not UTC: 03:00 at +02:00 is 01:00 UTC
        (
            {"at": datetime(2026, 1, 1, 3, 0, tzinfo=timezone(timedelta(hours=2)))},
            NOW_MS + 3_600_000,
        ),
        # naive means UTC, whatever the local timezone
        ({"at": datetime(2026, 1, 2, 0, 0)}, NOW_MS + 86_400_000),
    ],
)
async def test_scheduled_jobs_land_in_scheduled_set(
    redis: Redis,
    namespace: str,
    enqueuer: Enqueuer,
    kwargs: dict[str, object],
    due_ms: int,
) -> None:
    keys = Keys(namespace)
    job = await enqueuer.enqueue("report", {"x": 1}, **kwargs)  # type: ignore[arg-type]
    assert job is not None
    assert await redis.zscore(keys.scheduled("report"), job.id) == due_ms
    assert await redis.zcard(keys.queue("report")) == 0
    assert await redis.hexists(keys.jobs, job.id)


async def test_naive_at_is_utc_even_with_a_local_timezone(
    redis: Redis, namespace: str, enqueuer: Enqueuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        job = await enqueuer.enqueue("report", {}, at=datetime(2026, 1, 1, 2, 0))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert job is not None
    assert await redis.zscore(Keys(namespace).scheduled("report"), job.id) == NOW_MS + 7_200_000


async def test_past_or_zero_schedule_goes_straight_to_queue(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    a = await enqueuer.enqueue("report", {}, delay=0)
    b = await enqueuer.enqueue("report", {}, at=datetime(2025, 1, 1, tzinfo=UTC))
    assert a is not None and b is not None
    assert a.run_at is None and b.run_at is None  # (docs/enqueueing.md: job.run_at)
    assert await queue_ids(redis, keys, "report") == [a.id, b.id]
    assert await redis.zcard(keys.scheduled("report")) == 0


async def test_bad_schedules_raise(enqueuer: Enqueuer) -> None:
    with pytest.raises(ValueError, match="not both"):
        await enqueuer.enqueue("r", {}, delay=5, at=datetime(2027, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="delay must be a number of seconds >= 0"):
        await enqueuer.enqueue("r", {}, delay=-1)
    with pytest.raises(ValueError, match="delay must be a number of seconds >= 0"):
        await enqueuer.enqueue("r", {}, delay=timedelta(seconds=-1))


async def test_scheduled_job_runs_only_when_due(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, clock: FakeClock
) -> None:
    ran: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, clock=clock, concurrency=2)

    @pool.job("report")
    async def report(job: Job) -> None:
        ran.append(job.id)

    job = await enqueuer.enqueue("report", {}, delay=60)
    assert job is not None
    async with pool:
        await pool.drain(timeout=5)
        assert ran == []
        clock.advance(59.9)
        await pool.drain(timeout=5)
        assert ran == []
        clock.advance(0.1)
        await pool.drain(timeout=5)
        assert ran == [job.id]
    assert await redis.zcard(Keys(namespace).scheduled("report")) == 0


# -- batches ---------------------------------------------------------------------------------
async def test_enqueue_many_stores_all_in_one_call(
    redis: Redis, namespace: str, enqueuer: Enqueuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(namespace)
    calls = 0
    original = enqueuer._bulk.enqueue

    async def counting(*args: object, **kwargs: object) -> int:
        nonlocal calls
        calls += 1
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(enqueuer._bulk, "enqueue", counting)
    jobs = await enqueuer.enqueue_many(
        [
            ("a", {"i": 1}),
            ("b", {"i": 2}),
            ("a", {"i": 3}, {"priority": 5}),
            ("c", None, {"delay": 30}),
            ("b", {"i": 4}, {"meta": {"trace": "t1"}, "retry": RetryOptions(max_retries=2)}),
        ]
    )
    assert calls == 1
    assert [j.name for j in jobs] == ["a", "b", "a", "c", "b"]
    assert len({j.id for j in jobs}) == 5
    assert await redis.hlen(keys.jobs) == 5
    # priority 5 goes ahead of the earlier priority-0 job of the same name
    assert await queue_ids(redis, keys, "a") == [jobs[2].id, jobs[0].id]
    assert await queue_ids(redis, keys, "b") == [jobs[1].id, jobs[4].id]
    assert await redis.zcard(keys.queue("c")) == 0
    assert await redis.zscore(keys.scheduled("c"), jobs[3].id) == NOW_MS + 30_000
    env = await stored(redis, keys, jobs[4].id)
    assert env["m"] == {"trace": "t1"}
    assert env["r"] == {"max_fails": 3}
    assert (await stored(redis, keys, jobs[2].id))["p"] == 5
    assert {m.decode() for m in await redis.smembers(keys.names)} == {"a", "b", "c"}


async def test_a_job_holds_no_empty_meta_or_context_until_used(enqueuer: Enqueuer) -> None:
    """enqueue_many builds thousands of jobs at once: each holds its args, and makes its meta
    and context dicts on first use (two empty dicts per job cost their garbage collections)."""
    job = (await enqueuer.enqueue_many([("a", {"i": 1})]))[0]
    assert [r for r in gc.get_referents(job) if isinstance(r, dict)] == [job.args]
    assert "m" not in job.envelope()
    job.meta["trace"] = "t1"
    job.context["db"] = "x"
    assert job.meta == {"trace": "t1"} and job.context == {"db": "x"}
    assert job.envelope()["m"] == {"trace": "t1"}
    shared: dict[str, object] = {}
    job.context = shared  # (as a pool gives each job its shared dict)
    assert job.context is shared


async def test_enqueue_many_empty_and_bad_item(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    assert await enqueuer.enqueue_many([]) == []
    with pytest.raises(ValueError, match="invalid job name"):
        await enqueuer.enqueue_many([("ok", {}), ("bad:name", {})])
    # nothing of a rejected batch is stored
    assert await redis.hlen(Keys(namespace).jobs) == 0


# -- per-job priority ------------------------------------------------------------------------
async def test_priority_orders_queue_higher_first_then_fifo(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    plan = [0, 5, 0, -3, 5, 1000, -1000, 0]
    ids = []
    for i, prio in enumerate(plan):
        job = await enqueuer.enqueue("work", {"i": i}, priority=prio)
        assert job is not None
        ids.append(job.id)
    expected = [ids[i] for i in sorted(range(len(plan)), key=lambda i: (-plan[i], i))]
    assert await queue_ids(redis, keys, "work") == expected


async def test_priority_order_when_run(redis_url: str, namespace: str, enqueuer: Enqueuer) -> None:
    order: list[int] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=1)

    @pool.job("work")
    async def work(job: Job, i: int) -> None:
        order.append(i)

    plan = [0, 2, 0, 1, 2, -1, 0]
    for i, prio in enumerate(plan):
        await enqueuer.enqueue("work", {"i": i}, priority=prio)
    await pool.drain(timeout=10)
    assert order == sorted(range(len(plan)), key=lambda i: (-plan[i], i))


async def test_priority_survives_promotion(
    redis: Redis, namespace: str, enqueuer: Enqueuer, clock: FakeClock
) -> None:
    """A delayed high-priority job still jumps the queue when it is promoted."""
    keys = Keys(namespace)
    low = [await enqueuer.enqueue("work", {"i": i}) for i in range(3)]
    high = await enqueuer.enqueue("work", {"i": 9}, priority=10, delay=5)
    assert high is not None and all(low)
    requeuer = Requeuer(Scripts(redis, keys), ["work"], clock)
    assert await requeuer.promote_once() == (0, NOW_MS + 5_000)
    clock.advance(5)
    assert await requeuer.promote_once() == (1, -1)
    ids = await queue_ids(redis, keys, "work")
    assert ids == [high.id] + [j.id for j in low if j]


@pytest.mark.parametrize("prio", [1001, -1001, 1.5, "1"])
async def test_priority_out_of_range_raises(
    redis: Redis, namespace: str, enqueuer: Enqueuer, prio: object
) -> None:
    with pytest.raises(ValueError, match=r"priority must be an int in -1000\.\.1000"):
        await enqueuer.enqueue("work", {}, priority=prio)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="priority"):
        await enqueuer.enqueue_many([("work", {}, {"priority": prio})])
    assert await redis.hlen(Keys(namespace).jobs) == 0
