"""Bad values given to an enqueue are refused where they are given, with an error naming the
argument, and nothing is stored; the worker's argument converter takes what JSON holds."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, MutableSet
from collections.abc import Set as AbstractSet
from datetime import date, timedelta
from typing import Any
from unittest.mock import AsyncMock

import pytest
from redis.asyncio import Redis

from errands import (
    Dedup,
    Enqueuer,
    ExponentialBackoff,
    FakeClock,
    FixedBackoff,
    Job,
    JobArgumentError,
    LinearBackoff,
    RetryOptions,
    WorkerPool,
)
from errands.convert import ArgumentMismatch, converter
from errands.handlers import make_binder
from errands.serialization import SerializationError, dumps_json
from errands.store.keys import Keys
from errands.sync import SyncEnqueuer

nan, inf = math.nan, math.inf


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace, clock=FakeClock(), strict=None) as enq:
        yield enq


async def nothing_stored(redis: Redis, namespace: str) -> None:
    assert await redis.hlen(Keys(namespace).jobs) == 0


# -- priority: a bool, refused on every path ------------------------------------------------------
async def test_a_bool_priority_is_refused_on_every_path(
    enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    calls = [
        lambda: enqueuer.enqueue_many([("ok", {}, {"priority": True})]),
        lambda: enqueuer.enqueue_unique("ok", {}, priority=True),
        lambda: enqueuer.enqueue("ok", {}, priority=False, dedup=Dedup("k")),
    ]
    for call in calls:
        with pytest.raises(
            ValueError, match=r"priority must be an int in -1000..1000, got (Tr|Fa)"
        ):
            await call()
    await nothing_stored(redis, namespace)


# -- RetryOptions and the backoffs ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RetryOptions(max_retries=2.5), "max_retries must be an int in 0..999999999"),
        (lambda: RetryOptions(max_retries="3"), "max_retries must be an int"),
        (lambda: RetryOptions(max_retries=True), "max_retries must be an int"),
        (lambda: RetryOptions(max_retries=10**30), "max_retries must be an int"),
        (lambda: RetryOptions(max_retries=nan), "max_retries must be an int"),
        (lambda: RetryOptions(max_retries=-1), "max_retries must be an int"),
        (lambda: RetryOptions(max_fails=0), "max_fails must be an int in 1..1000000000"),
        (lambda: RetryOptions(max_fails=inf), "max_fails must be an int"),
        (lambda: RetryOptions(max_fails=False), "max_fails must be an int"),
        (lambda: LinearBackoff("5"), "LinearBackoff base must be a number of seconds >= 0"),
        (lambda: LinearBackoff(nan), "LinearBackoff base must be"),
        (lambda: LinearBackoff(-1), "LinearBackoff base must be"),
        (lambda: FixedBackoff(inf), "FixedBackoff seconds must be"),
        (lambda: FixedBackoff(True), "FixedBackoff seconds must be"),
        (lambda: ExponentialBackoff(base=nan), "ExponentialBackoff base must be"),
        (lambda: ExponentialBackoff(jitter=inf), "ExponentialBackoff jitter must be"),
        (lambda: ExponentialBackoff(jitter=-1), "ExponentialBackoff jitter must be"),
    ],
)
def test_bad_retry_options_are_refused_naming_the_field(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_good_retry_options_still_work() -> None:
    assert RetryOptions(max_retries=0).to_dict() == {"max_fails": 1}
    assert RetryOptions(max_fails=3, backoff=LinearBackoff(5)).to_dict() == {
        "max_fails": 3,
        "backoff": {"kind": "linear", "base": 5},
    }
    assert FixedBackoff(timedelta(seconds=3)).to_dict() == {"kind": "fixed", "seconds": 3.0}
    assert ExponentialBackoff(base=0, jitter=0).delay(1) == 1.0


# -- delay and timeout ----------------------------------------------------------------------------
@pytest.mark.parametrize("delay", [nan, inf, -inf, "10", "abc", True, -1, 1e300, [1]])
async def test_a_bad_delay_is_refused_naming_delay(
    enqueuer: Enqueuer, redis: Redis, namespace: str, delay: Any
) -> None:
    calls = [
        lambda: enqueuer.enqueue("job1", {"a": 1}, delay=delay),
        lambda: enqueuer.enqueue_unique("job1", {"a": 1}, delay=delay),
        lambda: enqueuer.enqueue("job1", {"a": 1}, delay=delay, dedup=Dedup("k")),
        lambda: enqueuer.enqueue_many([("job1", {}, {"delay": delay})]),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="delay must be a number of seconds >= 0"):
            await call()
    await nothing_stored(redis, namespace)


@pytest.mark.parametrize("timeout", [nan, inf, "5", "abc", True, 0, -1])
async def test_a_bad_timeout_is_refused_naming_timeout(
    enqueuer: Enqueuer, redis: Redis, namespace: str, timeout: Any
) -> None:
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
        await enqueuer.enqueue("job1", {}, timeout=timeout)
    await nothing_stored(redis, namespace)


async def test_good_delays_and_timeouts_still_work(enqueuer: Enqueuer) -> None:
    now = enqueuer.clock.now()
    job = await enqueuer.enqueue("job1", {}, delay=timedelta(seconds=5), timeout=2)
    assert job is not None and job.run_at == now + 5 and job.timeout == 2.0
    job = await enqueuer.enqueue("job1", {}, delay=0, timeout=timedelta(milliseconds=500))
    assert job is not None and job.run_at is None and job.timeout == 0.5


# -- at= of a wrong type --------------------------------------------------------------------------
@pytest.mark.parametrize("at", [1_700_000_000, date(2030, 1, 1), "2030-01-01T00:00:00"])
async def test_at_that_is_not_a_datetime_is_refused_naming_at(
    enqueuer: Enqueuer, redis: Redis, namespace: str, at: Any
) -> None:
    with pytest.raises(TypeError, match=r"^at must be a datetime \(naive = UTC\), got .*delay="):
        await enqueuer.enqueue("job1", {}, at=at)
    await nothing_stored(redis, namespace)


# -- enqueue_unique's ttl -------------------------------------------------------------------------
@pytest.mark.parametrize("ttl", [0, -5, nan, inf, "60", None, 1e300, True])
async def test_a_bad_unique_ttl_is_refused(
    enqueuer: Enqueuer, redis: Redis, namespace: str, ttl: Any
) -> None:
    with pytest.raises(ValueError, match="ttl must be a number of seconds > 0"):
        await enqueuer.enqueue_unique("u", {"a": 3}, ttl=ttl)
    await nothing_stored(redis, namespace)


async def test_a_unique_ttl_as_a_timedelta_works(enqueuer: Enqueuer) -> None:
    assert await enqueuer.enqueue_unique("u", {"a": 3}, ttl=timedelta(minutes=1)) is not None  # type: ignore[arg-type]
    assert await enqueuer.enqueue_unique("u", {"a": 3}, ttl=60) is None


# -- retry=, dedup=, meta= of a wrong type --------------------------------------------------------
async def test_retry_dedup_and_meta_of_a_wrong_type_are_refused(
    enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    with pytest.raises(TypeError, match=r"^retry must be a RetryOptions\(...\), got dict$"):
        await enqueuer.enqueue("job1", {}, retry={"max_retries": 3})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^dedup must be a Dedup\(key, ...\), got str$"):
        await enqueuer.enqueue("job1", {}, dedup="user:7")  # type: ignore[arg-type]
    for meta in (["a"], "ab", [], "", 0, [("k", 1)]):
        with pytest.raises(TypeError, match=r"^meta must be a dict, got "):
            await enqueuer.enqueue("job1", {}, meta=meta)  # type: ignore[arg-type]
    await nothing_stored(redis, namespace)
    job = await enqueuer.enqueue("job1", {}, meta={}, retry=RetryOptions(max_retries=1))
    assert job is not None and not job.meta and job.retry == {"max_fails": 2}


# -- enqueue_many's items -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("items", "error", "message"),
    [
        ([("ok", {}), ("ok",)], TypeError, r"item 1: expected \(name, args\) or \(name, args, o"),
        (["ok"], TypeError, r"item 0: expected \(name, args\) .*got str 'ok'"),
        ({"ok": {}}, TypeError, r"item 0: expected \(name, args\) .*got str 'ok'"),
        ([("ok", {}, {}, "x")], TypeError, r"item 0: expected \(name, args\) or"),
        ([("ok", {}, None)], TypeError, "item 0: options must be a dict, got NoneType"),
        ([("ok", {}, [("priority", 1)])], TypeError, "item 0: options must be a dict, got list"),
        ([("ok", {}, {"delya": 5})], TypeError, "item 0: unknown option 'delya' .enqueue_many t"),
        (
            [("ok", {}, {"dedup": Dedup("k")})],
            TypeError,
            r"'dedup'.*enqueue\(\)'s only",
        ),
        ([("ok", {}), ("ok", "x")], TypeError, "item 1: args of job 'ok' must be a dict, got str"),
        ([("ok", {}), ("o k", {})], ValueError, "^enqueue_many item 1: "),
        ([("ok", {}), ["ok", {}, {"delay": nan}]], ValueError, "item 1: delay must be"),
    ],
)
async def test_a_malformed_enqueue_many_item_is_named(
    enqueuer: Enqueuer, redis: Redis, namespace: str, items: Any, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        await enqueuer.enqueue_many(items)
    await nothing_stored(redis, namespace)


async def test_well_formed_enqueue_many_items_still_work(enqueuer: Enqueuer) -> None:
    jobs = await enqueuer.enqueue_many(
        [("ok", {}), ["ok", {"a": 1}], ("ok", {}, {"priority": 3, "delay": 5}), ("ok", None, {})]
    )
    assert [j.priority for j in jobs] == [0, 0, 3, 0]


# -- Dedup's checks -------------------------------------------------------------------------------
@pytest.mark.parametrize("throttle", [nan, inf, 1e15, "abc", "30", True, 0, -1])
def test_a_bad_dedup_throttle_is_refused(throttle: Any) -> None:
    with pytest.raises(ValueError, match="throttle must be a number of seconds > 0"):
        Dedup("k", throttle=throttle)


def test_dedup_flags_must_be_bools() -> None:
    with pytest.raises(ValueError, match=r"^debounce must be True or False, got 'no'$"):
        Dedup("k", debounce="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^rerun_latest must be True or False, got 2$"):
        Dedup("k", until="finished", rerun_latest=2)  # type: ignore[arg-type]
    assert Dedup("k", throttle=30).window_ms == 30_000
    assert Dedup("k", throttle=timedelta(seconds=2)).window_ms == 2000
    assert Dedup("k", debounce=True).mode == "d"


# -- args JSON cannot hold ------------------------------------------------------------------------
async def test_args_whose_keys_collide_in_json_are_refused(
    enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    for call in (
        enqueuer.enqueue("job1", {1: "a", "1": "b"}),  # type: ignore[dict-item]
        enqueuer.enqueue_unique("job1", {"x": {1: "a", "1": "b"}}),
        enqueuer.enqueue_many([("job1", {1: "a", "1": "b"})]),  # type: ignore[dict-item]
    ):
        with pytest.raises(SerializationError, match=r"keys '?1'? and '?1'?, which are one key"):
            await call
    await nothing_stored(redis, namespace)
    job = await enqueuer.enqueue("job1", {1: "a"})  # type: ignore[dict-item]
    assert job is not None
    stored = await redis.hget(Keys(namespace).jobs, job.id)
    assert stored is not None and enqueuer.serializer.loads(stored)["a"] == {"1": "a"}


async def test_an_arg_json_cannot_hold_is_named(enqueuer: Enqueuer) -> None:
    with pytest.raises(
        SerializationError,
        match=r"^the args of job 'job1' is not JSON-serializable: when is of type set, which JS",
    ):
        await enqueuer.enqueue("job1", {"a": 1, "when": {1, 2}})
    with pytest.raises(
        SerializationError, match=r"not JSON-serializable: x\[0\] is of type object"
    ):
        await enqueuer.enqueue_many([("job1", {"x": [object()]})])


# -- a unique key of nan or inf -------------------------------------------------------------------
@pytest.mark.parametrize("key", [nan, inf, -inf, {"k": [nan]}])
async def test_a_non_finite_unique_key_is_refused(
    enqueuer: Enqueuer, redis: Redis, namespace: str, key: Any
) -> None:
    with pytest.raises(TypeError, match=r"unique key of job 'u' .* is not a finite number"):
        await enqueuer.enqueue_unique("u", {}, key=key)
    await nothing_stored(redis, namespace)


# -- fn.using() given something other than an Enqueuer --------------------------------------------
async def test_using_refuses_what_is_not_an_async_enqueuer(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = WorkerPool(url=redis_url, namespace=namespace)

    @pool.job("strarg")
    async def strarg(address: str) -> None: ...

    with SyncEnqueuer(redis_url, namespace=namespace, strict=None) as sync:
        for wrong in (sync, redis_url):
            with pytest.raises(TypeError, match=r"^using\(\) takes an Enqueuer \(async\), got "):
                strarg.using(wrong)  # type: ignore[arg-type]
        assert sync.enqueue("strarg", strarg.args(address="a")) is not None
    assert await redis.hlen(Keys(namespace).jobs) == 1
    stand_in = AsyncMock()  # (a stand-in of an Enqueuer, as tests pass: taken, as before)
    await strarg.using(stand_in).enqueue(address="b")
    assert stand_in.enqueue.await_count == 1


def test_a_value_holding_itself_is_a_serialization_error() -> None:
    """orjson's recursion refusal is walked for a message: the walk's own RecursionError was
    raised instead of a SerializationError (a handler's result then failed its job)."""
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(SerializationError, match=r"^the result is not JSON-serializable: "):
        dumps_json(looped, "the result")
    with pytest.raises(SerializationError, match=r"^args is not JSON-serializable: "):
        dumps_json({1: looped}, "args")


# -- the worker's converter -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (set, ["a", "b"], {"a", "b"}),
        (frozenset, [1, 1], frozenset({1})),
        (tuple, [1, "x"], (1, "x")),
        (set[str], ["a"], {"a"}),
        (tuple[int, ...], [1, 2], (1, 2)),
        (tuple[()], [], ()),
        (list, [1], [1]),
        (AbstractSet, [1, 1], frozenset({1})),
        (AbstractSet[int], [1], frozenset({1})),
        (MutableSet[str], ["a"], {"a"}),
    ],
)
def test_bare_set_tuple_and_frozenset_take_the_lists_json_holds(
    annotation: Any, value: Any, expected: Any
) -> None:
    got = converter(annotation)(value, "x")
    assert got == expected and type(got) is type(expected)


