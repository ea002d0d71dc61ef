"""Bad registration options of ``@pool.job``, ``pool.register``, ``iterable_job``, ``batch_job``
and ``limiter``: refused at registration with a RegistrationError naming the job and the
argument (a nan max_fails left jobs stuck in progress, a nan timeout timed out at random, a float
max_size broke every batch fetch, ``"no"`` turned a flag on)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from errands import BatchOutcome, Job, Rate, RegistrationError, WorkerPool

NAN, INF = float("nan"), float("inf")


async def handler(job: Job) -> None:
    return None


@pytest.fixture
def pool(redis_url: str, namespace: str) -> WorkerPool:
    return WorkerPool.from_url(redis_url, namespace=namespace)


BAD = [
    ("max_fails", NAN),
    ("max_fails", 2.5),
    ("max_fails", True),
    ("max_fails", None),
    ("max_fails", "3"),
    ("max_fails", 0),
    ("timeout", NAN),
    ("timeout", INF),
    ("timeout", "5"),
    ("timeout", True),
    ("timeout", 0),
    ("priority", None),
    ("priority", 1.5),
    ("priority", True),
    ("priority", 0),
    ("result_ttl", None),
    ("result_ttl", "60"),
    ("result_ttl", True),
    ("result_ttl", NAN),
    ("result_ttl", INF),
    ("strict_result", "no"),
    ("strict_result", 2),
    ("skip_dead", "no"),
    ("skip_dead", None),
]


@pytest.mark.parametrize(("option", "value"), BAD)
def test_bad_job_options_are_refused(pool: WorkerPool, option: str, value: object) -> None:
    with pytest.raises(RegistrationError, match=f"^j: {option} must be"):
        pool.register("j", handler, **{option: value})
    with pytest.raises(RegistrationError, match=f"^k: {option} must be"):
        pool.job("k", **{option: value})(handler)
    assert pool.job_types == {}


def test_good_job_options_are_kept(pool: WorkerPool) -> None:
    pool.job("j", timeout=timedelta(seconds=2), result_ttl=60, strict_result=True)(handler)
    pool.register("k", handler, max_fails=1, timeout=0.5, result_ttl=timedelta(0), skip_dead=True)
    j, k = pool.job_types["j"], pool.job_types["k"]
    assert (j.timeout, j.result_ttl, j.strict_result) == (2.0, 60.0, True)
    assert (k.max_fails, k.timeout, k.result_ttl_ms, k.skip_dead) == (1, 0.5, 0, True)


async def gen(job: Job, cursor: Any) -> AsyncIterator[Any]:
    yield 1


async def batch(jobs: list[Job]) -> BatchOutcome:
    return BatchOutcome()


@pytest.mark.parametrize("value", [NAN, INF, True, "5", None, -1])
def test_bad_checkpoint_every_is_refused(pool: WorkerPool, value: object) -> None:
    with pytest.raises(RegistrationError, match=r"^it: checkpoint_every must be"):
        pool.iterable_job("it", checkpoint_every=value)(gen)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [2.5, True, None, "5", 0, 10_001])
def test_bad_max_size_is_refused(pool: WorkerPool, value: object) -> None:
    with pytest.raises(RegistrationError, match=r"^b: max_size must be an int in 1\.\.10000"):
        pool.batch_job("b", max_size=value)(batch)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [NAN, INF, True, "1", None, -1])
def test_bad_max_wait_is_refused(pool: WorkerPool, value: object) -> None:
    with pytest.raises(RegistrationError, match=r"^b: max_wait must be"):
        pool.batch_job("b", max_wait=value)(batch)  # type: ignore[arg-type]


def test_long_job_durations_take_timedeltas(pool: WorkerPool) -> None:
    pool.iterable_job("it", checkpoint_every=timedelta(seconds=2))(gen)
    pool.batch_job("b", max_size=3, max_wait=timedelta(milliseconds=500))(batch)
    assert pool.job_types["it"].handler.every == 2.0
    assert pool.job_types["b"].handler.max_wait == 0.5


@pytest.mark.parametrize("value", [NAN, 1.5, True, None, "2", -1])
def test_bad_max_snoozes_is_refused(pool: WorkerPool, value: object) -> None:
    with pytest.raises(RegistrationError, match="limiter 'api': max_snoozes must be an int >= 0"):
        pool.limiter("api", Rate(1, per=1), max_snoozes=value)  # type: ignore[arg-type]
    assert pool.limiter("api", Rate(1, per=1), max_snoozes=0).max_snoozes == 0
