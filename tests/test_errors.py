"""RetryLater's delay: a real number of seconds, finite and >= 0; anything else raises an error
that names RetryLater (``float()``'s own took "5" as 5.0 and named nothing)."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest

from errands.errors import LimiterSnooze, RetryLater


@pytest.mark.parametrize("delay", ["5", "abc", None, True, False, Decimal("5"), b"5", [5], 5j])
def test_retry_later_refuses_a_delay_that_is_no_real_number(delay: object) -> None:
    with pytest.raises(TypeError, match=r"^RetryLater delay must be a number of seconds, not "):
        RetryLater(delay)  # type: ignore[arg-type]


@pytest.mark.parametrize("delay", [0, 5, 2.5, Fraction(3, 2), 10**30])
def test_retry_later_takes_a_real_number(delay: float) -> None:
    later = RetryLater(delay)
    assert type(later.delay) is float
    assert later.delay == min(float(delay), RetryLater.MAX_DELAY)


@pytest.mark.parametrize("delay", [math.nan, math.inf, -1, Fraction(-1, 2)])
def test_retry_later_still_refuses_a_number_that_is_no_delay(delay: float) -> None:
    with pytest.raises(ValueError, match="RetryLater delay must be a finite number >= 0"):
        RetryLater(delay)


def test_the_limiters_snooze_follows_the_same_rule() -> None:
    assert LimiterSnooze(0.25, reason="limiter 'api' over its limit").delay == 0.25
    with pytest.raises(TypeError, match="RetryLater delay"):
        LimiterSnooze("0.25")  # type: ignore[arg-type]
