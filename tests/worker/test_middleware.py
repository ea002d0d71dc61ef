"""Middleware around handlers and enqueue, and startup/shutdown hooks sharing the context."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import (
    Enqueuer,
    Job,
    Middleware,
    Next,
    NonRetryableError,
    RetryLater,
    WorkerPool,
)
from errands.errors import RegistrationError
from errands.store.keys import Keys


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace) as enq:
        yield enq


@pytest.fixture
def pool(redis_url: str, namespace: str) -> WorkerPool:
    return WorkerPool.from_url(redis_url, namespace=namespace, concurrency=1)


async def dead_error(redis: Redis, namespace: str, job_id: str) -> str | None:
    keys = Keys(namespace)
    if await redis.zscore(keys.dead, job_id) is None:
        return None
    raw = await redis.hget(keys.errors, job_id)
    return str(orjson.loads(raw)["error"]) if raw else ""


async def test_middleware_order_and_return_value(pool: WorkerPool, enqueuer: Enqueuer) -> None:
    log: list[str] = []

    def make(tag: str) -> Any:
        async def mw(job: Job, next: Next) -> Any:
            log.append(f"{tag}>")
            result = await next()
            log.append(f"<{tag}:{result}")
            return result

        return mw

    class Outer(Middleware):
        async def process(self, job: Job, next: Next) -> Any:
            log.append("obj>")
            result = await next()
            log.append(f"<obj:{result}")
            return result

    pool.middleware(make("first"))
    pool.middleware(Outer())
    pool.middleware(make("last"))

    @pool.job("add")
    async def add(job: Job, a: int, b: int) -> int:
        log.append("handler")
        return a + b

    await enqueuer.enqueue("add", {"a": 2, "b": 3})
    await pool.drain(timeout=5)
    assert log == ["first>", "obj>", "last>", "handler", "<last:5", "<obj:5", "<first:5"]


async def test_middleware_decorator_returns_the_function(pool: WorkerPool) -> None:
    async def mw(job: Job, next: Next) -> Any:
        return await next()

    assert pool.middleware(mw) is mw
    with pytest.raises(RegistrationError):
        pool.middleware(42)


async def test_middleware_wraps_sync_handlers(pool: WorkerPool, enqueuer: Enqueuer) -> None:
    seen: list[Any] = []

    async def mw(job: Job, next: Next) -> Any:
        result = await next()
        seen.append(result)
        return result

    pool.middleware(mw)

    @pool.job("mul")
    def mul(job: Job, a: int, b: int) -> int:
        return a * b

    await enqueuer.enqueue("mul", {"a": 6, "b": 7})
    await pool.drain(timeout=5)
    assert seen == [42]


async def test_shared_middleware_sets_meta_at_enqueue_and_reads_it_at_process(
    redis: Redis, redis_url: str, namespace: str, pool: WorkerPool
) -> None:
    class Trace(Middleware):
        def __init__(self) -> None:
            self.n = 0
            self.processed: list[tuple[str, str]] = []

        async def enqueue(self, job: Job, next: Next) -> Any:
            self.n += 1
            job.meta["trace"] = f"trace-{self.n}"
            return await next()

        async def process(self, job: Job, next: Next) -> Any:
            self.processed.append((job.args["i"], job.meta["trace"]))
            return await next()

    trace = Trace()
    handler_meta: list[dict[str, Any]] = []
    pool.middleware(trace)

    @pool.job("work")
    async def work(job: Job) -> None:
        handler_meta.append(dict(job.meta))

    async with Enqueuer(redis, namespace=namespace, middleware=[trace]) as enq:
        job = await enq.enqueue("work", {"i": "a"}, meta={"user": "u1"})
        assert job is not None and job.meta == {"user": "u1", "trace": "trace-1"}
        env = orjson.loads(await redis.hget(Keys(namespace).jobs, job.id))
        assert env["m"] == {"user": "u1", "trace": "trace-1"}
        await enq.enqueue_many([("work", {"i": "b"}), ("work", {"i": "c"})])
        await enq.enqueue_unique("work", {"i": "d"})
    await pool.drain(timeout=5)
    assert sorted(trace.processed) == [
        ("a", "trace-1"),
        ("b", "trace-2"),
        ("c", "trace-3"),
        ("d", "trace-4"),
    ]
    assert {"user": "u1", "trace": "trace-1"} in handler_meta


async def test_enqueue_middleware_can_drop_jobs(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)

    class DropTests(Middleware):
        async def enqueue(self, job: Job, next: Next) -> Any:
            if job.args.get("test"):
                return None
            return await next()

    async with Enqueuer(redis, namespace=namespace, middleware=[DropTests()]) as enq:
        assert await enq.enqueue("work", {"test": True}) is None
        assert await enq.enqueue_unique("work", {"test": True}) is None
        kept = await enq.enqueue_many([("work", {"test": True}), ("work", {"i": 1})])
        assert [j.args for j in kept] == [{"i": 1}]
        assert await enq.enqueue("work", {"i": 2}) is not None
    assert await redis.hlen(keys.jobs) == 2
    assert await redis.zcard(keys.queue("work")) == 2
    assert await redis.hlen(keys.unique) == 0


async def test_enqueue_middleware_that_calls_next_stores_the_job(
    redis: Redis, namespace: str
) -> None:
    """Calling next() is what stores a job, even if the middleware forgets to return its value."""
    calls: list[str] = []

    class Audit(Middleware):
        async def enqueue(self, job: Job, next: Next) -> Any:
            calls.append(job.name)
            await next()  # no return: a common slip

    async with Enqueuer(redis, namespace=namespace, middleware=[Audit()]) as enq:
        job = await enq.enqueue("work", {"i": 1})
        assert job is not None
        assert len(await enq.enqueue_many([("work", {"i": 2})])) == 1
    assert calls == ["work", "work"]
    assert await redis.hlen(Keys(namespace).jobs) == 2


async def test_enqueue_many_checks_every_item_before_the_first_hook(
    redis: Redis, namespace: str
) -> None:
    calls: list[object] = []

    class Audit(Middleware):
        async def enqueue(self, job: Job, next: Next) -> Any:
            calls.append(job.args["i"])
            return await next()

    async with Enqueuer(redis, namespace=namespace, middleware=[Audit()], strict=None) as enq:
        with pytest.raises(ValueError, match="invalid job name"):
            await enq.enqueue_many([("ok", {"i": 1}), ("bad:name", {"i": 2})])
        assert calls == []
        jobs = await enq.enqueue_many([("ok", {"i": 3}), ("ok", {"i": 4}, {"priority": 2})])
    assert calls == [3, 4] and [j.args["i"] for j in jobs] == [3, 4]
    assert await redis.hlen(Keys(namespace).jobs) == 2


async def test_enqueue_middleware_chain_order(redis: Redis, namespace: str) -> None:
    log: list[str] = []

    class Tag(Middleware):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        async def enqueue(self, job: Job, next: Next) -> Any:
            log.append(f"{self.tag}>")
            job.meta.setdefault("path", []).append(self.tag)
            result = await next()
            log.append(f"<{self.tag}")
            return result

    async with Enqueuer(redis, namespace=namespace, middleware=[Tag("a"), Tag("b")]) as enq:
        job = await enq.enqueue("work", {})
    assert log == ["a>", "b>", "<b", "<a"]
    assert job is not None and job.meta["path"] == ["a", "b"]


async def test_enqueue_middleware_requires_enqueue_method(redis: Redis, namespace: str) -> None:
    async def process_only(job: Job, next: Next) -> Any:
        return await next()

    with pytest.raises(RegistrationError):
        Enqueuer(redis, namespace=namespace, middleware=[process_only])


async def test_startup_and_shutdown_hooks_share_context(
    pool: WorkerPool, enqueuer: Enqueuer
) -> None:
    events: list[str] = []
    seen: list[tuple[Any, Any]] = []

    @pool.on_startup
    def open_db(context: dict[str, Any]) -> None:
        events.append("startup-sync")
        context["db"] = "db-conn"

    @pool.on_startup
    async def open_cache(context: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        events.append("startup-async")
        context["cache"] = f"cache-for-{context['db']}"

    @pool.on_shutdown
    async def close_cache(context: dict[str, Any]) -> None:
        events.append(f"shutdown-async:{context.pop('cache')}")

    @pool.on_shutdown
    def close_db(context: dict[str, Any]) -> None:
        events.append(f"shutdown-sync:{context.pop('db')}:{'cache' in context}")

    @pool.job("work")
    async def work(job: Job) -> None:
        events.append("job")
        seen.append((job.context["db"], job.context["cache"]))
        job.context["touched"] = True

    @pool.job("sync_work")
    def sync_work(job: Job) -> None:
        seen.append((job.context["db"], job.context["cache"]))

    await enqueuer.enqueue("work", {})
    await enqueuer.enqueue("sync_work", {})
    async with pool:
        assert pool.context["db"] == "db-conn"
        await pool.drain(timeout=5)
        assert pool.context["touched"] is True
    assert seen == [("db-conn", "cache-for-db-conn")] * 2
    assert events == [
        "startup-sync",
        "startup-async",
        "job",
        "shutdown-async:cache-for-db-conn",
        "shutdown-sync:db-conn:False",
    ]
    assert pool.context == {"touched": True}


async def test_middleware_that_raises_fails_the_job(
    redis: Redis, namespace: str, pool: WorkerPool, enqueuer: Enqueuer
) -> None:
    ran: list[str] = []

    async def guard(job: Job, next: Next) -> Any:
        if job.args["where"] == "before":
            raise PermissionError("not allowed")
        result = await next()
        if job.args["where"] == "after":
            raise ValueError(f"bad result {result}")
        return result

    pool.middleware(guard)

    @pool.job("work", max_fails=1)
    async def work(job: Job, where: str) -> str:
        ran.append(where)
        return "r"

    before = await enqueuer.enqueue("work", {"where": "before"})
    after = await enqueuer.enqueue("work", {"where": "after"})
    fine = await enqueuer.enqueue("work", {"where": "nowhere"})
    assert before and after and fine
    await pool.drain(timeout=5)
    assert ran == ["after", "nowhere"]
    assert await dead_error(redis, namespace, before.id) == "PermissionError: not allowed"
    assert await dead_error(redis, namespace, after.id) == "ValueError: bad result r"
    assert await dead_error(redis, namespace, fine.id) is None
    assert not await redis.hexists(Keys(namespace).jobs, fine.id)


async def test_middleware_failure_is_retried_like_a_handler_failure(
    redis: Redis, namespace: str, pool: WorkerPool, enqueuer: Enqueuer
) -> None:
    async def flaky(job: Job, next: Next) -> Any:
        raise RuntimeError("middleware broke")

    pool.middleware(flaky)

    @pool.job("work", max_fails=3)
    async def work(job: Job) -> None: ...

    job = await enqueuer.enqueue("work", {})
    assert job is not None
    await pool.drain(timeout=5)
    keys = Keys(namespace)
    assert await redis.zscore(keys.retry("work"), job.id) is not None
    env = orjson.loads(await redis.hget(keys.jobs, job.id))
    assert env["f"] == 1


async def test_middleware_can_swallow_a_failure(
    redis: Redis, namespace: str, pool: WorkerPool, enqueuer: Enqueuer
) -> None:
    async def forgiving(job: Job, next: Next) -> Any:
        try:
            return await next()
        except RuntimeError:
            return "forgiven"

    pool.middleware(forgiving)

    @pool.job("work", max_fails=1)
    async def work(job: Job) -> None:
        raise RuntimeError("boom")

    job = await enqueuer.enqueue("work", {})
    assert job is not None
    await pool.drain(timeout=5)
    keys = Keys(namespace)
    assert await redis.zcard(keys.dead) == 0
    assert not await redis.hexists(keys.jobs, job.id)
    assert await redis.hget(keys.stats, "processed") == b"1"


async def test_middleware_that_returns_without_next_skips_the_handler_as_a_success(
    redis: Redis, namespace: str, pool: WorkerPool, enqueuer: Enqueuer
) -> None:
    ran: list[str] = []

    async def skipping(job: Job, next: Next) -> Any:
        return "skipped"

    pool.middleware(skipping)

    @pool.job("work", max_fails=1)
    async def work(job: Job) -> None:
        ran.append(job.id)

    job = await enqueuer.enqueue("work", {})
    assert job is not None
    await pool.drain(timeout=5)
    keys = Keys(namespace)
    assert ran == []
    assert not await redis.hexists(keys.jobs, job.id)
    assert await redis.zcard(keys.dead) == 0
    assert await redis.hget(keys.stats, "processed") == b"1"


async def test_middleware_can_raise_non_retryable_error_or_retry_later(
    redis: Redis, namespace: str, pool: WorkerPool, enqueuer: Enqueuer
) -> None:
    ran: list[str] = []

    async def gate(job: Job, next: Next) -> Any:
        if job.args["verdict"] == "never":
            raise NonRetryableError("refused")
        if job.args["verdict"] == "later":
            raise RetryLater(30)
        return await next()

    pool.middleware(gate)

    @pool.job("work", max_fails=5)
    async def work(job: Job, verdict: str) -> None:
        ran.append(verdict)

    never = await enqueuer.enqueue("work", {"verdict": "never"})
    later = await enqueuer.enqueue("work", {"verdict": "later"})
    assert never and later
    before = time.time()
    await pool.drain(timeout=5)
    keys = Keys(namespace)
    assert ran == []
    # NonRetryableError: dead after one attempt, though max_fails is 5
    assert await dead_error(redis, namespace, never.id) == "NonRetryableError: refused"
    assert await redis.zscore(keys.retry("work"), never.id) is None
    # RetryLater(30): snoozed 30 s, no failure counted
    due = await redis.zscore(keys.scheduled("work"), later.id)
    assert due is not None and before + 29 <= due / 1000 <= time.time() + 31
    assert await redis.zscore(keys.retry("work"), later.id) is None
    stored = await redis.hget(keys.jobs, later.id)
    assert stored is not None and "f" not in orjson.loads(stored)
    assert await dead_error(redis, namespace, later.id) is None


async def test_middleware_runs_inside_the_jobs_timeout(
    redis: Redis, namespace: str, pool: WorkerPool, enqueuer: Enqueuer
) -> None:
    ran: list[str] = []

    async def slow(job: Job, next: Next) -> Any:
        await asyncio.sleep(30)
        return await next()

    pool.middleware(slow)

    @pool.job("work", timeout=0.2, max_fails=1)
    async def work(job: Job) -> None:
        ran.append(job.id)

    job = await enqueuer.enqueue("work", {})
    assert job is not None
    async with asyncio.timeout(10):
        await pool.drain()
    assert ran == []
    assert await dead_error(redis, namespace, job.id) == "TimeoutError: timed out after 0.2s"


async def test_failing_startup_hook_aborts_start_and_a_retry_really_starts(
    pool: WorkerPool, enqueuer: Enqueuer
) -> None:
    attempts: list[int] = []
    ran: list[str] = []

    @pool.on_startup
    async def connect_db(context: dict[str, Any]) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionRefusedError("database is down")
        context["db"] = "up"

    @pool.job("work")
    async def work(job: Job) -> None:
        ran.append(job.context["db"])

    await enqueuer.enqueue("work", {})
    with pytest.raises(ConnectionRefusedError, match="database is down"):
        await pool.start()
    assert pool.worker is None
    async with pool:
        assert pool.worker is not None
        await pool.drain(timeout=5)
    assert len(attempts) == 2
    assert ran == ["up"]


async def test_failing_shutdown_hook_does_not_skip_the_rest_of_stop(
    redis: Redis, namespace: str, pool: WorkerPool
) -> None:
    events: list[str] = []

    @pool.on_shutdown
    def broken(context: dict[str, Any]) -> None:
        raise RuntimeError("close failed")

    @pool.on_shutdown
    async def second(context: dict[str, Any]) -> None:
        events.append("second")

    @pool.job("work")
    async def work(job: Job) -> None: ...

    await pool.start()
    heartbeater = pool.heartbeater
    assert heartbeater is not None
    assert await redis.zscore(Keys(namespace).pools, pool.id) is not None
    with pytest.raises(RuntimeError, match="close failed"):
        await pool.stop()
    assert events == ["second"]
    assert not heartbeater._thread.is_alive()
    assert await redis.zscore(Keys(namespace).pools, pool.id) is None
    await pool.stop()  # stopped for real: a second stop is a no-op


trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)


async def test_plain_def_handlers_see_context_variables_set_by_middleware(
    pool: WorkerPool, enqueuer: Enqueuer
) -> None:
    """docs/middleware.md: a context variable set in ``process`` is seen by the handler, in
    its thread too (the job task's context is copied into it)."""
    seen: list[tuple[str, str | None]] = []

    async def tracing(job: Job, next: Next) -> Any:
        trace_id.set(f"trace-{job.args['n']}")
        return await next()

    pool.middleware(tracing)

    @pool.job("in_thread")
    def in_thread(job: Job, n: int) -> None:
        seen.append((threading.current_thread().name, trace_id.get()))

    @pool.job("in_task")
    async def in_task(job: Job, n: int) -> None:
        seen.append(("task", trace_id.get()))

    await enqueuer.enqueue("in_thread", {"n": 1})
    await enqueuer.enqueue("in_task", {"n": 2})
    await pool.drain(timeout=10)
    assert sorted(seen, key=lambda s: str(s[1])) == [
        ("errands-job-1", "trace-1"),
        ("task", "trace-2"),
    ]
    assert trace_id.get() is None  # nothing leaked into the test's own context
