"""Typed handlers (issue 6): handlers without the Job parameter, args converted to their
annotations on the worker, bad args straight to dead naming the field, the typed enqueue side."""

from __future__ import annotations

import asyncio
import enum
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, RegistrationError, WorkerPool, current_job
from errands.store.keys import Keys


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Address:
    street: str
    zip: int


@dataclass
class User:
    id: int
    name: str
    tags: list[str] = field(default_factory=list)
    address: Address | None = None


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace) as enq:
        yield enq


@pytest.fixture
def pool(redis_url: str, namespace: str, enqueuer: Enqueuer) -> WorkerPool:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    pool.bind_enqueuer(enqueuer)
    return pool


async def dead_error(redis: Redis, namespace: str, job_id: str) -> str:
    keys = Keys(namespace)
    assert await redis.zscore(keys.dead, job_id) is not None, "the job should be dead"
    raw = await redis.hget(keys.errors, job_id)
    assert raw is not None
    return str(raw.decode())


async def test_handler_without_the_job(pool: WorkerPool) -> None:
    calls: list[tuple[str, str]] = []

    @pool.job("send_email")
    async def send_email(address: str, subject: str = "hi") -> str:
        calls.append((address, subject))
        return f"sent to {address}"

    job = await send_email.enqueue(address="a@b.c")
    await send_email.enqueue("d@e.f", subject="yo")
    await pool.drain(timeout=5)
    assert sorted(calls) == [("a@b.c", "hi"), ("d@e.f", "yo")]
    assert job is not None and job.args == {"address": "a@b.c"}
    assert await job.result(timeout=5) == "sent to a@b.c"
    # still the plain function
    assert await send_email("x@y.z") == "sent to x@y.z"
    assert send_email.__name__ == "send_email" and send_email.name == "send_email"
    assert pool.job_types["send_email"].handler is send_email._errands_handler


async def test_args_are_converted_to_their_annotations(pool: WorkerPool) -> None:
    seen: dict[str, Any] = {}

    @pool.job("convert")
    async def convert(
        when: datetime,
        day: date,
        wait: timedelta,
        ref: uuid.UUID,
        amount: Decimal,
        colour: Colour,
        user: User,
        counts: dict[str, float],
        pair: tuple[int, str],
        ids: set[int],
        mode: Literal["fast", "slow"] = "fast",
        note: str | None = None,
    ) -> None:
        seen.update({k: v for k, v in locals().items() if k != "seen"})

    values: dict[str, Any] = {
        "when": datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
        "day": date(2026, 3, 1),
        "wait": timedelta(minutes=5),
        "ref": uuid.uuid4(),
        "amount": Decimal("12.50"),
        "colour": Colour.BLUE,
        "user": User(7, "ada", ["x"], Address("Main St", 12345)),
        "counts": {"a": 1, "b": 2.5},
        "pair": (1, "one"),
        "ids": {3, 1},
        "mode": "slow",
    }
    job = await convert.enqueue(**values)
    assert job is not None
    assert job.args["when"] == "2026-03-01T12:30:00+00:00"  # stored as JSON
    assert job.args["user"] == {
        "id": 7,
        "name": "ada",
        "tags": ["x"],
        "address": {"street": "Main St", "zip": 12345},
    }
    await pool.drain(timeout=5)
    assert seen == {**values, "note": None}
    assert type(seen["counts"]["a"]) is float


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "missing argument 'user'"),
        ({"user": {"id": 1, "name": "a"}, "extra": 1}, "unexpected argument 'extra'"),
        ({"user": {"id": "1", "name": "a"}}, "argument 'user.id' must be int, got str '1'"),
        ({"user": {"name": "a"}}, "missing argument 'user.id'"),
        ({"user": {"id": 1, "name": "a", "x": 0}}, "unexpected argument 'user.x'"),
        ({"user": {"id": 1, "name": "a", "tags": ["a", 2]}}, "argument 'user.tags[1]' must be str"),
        ({"user": {"id": 1, "name": "a"}, "when": "yesterday"}, "argument 'when' must be datetime"),
        ({"user": {"id": 1, "name": "a"}, "colour": "green"}, "argument 'colour' must be one of"),
        ({"user": {"id": 1, "name": "a"}, "level": "max"}, "argument 'level' must be Literal"),
        ({"user": [1, "a"]}, "argument 'user' must be User, got list"),
    ],
)
async def test_bad_args_go_straight_to_dead(
    pool: WorkerPool, enqueuer: Enqueuer, redis: Redis, namespace: str, args: Any, message: str
) -> None:
    calls: list[Any] = []

    @pool.job("register_user", max_fails=5)
    async def register_user(
        user: User,
        when: datetime | None = None,
        colour: Colour = Colour.RED,
        level: Literal["low", "high"] = "low",
    ) -> None:
        calls.append(user)

    job = await enqueuer.enqueue("register_user", args)
    assert job is not None
    await pool.drain(timeout=5)
    assert calls == []
    error = await dead_error(redis, namespace, job.id)
    assert f'"JobArgumentError: register_user: {message}' in error, error
    assert '"attempt":1' in error  # not retried


