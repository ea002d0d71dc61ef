"""A concurrency too large for the fetch script (lib/limits.lua refuses a per-partition count of
more than 15 digits, and the whole fetch with it) is refused where it is defined; one written by
hand in Redis is ignored by every pool, which keeps fetching all its names."""

from __future__ import annotations

import logging

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, Concurrency, Enqueuer, Job, WorkerPool
from errands.cli import main
from errands.errors import RegistrationError
from errands.limits.spec import MAX_CONCURRENCY, limit_from_dict
from errands.store.keys import Keys

from .support import until


@pytest.mark.parametrize("per_partition", [False, True])
def test_a_concurrency_is_capped(per_partition: bool) -> None:
    assert Concurrency(MAX_CONCURRENCY, per_partition).limit == MAX_CONCURRENCY
    for bad in (0, MAX_CONCURRENCY + 1, 10**15, 10**16):
        with pytest.raises(ValueError, match=r"1\.\.1000000000"):
            Concurrency(bad, per_partition)


async def test_set_limits_refuses_a_huge_concurrency(redis: Redis, namespace: str) -> None:
    client = Client(redis, namespace=namespace)
    with pytest.raises(ValueError):
        await client.set_limits("a", [Concurrency(10**15, per_partition=True)])
    assert await redis.hlen(Keys(namespace).runtime_limits) == 0


def test_the_cli_refuses_a_huge_concurrency(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ("--redis", redis_url, "--namespace", namespace)
    assert main(["limits", "set", "a", f"concurrency={10**15}:partition", *where]) == 2
    assert "1..1000000000" in capsys.readouterr().err
    assert main(["limits", "show", *where]) == 0
    assert capsys.readouterr().out.strip() == "no limits"


@pytest.mark.parametrize("limit", [10**15, 10**16])
async def test_a_hand_written_huge_concurrency_stops_no_name(
    redis: Redis,
    redis_url: str,
    namespace: str,
    limit: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=2)

    @pool.job("a")
    async def a(job: Job) -> None:
        done.append("a")

    @pool.job("b")
    async def b(job: Job) -> None:
        done.append("b")

    bad = orjson.dumps([{"concurrency": limit, "per_partition": True}])
    await redis.hset(Keys(namespace).runtime_limits, "a", bad)  # (an older version, by hand)
    caplog.set_level(logging.WARNING, "errands.worker")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq, pool:
        await enq.enqueue("a", {})
        await enq.enqueue("b", {})
        await until(lambda: sorted(done) == ["a", "b"])
        assert pool.worker is not None and pool.worker.limit_specs == {}
    warned = [r for r in caplog.records if "runtime limits of a are invalid" in r.getMessage()]
    assert len(warned) == 1


@pytest.mark.parametrize("bad", [-1, MAX_CONCURRENCY + 1, 10**12, 2.5, 3.0, True, False, "3", None])
def test_max_concurrency_follows_the_rule_of_concurrency(bad: object) -> None:
    """``max_concurrency=`` is the type-wide Concurrency's counter: an int (not a bool) up to the
    same cap, 0 for none; anything else is refused when registered, naming the job and value."""
    pool = WorkerPool.from_url("redis://localhost:1", namespace="x")
    for good in (0, 1, MAX_CONCURRENCY):
        pool.register(f"ok{good}", lambda: None, max_concurrency=good)
        assert pool.job_types[f"ok{good}"].max_concurrency == good
    with pytest.raises(RegistrationError, match=rf"^capped: max_concurrency .*got {bad!r}$"):
        pool.register("capped", lambda: None, max_concurrency=bad)
    with pytest.raises(RegistrationError, match=r"0\.\.1000000000"):
        pool.job("decorated", max_concurrency=bad)(lambda: None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "stored",
    [
        {"concurrency": True},
        {"concurrency": True, "per_partition": True},
        {"rate": True, "per_ms": 1000},
        {"rate": 5, "per_ms": True},
        {"concurrency": 2.0},
    ],
)
def test_a_stored_limit_of_a_bool_or_float_is_no_limit(stored: dict[str, object]) -> None:
    """A runtime limit written by hand as ``true`` was read as 1 (``int(True)``)."""
    with pytest.raises(ValueError):
        limit_from_dict(stored)
    assert limit_from_dict({"concurrency": 2}) == Concurrency(2)
