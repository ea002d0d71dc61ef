"""Bad input: corrupt queue entries, mistyped job args, wrong registrations, unreachable Redis."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import (
    Enqueuer,
    Job,
    JobArgumentError,
    RedisUnavailableError,
    RegistrationError,
    WorkerPool,
)
from errands.store.keys import Keys


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace) as enq:
        yield enq


async def error_of(redis: Redis, keys: Keys, job_id: str) -> str:
    raw = await redis.hget(keys.errors, job_id)
    assert raw is not None, f"no error recorded for {job_id}"
    return str(orjson.loads(raw)["error"])


async def is_dead(redis: Redis, keys: Keys, job_id: str) -> bool:
    return await redis.zscore(keys.dead, job_id) is not None


# -- corrupt queue entries -------------------------------------------------------------------
CORRUPT = {
    "garbage": b"\x00\x01not json at all{",
    "invalid_utf8": b'{"n": "work", "a": {"x": "\xff\xfe"}, "t": 1}',
    "json_array": b'["work", {"x": 1}]',
    "json_string": b'"work"',
    "no_name": b'{"a": {}, "t": 1}',
    "args_not_object": b'{"n": "work", "a": [1, 2], "t": 1}',
    "bad_field_type": b'{"n": "work", "a": {}, "t": "yesterday"}',
    "empty": b"",
    # fields only read when the job fails: must be caught up front, not strand the job then
    "retry_not_object": b'{"n": "work", "a": {}, "t": 1, "r": "often"}',
    "max_fails_not_int": b'{"n": "work", "a": {}, "t": 1, "r": {"max_fails": "lots"}}',
    "meta_not_object": b'{"n": "work", "a": {}, "t": 1, "m": [1]}',
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
async def test_corrupt_entry_is_buried_and_the_pool_goes_on(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, kind: str
) -> None:
    keys = Keys(namespace)
    done: list[int] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=1)

    @pool.job("work")
    async def work(job: Job, i: int) -> None:
        done.append(i)

    await enqueuer.enqueue("work", {"i": 0})
    bad_id = f"corrupt-{kind}"
    await redis.hset(keys.jobs, bad_id, CORRUPT[kind])
    await redis.zadd(keys.queue("work"), {bad_id: -1})  # at the head of the queue
    for i in range(1, 4):
        await enqueuer.enqueue("work", {"i": i})
    await pool.drain(timeout=5)
    assert done == [0, 1, 2, 3]
    assert await is_dead(redis, keys, bad_id)
    error = await error_of(redis, keys, bad_id)
    assert "undecodable" in error
    assert await redis.hget(keys.running, "work") == b"0"
    assert await redis.zcard(keys.in_progress(pool.id)) == 0
    assert await redis.hget(keys.stats, "processed") == b"4"


async def test_entry_naming_another_job_is_buried(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    done: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("work")
    async def work(job: Job) -> None:
        done.append(job.id)

    @pool.job("other")
    async def other(job: Job) -> None:
        done.append("other ran a work job!")

    await redis.hset(keys.jobs, "x1", orjson.dumps({"n": "other", "a": {}, "t": 1}))
    await redis.zadd(keys.queue("work"), {"x1": -1})
    ok = await enqueuer.enqueue("work", {})
    assert ok is not None
    await pool.drain(timeout=5)
    assert done == [ok.id]
    assert await is_dead(redis, keys, "x1")
    assert "'other'" in await error_of(redis, keys, "x1")


async def test_queue_entry_without_payload_is_skipped(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    done: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("work")
    async def work(job: Job) -> None:
        done.append(job.id)

    await redis.zadd(keys.queue("work"), {"ghost": -1})
    ok = await enqueuer.enqueue("work", {})
    assert ok is not None
    await pool.drain(timeout=5)
    assert done == [ok.id]
    assert await redis.zcard(keys.queue("work")) == 0
    assert await redis.hget(keys.running, "work") == b"0"


# -- argument binding ------------------------------------------------------------------------
@pytest.fixture
def typed_pool(redis_url: str, namespace: str) -> tuple[WorkerPool, list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("send", max_fails=5)
    async def send(job: Job, address: str, count: int = 1, ratio: float = 1.0) -> None:
        calls.append({"address": address, "count": count, "ratio": ratio})

    return pool, calls


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"address": 5}, "argument 'address' must be str, got int 5"),
        ({"address": None}, "argument 'address' must be str"),
        ({"address": "a", "count": "3"}, "argument 'count' must be int, got str"),
        ({"address": "a", "count": True}, "argument 'count' must be int, got bool"),
        ({"address": "a", "count": 2.5}, "argument 'count' must be int, got float"),
        ({"address": "a", "ratio": "x"}, "argument 'ratio' must be float"),
        ({}, "missing argument 'address'"),
        ({"count": 2}, "missing argument 'address'"),
        ({"address": "a", "colour": "red"}, "unexpected argument 'colour'"),
    ],
)
async def test_bad_args_go_straight_to_dead_naming_the_field(
    redis: Redis,
    namespace: str,
    enqueuer: Enqueuer,
    typed_pool: tuple[WorkerPool, list[dict[str, Any]]],
    args: dict[str, Any],
    message: str,
) -> None:
    keys = Keys(namespace)
    pool, calls = typed_pool
    job = await enqueuer.enqueue("send", args)
    assert job is not None
    await pool.drain(timeout=5)
    assert calls == []
    assert await is_dead(redis, keys, job.id), "a JobArgumentError is never retried"
    assert await redis.zcard(keys.retry("send")) == 0
    error = await error_of(redis, keys, job.id)
    assert error.startswith("JobArgumentError: send: ")
    assert message in error


async def test_good_args_are_bound(
    namespace: str, enqueuer: Enqueuer, typed_pool: tuple[WorkerPool, list[dict[str, Any]]]
) -> None:
    pool, calls = typed_pool
    await enqueuer.enqueue("send", {"address": "a"})
    await enqueuer.enqueue("send", {"address": "b", "count": 3, "ratio": 2})
    await pool.drain(timeout=5)
    assert sorted(calls, key=lambda c: c["address"]) == [
        {"address": "a", "count": 1, "ratio": 1.0},
        {"address": "b", "count": 3, "ratio": 2},
    ]


async def test_optional_and_container_annotations(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    calls: list[Any] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("tag", max_fails=3)
    async def tag(job: Job, tags: list[str], note: str | None = None, **extra: Any) -> None:
        calls.append((tags, note, extra))

    ok = await enqueuer.enqueue("tag", {"tags": ["a"], "note": None, "anything": 1})
    bad = await enqueuer.enqueue("tag", {"tags": "a"})
    bad_note = await enqueuer.enqueue("tag", {"tags": [], "note": 3})
    assert ok and bad and bad_note
    await pool.drain(timeout=5)
    assert calls == [(["a"], None, {"anything": 1})]
    assert "argument 'tags' must be list" in await error_of(redis, keys, bad.id)
    assert "argument 'note'" in await error_of(redis, keys, bad_note.id)
    assert await is_dead(redis, keys, bad.id) and await is_dead(redis, keys, bad_note.id)


async def test_types_checked_when_another_annotation_cannot_be_resolved(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    """``job: Job`` imported under TYPE_CHECKING only must not switch off every type check."""
    keys = Keys(namespace)
    calls: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("send", max_fails=3)
    async def send(job: OnlyForTypeCheckers, address: str) -> None:  # type: ignore[name-defined]  # noqa: F821
        calls.append(address)

    ok = await enqueuer.enqueue("send", {"address": "a@example.com"})
    bad = await enqueuer.enqueue("send", {"address": 5})
    assert ok and bad
    await pool.drain(timeout=5)
    assert calls == ["a@example.com"]
    assert await is_dead(redis, keys, bad.id)
    assert "argument 'address' must be str" in await error_of(redis, keys, bad.id)


def test_job_argument_error_is_non_retryable() -> None:
    from errands import NonRetryableError

    assert issubclass(JobArgumentError, NonRetryableError)
    assert issubclass(JobArgumentError, TypeError)


# -- registration ----------------------------------------------------------------------------
async def noop(job: Job) -> None: ...


def test_registering_a_name_twice_raises(redis_url: str, namespace: str) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    pool.register("work", noop)
    with pytest.raises(RegistrationError, match="'work' is already registered"):
        pool.register("work", noop)
    with pytest.raises(RegistrationError, match="already registered"):

        @pool.job("work")
        async def again(job: Job) -> None: ...

    assert pool.job_types["work"].handler is noop


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_fails": 0}, "max_fails"),
        ({"max_fails": -3}, "max_fails"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.5}, "timeout"),
        ({"timeout": timedelta(0)}, "timeout"),
        ({"priority": 0}, "priority"),
        ({"priority": 100_001}, "priority"),
        ({"max_concurrency": -1}, "max_concurrency"),
    ],
)
def test_invalid_options_raise_at_registration(
    redis_url: str, namespace: str, options: dict[str, Any], message: str
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    with pytest.raises(RegistrationError, match=message):

        @pool.job("work", **options)
        async def work(job: Job) -> None: ...

    assert "work" not in pool.job_types


@pytest.mark.parametrize("name", ["", "a:b", "a{b", "new\nline"])
def test_invalid_job_names_raise_at_registration(redis_url: str, namespace: str, name: str) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    with pytest.raises(RegistrationError):
        pool.register(name, noop)


def test_handler_must_be_callable_with_keyword_args(redis_url: str, namespace: str) -> None:
    # a handler without parameters is fine since typed handlers (issue 6): it takes no args
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    with pytest.raises(RegistrationError, match="positional-only"):

        @pool.job("work")
        async def work(job: Job, n: int, /) -> None: ...

    with pytest.raises(RegistrationError, match="not callable"):
        pool.register("other", "not a function")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": -1},
        {"heartbeat_interval": 5, "dead_timeout": 6},
        {"max_recoveries": 0},
        # (accepted before, misbehaving once the pool ran)
        {"poll_interval": -1},
        {"poll_interval": float("nan")},
        {"shutdown_grace": -5},
        {"shutdown_grace": "30"},
        {"dead_timeout": float("nan")},
        {"heartbeat_interval": float("inf")},
        {"dead_max_jobs": -3},
        {"dead_max_jobs": 1.5},
        {"history_max": -1},
        {"schedule_refresh": 0},
        {"dead_max_age": -1},
        {"history_retention": timedelta(days=-2)},
        {"history_retention": 2.0**60},
        {"max_recoveries": True},
        {"redis_functions": "no"},
        {"history": "no"},
    ],
)
def test_invalid_pool_options_raise(redis_url: str, options: dict[str, Any]) -> None:
    name = next(iter(options)) if len(options) == 1 else "dead_timeout"
    with pytest.raises(RegistrationError, match=name):
        WorkerPool.from_url(redis_url, **options)


@pytest.mark.parametrize(
    "options",
    [
        {"shutdown_grace": 0, "dead_max_age": 0, "history_retention": timedelta(0)},
        {"dead_max_jobs": 0, "history_max": 0, "history": False, "redis_functions": False},
        {"shutdown_grace": timedelta(minutes=1), "poll_interval": 0.01, "schedule_refresh": 5},
    ],
)
def test_pool_options_at_their_bounds_are_taken(redis_url: str, options: dict[str, Any]) -> None:
    pool = WorkerPool.from_url(redis_url, **options)
    for name, value in options.items():
        want = value.total_seconds() if isinstance(value, timedelta) else value
        assert getattr(pool, name) == want


def test_pool_needs_redis() -> None:
    with pytest.raises(RegistrationError):
        WorkerPool()


async def test_register_after_start_raises(redis_url: str, namespace: str) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    pool.register("work", noop)
    async with pool:
        with pytest.raises(RegistrationError):
            pool.register("late", noop)
        with pytest.raises(RegistrationError, match="before the pool starts"):
            pool.middleware(lambda job, next: next())


async def test_start_without_jobs_raises(redis_url: str, namespace: str) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    with pytest.raises(RegistrationError, match="no job types"):
        await pool.start()


# -- unreachable Redis -----------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_enqueuer_to_closed_port_raises_with_redacted_url() -> None:
    port = closed_port()
    url = f"redis://user:secret@127.0.0.1:{port}/0"
    enq = Enqueuer.from_url(url, namespace="x")
    try:
        async with asyncio.timeout(10):
            with pytest.raises(RedisUnavailableError) as info:
                await enq.enqueue("work", {})
    finally:
        await enq.aclose()
    message = str(info.value)
    assert f"redis://user:***@127.0.0.1:{port}/0" in message
    assert "secret" not in message
    assert isinstance(info.value, ConnectionError)


async def test_enqueuer_to_port_1_raises_with_redacted_url() -> None:
    enq = Enqueuer.from_url("redis://user:secret@127.0.0.1:1/0")
    try:
        with pytest.raises(RedisUnavailableError, match=r"redis://user:\*\*\*@127\.0\.0\.1:1/0"):
            await enq.enqueue_many([("work", {})])
        with pytest.raises(RedisUnavailableError) as info:
            await enq.enqueue_unique("work", {})
    finally:
        await enq.aclose()
    assert "secret" not in str(info.value)


async def test_pool_to_closed_port_raises_with_redacted_url() -> None:
    port = closed_port()
    pool = WorkerPool.from_url(f"redis://:hunter2@127.0.0.1:{port}/3")
    pool.register("work", noop)
    with pytest.raises(RedisUnavailableError) as info:
        await pool.start()
    assert f"127.0.0.1:{port}/3" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


def test_malformed_url_is_reported_without_password() -> None:
    with pytest.raises(RedisUnavailableError) as info:
        Enqueuer.from_url("redis://user:secret@127.0.0.1:notaport/0")
    assert "secret" not in str(info.value)


# -- results JSON cannot hold (issue 16) -----------------------------------------------------
async def test_a_non_json_result_is_null_with_a_warning_or_with_strict_result_an_error(
    redis: Redis, redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("lenient")
    async def lenient(kind: str) -> Any:
        return float("nan") if kind == "nan" else object()

    @pool.job("strict", strict_result=True, max_fails=3)
    async def strict(kind: str) -> Any:
        return float("inf") if kind == "inf" else {1, 2}

    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        jobs = [
            await enqueuer.enqueue("lenient", {"kind": "nan"}),
            await enqueuer.enqueue("lenient", {"kind": "object"}),
            await enqueuer.enqueue("strict", {"kind": "inf"}),
            await enqueuer.enqueue("strict", {"kind": "set"}),
        ]
        assert all(jobs)
        await pool.drain(timeout=10)
        nan, obj, inf, a_set = (j.id for j in jobs if j)
        # lenient: finished, the result stored as null (not NaN, which orjson wrote as null
        # silently), and a warning saying why
        assert await enqueuer.result(nan, timeout=1) is None
        assert await enqueuer.result(obj, timeout=1) is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "errands.worker"]
    assert any(
        f"lenient {nan}: the result is not JSON-serializable: the value is not a finite number" in w
        and "stored as null (strict_result=True makes it an error)" in w
        for w in warnings
    ), warnings
    # strict: dead at once (not retried: the handler's side effects are done), saying why
    for job_id, why in ((inf, "the value is not a finite number"), (a_set, "Type is not JSON")):
        assert await is_dead(redis, keys, job_id)
        error = await error_of(redis, keys, job_id)
        assert error.startswith("NonRetryableError: the result is not JSON-serializable")
        assert why in error
    assert await redis.hget(keys.stats, "processed") == b"2"