async def test_pydantic_models(pool: WorkerPool, enqueuer: Enqueuer, redis: Redis) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Order(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        id: int
        items: list[str]
        placed: datetime

    orders: list[Any] = []

    async def place(order: Order) -> None:
        orders.append(order)

    place.__annotations__["order"] = Order  # a local class: annotations cannot resolve it
    fn = pool.job("place")(place)
    order = Order(id=1, items=["a"], placed=datetime(2026, 1, 1, tzinfo=UTC))
    await fn.enqueue(order)
    bad = await enqueuer.enqueue("place", {"order": {"id": "x", "items": [], "placed": "2026"}})
    assert bad is not None
    await pool.drain(timeout=5)
    assert orders == [order]
    error = await dead_error(redis, pool.namespace, bad.id)
    assert "place: argument 'order.id'" in error, error


async def test_which_first_parameter_is_the_job(pool: WorkerPool, enqueuer: Enqueuer) -> None:
    got: list[Any] = []

    @pool.job("by_name")
    async def by_name(job, n: int) -> None:  # type: ignore[no-untyped-def]
        got.append(("by_name", type(job), n))

    @pool.job("by_annotation")
    def by_annotation(j: Job, n: int) -> None:  # a sync handler, in a thread
        got.append(("by_annotation", type(j), n))

    @pool.job("neither")
    async def neither(jobs: int, n: int = 0) -> None:
        got.append(("neither", jobs, n, current_job().name, current_job().attempt))

    @pool.job("no_args")
    async def no_args() -> None:
        got.append(("no_args",))

    await by_name.enqueue(n=1)
    await by_annotation.enqueue(2)
    await neither.enqueue(3)
    await no_args.enqueue()
    await pool.drain(timeout=5)
    assert sorted(got, key=str) == sorted(
        [
            ("by_name", Job, 1),
            ("by_annotation", Job, 2),
            ("neither", 3, 0, "neither", 1),
            ("no_args",),
        ],
        key=str,
    )
    with pytest.raises(RuntimeError, match="inside a running handler"):
        current_job()


async def test_enqueue_options_unique_and_many(
    pool: WorkerPool, enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    ran: list[int] = []

    @pool.job("count")
    async def count(n: int) -> None:
        ran.append(n)

    later = await count.using(delay=3600, priority=5).enqueue(1)
    assert later is not None and later.run_at is not None and later.priority == 5
    assert await count.using(unique=True).enqueue(2) is not None
    assert await count.using(unique=True).enqueue(2) is None
    assert await count.using(key="k").enqueue(3) is not None
    assert await count.using(key="k").enqueue(4) is None  # replaced the waiting job's args
    jobs = await enqueuer.enqueue_many([count.item(5), count.item(n=6)])
    assert len(jobs) == 2
    await pool.drain(timeout=5)
    assert sorted(ran) == [2, 4, 5, 6]
    other = Enqueuer(redis, namespace=namespace)
    assert await count.using(other).enqueue(7) is not None


async def test_enqueue_checks_args_and_needs_an_enqueuer(
    redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("send")
    async def send(address: str) -> None: ...

    with pytest.raises(RuntimeError, match="bind_enqueuer"):
        await send.enqueue("a")
    with pytest.raises(TypeError, match="send: missing a required argument: 'address'"):
        await send.using(enqueuer).enqueue()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'adress'"):
        send.args("a", adress="b")  # type: ignore[call-arg]
    with pytest.raises(RegistrationError, match="namespace"):
        pool.bind_enqueuer(Enqueuer(enqueuer.redis, namespace="elsewhere"))
    pool.bind_enqueuer(enqueuer)
    pool.bind_enqueuer(None)
    assert pool.bound_enqueuer is None


async def test_handlers_enqueue_follow_ups_through_the_running_pool(
    redis_url: str, namespace: str
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    done = asyncio.Event()

    @pool.job("second")
    async def second(value: str) -> None:
        assert value == "from first"
        done.set()

    @pool.job("first")
    async def first() -> None:
        await second.enqueue("from first")  # no bound enqueuer: the pool's own connection

    async with pool, Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await first.using(enqueuer).enqueue()
        await asyncio.wait_for(done.wait(), timeout=5)


def test_a_job_function_can_be_registered_on_another_pool(redis_url: str) -> None:
    a = WorkerPool.from_url(redis_url, namespace="a")
    b = WorkerPool.from_url(redis_url, namespace="b")

    @a.job("work")
    async def work(n: int) -> None: ...

    b.register("work", work)
    assert b.job_types["work"].handler is a.job_types["work"].handler
    assert b.job_types["work"].is_async


def test_an_arq_style_ctx_first_parameter_fails_at_registration() -> None:
    """Issue 16: ``ctx`` first would be a required job argument, failing every job at run time
    with "missing argument 'ctx'"; registration says what to write instead."""
    pool = WorkerPool.from_url("redis://localhost:6379/0", namespace="ctx-check")
    with pytest.raises(RegistrationError) as caught:

        @pool.job("arq_style")
        async def arq_style(ctx: dict[str, object], a: int) -> None: ...

    message = str(caught.value)
    assert message.startswith("arq_style: the handler's first parameter is 'ctx', as in arq")
    assert "async def handler(job: Job, ...)" in message and "job.context" in message
    assert "arq_style" not in pool.job_types

    @pool.job("job_first")  # the right way, and a keyword-only ctx argument is fine
    async def job_first(job: Job, a: int, *, ctx: str = "") -> None: ...


async def _partial_handler(tag: str, job: Job) -> None:
    _SEEN.append((tag, current_job() is job))


_SEEN: list[tuple[str, bool]] = []


async def test_current_job_in_handlers_taking_just_the_job(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    """Without middleware, Worker._run sets the current job itself for a handler taking just
    the job (call_handler's first branch): a function, a callable object, a partial."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=2, shutdown_grace=0.5)
    _SEEN.clear()

    @pool.job("plain")
    async def plain(job: Job) -> None:
        _SEEN.append(("plain", current_job() is job))

    class Handler:
        async def __call__(self, job: Job) -> None:
            _SEEN.append(("object", current_job() is job))

    pool.register("object", Handler())
    pool.register("partial", functools.partial(_partial_handler, "partial"))
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        jobs = [
            await enqueuer.enqueue(name, {}) for name in ("plain", "plain", "object", "partial")
        ]
    async with pool:
        await pool.drain(timeout=5)
    assert sorted(_SEEN) == [("object", True), ("partial", True), ("plain", True), ("plain", True)]
    for job in jobs:
        assert job is not None and await job.result(timeout=5) is None
