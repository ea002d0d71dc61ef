"""Bad limit specs: clear ValueErrors naming ``Rate per`` or ``per_partition`` (not raw
conversion errors), per_partition a bool, and a window of a fraction of a ms rounded up, the same
at registration and in set_limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import Redis

from errands import Client, Concurrency, Rate
from errands.limits import compile_limits
from errands.limits.spec import parse_limit

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("per", [NAN, INF, "1s", None, 10**30, True, -1, timedelta(seconds=-1)])
def test_rate_per_must_be_seconds_or_a_timedelta(per: object) -> None:
    with pytest.raises(ValueError, match=r"^Rate per must be a timedelta or seconds, 1 ms to 366"):
        Rate(5, per=per)  # type: ignore[arg-type]


def test_rate_per_bounds_keep_their_messages() -> None:
    with pytest.raises(ValueError, match="at least 1 ms"):
        Rate(5, per=0.0004)
    with pytest.raises(ValueError, match="at most 366 days"):
        Rate(5, per=timedelta(days=366, microseconds=1))


def test_a_fraction_of_a_ms_is_rounded_up() -> None:
    assert Rate(5, per=0.0019).per_ms == 2  # (was 1: looser than asked)
    assert Rate(5, per=0.0015) == Rate(5, per=timedelta(milliseconds=2))
    assert compile_limits([Rate(5, per=0.0015), Rate(3, per=0.0019)]) == (0, "r=3/2")
    assert Rate(5, per=0.29).per_ms == 290  # (whole ms stay as they are)
    assert Rate(1, per=timedelta(days=366)).per_ms == 366 * 86_400_000


@pytest.mark.parametrize("value", ["no", None, 2, 1.0])
def test_per_partition_must_be_a_bool(value: object) -> None:
    with pytest.raises(ValueError, match=r"^Rate per_partition must be True or False"):
        Rate(5, per_partition=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Concurrency per_partition must be True or False"):
        Concurrency(2, per_partition=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [None, 5, "rate=٣/1s", "concurrency=٢"])
def test_parse_limit_refuses_non_text_and_non_ascii_digits(text: object) -> None:
    with pytest.raises(ValueError, match=r"^not a limit"):
        parse_limit(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["rate=10/999999999999h", "rate=10/1" + "0" * 400 + "s"])
def test_parse_limit_refuses_huge_windows_with_the_rate_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"^Rate per must be"):
        parse_limit(text)


async def test_set_limits_takes_what_registration_takes(redis: Redis, namespace: str) -> None:
    client = Client(redis, namespace=namespace)
    await client.set_limits("x", [Rate(5, per=0.0015)])  # (refused: "do not survive")
    assert (await client.limits())["x"].runtime == (Rate(5, per=timedelta(milliseconds=2)),)