def test_a_typed_enqueue_of_a_bare_set_reaches_the_handler_as_a_set() -> None:
    pool = WorkerPool(url="redis://localhost:1", namespace="t")

    @pool.job("bare_set")
    async def bare_set(tags: set, pair: tuple, frozen: frozenset) -> None: ...  # type: ignore[type-arg]

    args = bare_set.args(tags={"a", "b"}, pair=(1, 2), frozen=frozenset("c"))
    binder = make_binder("bare_set", bare_set._errands_handler)
    assert binder is not None
    _, kwargs = binder(Job("bare_set", args, id="j1", enqueued_at=0.0))
    assert kwargs == {"tags": {"a", "b"}, "pair": (1, 2), "frozen": frozenset("c")}


@pytest.mark.parametrize(
    ("annotation", "args", "message"),
    [
        (timedelta, {"d": 1e20}, r"bad: argument 'd' must be timedelta, got float 1e\+20"),
        (set[Any], {"d": [[1]]}, "bad: argument 'd' must be set.*an item of which is unhashable"),
        (frozenset[list[int]], {"d": [[1]]}, "bad: argument 'd' must be frozenset.*unhashable"),
        (float, {"d": 10**400}, "bad: argument 'd' must be float, got int"),
        (dict[int, str], {"d": {"1": "a"}}, r"JSON object keys are always strings"),
    ],
)
def test_unconvertible_values_are_job_argument_errors(
    annotation: Any, args: dict[str, Any], message: str
) -> None:
    async def bad(d: Any) -> None: ...

    bad.__annotations__["d"] = annotation
    binder = make_binder("bad", bad)
    assert binder is not None
    with pytest.raises(JobArgumentError, match=message):
        binder(Job("bad", args, id="j1", enqueued_at=0.0))
    with pytest.raises(ArgumentMismatch):
        converter(annotation)(args["d"], "d")
