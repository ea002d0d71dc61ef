"""Bad values given to an enqueue are refused where they are given, with an error naming the
argument, and nothing is stored; the worker's argument converter takes what JSON holds."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import (
    Dedup,
    Enqueuer,
    ExponentialBackoff,
    FakeClock,
    FixedBackoff,
    LinearBackoff,
    RetryOptions,
)
from errands.store.keys import Keys

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
