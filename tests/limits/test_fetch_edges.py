"""Edges of the limits in the fetch and limiter scripts, on the scripts alone (no pools: exact):
several rates with one window, malformed specs, and unpartitioned jobs behind a long run of
blocked partitioned ones (a name's keys of another type: test_name_keys_skipped.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Concurrency, Enqueuer, Rate
from errands.clock import to_ms
from errands.errors import RegistrationError
from errands.handlers import JobType
from errands.limits import compile_limits
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker.limiter import Limiter
from tests.support.invariants import assert_invariants

MINUTE = timedelta(minutes=1)


async def setup(redis: Redis, namespace: str, items: list[tuple[str, dict[str, str]]]) -> int:
    """Enqueue ``(name, options)`` jobs, register pool "p"; the time for the fetches."""
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        await enq.enqueue_many([(name, {}, options) for name, options in items])  # type: ignore[misc]
        now = to_ms(enq.clock.now())
    await Scripts(redis, Keys(namespace)).heartbeat("p", b"{}", 60_000, mode="register")
    return now


async def test_two_type_wide_rates_with_one_window_count_each_start_once(
    redis: Redis, namespace: str
) -> None:
    scripts = Scripts(redis, Keys(namespace))
    now = await setup(redis, namespace, [("sms", {})] * 10)
    _, spec = compile_limits([Rate(5, per=MINUTE), Rate(8, per=MINUTE)])
    first = await scripts.fetch("p", now, 3, [("sms", 0)], specs={"sms": spec})
    assert len(first) == 3
    # 3 of the 5 a minute are taken: 2 more may start (not 0: the starts counted once)
    second = await scripts.fetch("p", now, 10, [("sms", 0)], specs={"sms": spec})
    assert len(second) == 2
    await assert_invariants(redis, namespace)


async def test_a_type_wide_and_a_per_partition_rate_with_one_window(
    redis: Redis, namespace: str
) -> None:
    scripts = Scripts(redis, Keys(namespace))
    items = [("call", {"partition": p}) for p in ("a", "b", "c") for _ in range(4)]
    now = await setup(redis, namespace, items)
    _, spec = compile_limits([Rate(5, per=MINUTE), Rate(2, per=MINUTE, per_partition=True)])
    got = await scripts.fetch("p", now, 3, [("call", 0)], specs={"call": spec})
    assert len(got) == 3  # one of each partition
    got = await scripts.fetch("p", now, 10, [("call", 0)], specs={"call": spec})
    assert len(got) == 2  # the type-wide 5 a minute, of which 3 went before
    assert await scripts.fetch("p", now, 10, [("call", 0)], specs={"call": spec}) == []
    await assert_invariants(redis, namespace)


def test_compiling_keeps_the_lowest_rate_of_each_window() -> None:
    limits = [Rate(8, per=MINUTE), Rate(5, per=MINUTE), Rate(3, per=MINUTE, per_partition=True)]
    limits += [Rate(100, per=timedelta(hours=1)), Rate(4, per=MINUTE, per_partition=True)]
    assert compile_limits(limits) == (0, "r=5/60000;R=3/60000;r=100/3600000")


async def test_a_limiter_with_two_rates_of_one_window_counts_each_start_once(
    redis: Redis, namespace: str
) -> None:
    scripts = Scripts(redis, Keys(namespace))
    rates = [(3, 60_000), (5, 60_000)]
    assert [await scripts.limiter("api", rates) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await scripts.limiter("api", rates) > 0


def test_compiling_refuses_more_than_16_rate_windows_of_a_kind() -> None:
    """REVIEW F6: a fetch and a settle read and write each window's log; the spec is capped."""
    rates = [Rate(1, per=timedelta(seconds=1 + i)) for i in range(16)]
    both = rates + [Rate(1, per=r.per, per_partition=True) for r in rates]
    assert compile_limits([*both, Rate(2, per=timedelta(seconds=1))])[1].count(";") == 31
    for extra in (Rate(1, per=MINUTE), Rate(1, per=MINUTE, per_partition=True)):
        with pytest.raises(ValueError, match="at most 16"):
            compile_limits([*both, extra])
    with pytest.raises(RegistrationError, match="at most 16"):
        JobType("sms", lambda: None, limits=(*rates, Rate(1, per=MINUTE)))


async def test_a_spec_of_16_windows_fetches(redis: Redis, namespace: str) -> None:
    now = await setup(redis, namespace, [("first", {"partition": "a"})])
    spec = ";".join(f"{k}=5/{1000 + i}" for k in "rR" for i in range(16))
    got = await Scripts(redis, Keys(namespace)).fetch(
        "p", now, 1, [("first", 0)], specs={"first": spec}
    )
    assert got is not None and len(got) == 1


MANY = ";".join(f"R=5/{1000 + i}" for i in range(17))
OVER_MAX = ["r=1000000001/1000", "R=1000000001/1000"]  # (limits/spec.py's MAX_RATE, 10^9)


@pytest.mark.parametrize(
    "bad", ["r=10", "R=3", "r=10/0", "c=0", "r=0/1000", "x=1", "r=1/1000;", MANY, *OVER_MAX]
)
async def test_a_malformed_spec_fails_the_fetch_before_any_write(
    redis: Redis, namespace: str, bad: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    now = await setup(redis, namespace, [("first", {}), ("second", {"partition": "a"})])
    before = await redis.dump(keys.queue("first"))
    with pytest.raises(ResponseError, match="limits spec"):
        await scripts.fetch("p", now, 10, [("first", 0), ("second", 0)], specs={"second": bad})
    assert await redis.dump(keys.queue("first")) == before
    assert await redis.hlen(keys.attempts) == 0
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize(
    "bad",
    [[(10, 0)], [(0, 1000)], [(10,)], [(5, 1001 + i) for i in range(16)], [(10**9 + 1, 1000)]],
)
async def test_a_malformed_limiter_call_writes_nothing(
    redis: Redis, namespace: str, bad: list[tuple[int, ...]]
) -> None:
    scripts = Scripts(redis, Keys(namespace))
    with pytest.raises(ResponseError, match="limiter"):
        await scripts.limiter("api", [(5, 1000), *bad])  # type: ignore[list-item]
    assert await redis.exists(Keys(namespace).limiter("api")) == 0


async def test_set_limits_refuses_what_the_pools_could_not_read(
    redis: Redis, namespace: str
) -> None:
    client = Client(redis, namespace=namespace)
    with pytest.raises(TypeError):
        await client.set_limits("sms", [Rate(5), "rate=1/1s"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        await client.set_limits("sms", Rate(5))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await client.set_limits("bad name!", [Rate(5)])
    with pytest.raises(ValueError, match="at most 16"):
        await client.set_limits("sms", [Rate(1, per=timedelta(seconds=1 + i)) for i in range(17)])
    with pytest.raises(RegistrationError, match="at most 16"):
        Limiter("api", tuple(Rate(1, per=timedelta(seconds=1 + i)) for i in range(17)), None, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # per rounds to 0 ms
        await client.set_limits("sms", [Rate(5, per=timedelta(microseconds=10))])
    assert await redis.exists(Keys(namespace).runtime_limits) == 0
    await client.set_limits("sms", [Rate(5), Concurrency(1, per_partition=True)])
    assert (await client.limits())["sms"].runtime == (Rate(5), Concurrency(1, True))


async def test_blocked_partitions_do_not_hide_unpartitioned_jobs(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    spec = {"charge": "c=1"}
    now = await setup(redis, namespace, [("charge", {"partition": "a"})])
    first = await scripts.fetch("p", now, 4, [("charge", 0)], specs=spec)
    assert len(first) == 1  # partition "a" is now busy
    items = [("charge", {"partition": "a"})] * 400 + [("charge", {})]
    await setup(redis, namespace, items)
    plain = (await redis.zrange(keys.queue("charge"), -1, -1))[0].decode()
    fetches = 0
    while True:
        fetches += 1
        got = await scripts.fetch("p", now, 4, [("charge", 0)], specs=spec)
        if got:
            break
        # nothing taken, more to look at: the pool is told to come back at once
        assert got.wait is not None and got.wait <= 0.001
        # docs/limits.md: found within n / (4 x batch) fetches (25 here: the 25th finds it)
        assert fetches < 400 // (4 * 4), "the unpartitioned job stays hidden behind a's jobs"
    assert [f.id for f in got] == [plain]
    # each fetch looked at a bounded window: 400 entries at 4 x 4 + 4 x 4 a fetch
    assert fetches >= 400 // 32
    # the pass reached the end: the next fetch finds nothing and does not ask to come back
    again = await scripts.fetch("p", now, 4, [("charge", 0)], specs=spec)
    assert again == [] and again.wait is None
    await assert_invariants(redis, namespace)
