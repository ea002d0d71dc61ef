"""errands.checks: the checks of the values users pass refuse what would misbehave later (a
bool for an int, nan or inf for a duration, "no" for a flag) with a message naming the value."""

from __future__ import annotations

from datetime import timedelta

import pytest

from errands.checks import MAX_SECONDS, flag, seconds, whole
from errands.errors import RegistrationError
from errands.handlers import check_priority


@pytest.mark.parametrize("bad", [True, False, 1.0, "3", None, -1001, 1001])
def test_priority_is_an_int_in_range_and_never_a_bool(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^priority must be an int in -1000\.\.1000, got "):
        check_priority(bad)  # type: ignore[arg-type]


def test_whole_takes_ints_within_its_bounds() -> None:
    assert whole("n", 5, least=1) == 5
    assert whole("n", -1000, least=-1000, most=1000) == -1000
    assert whole("n", 10**30) == 10**30
    with pytest.raises(RegistrationError, match=r"^n must be an int >= 1, got 0$"):
        whole("n", 0, least=1, error=RegistrationError)
    with pytest.raises(ValueError, match=r"^n must be an int <= 3, got 4$"):
        whole("n", 4, most=3)


@pytest.mark.parametrize(
    ("value", "zero", "want"),
    [
        (0, True, 0.0),
        (timedelta(minutes=1), False, 60.0),
        (2.5, False, 2.5),
        (MAX_SECONDS, True, MAX_SECONDS),
    ],
)
def test_seconds_takes_finite_numbers_and_timedeltas(
    value: object, zero: bool, want: float
) -> None:
    assert seconds("t", value, zero=zero) == want


@pytest.mark.parametrize(
    ("value", "zero"),
    [
        (float("nan"), True),
        (float("inf"), True),
        (-1, True),
        (0, False),
        (timedelta(seconds=-1), True),
        (True, True),
        ("5", True),
        (None, True),
        (MAX_SECONDS * 2, True),
    ],
)
def test_seconds_refuses_what_is_not_a_duration(value: object, zero: bool) -> None:
    with pytest.raises(ValueError, match=r"^t must be a number of seconds"):
        seconds("t", value, zero=zero)


def test_flag_takes_only_bools() -> None:
    assert flag("f", True) is True and flag("f", False) is False
    for bad in ("no", 2, -1, None, 1.0):
        with pytest.raises(ValueError, match=r"^f must be True or False, got "):
            flag("f", bad)


def test_numbers_of_other_kinds_are_taken() -> None:
    """An IntEnum or another integer type is a whole number (returned as a plain int); a Decimal
    or a Fraction is a number of seconds; 0 and 1 are flags (they were before the checks)."""
    from decimal import Decimal
    from enum import IntEnum
    from fractions import Fraction

    class Level(IntEnum):
        HIGH = 5

    assert type(whole("priority", Level.HIGH)) is int and whole("n", Level.HIGH) == 5
    assert check_priority(Level.HIGH) == 5 and type(check_priority(Level.HIGH)) is int
    assert seconds("t", Decimal("1.5")) == 1.5 and seconds("t", Fraction(3, 2)) == 1.5
    assert flag("f", 1) is True and flag("f", 0) is False
    with pytest.raises(ValueError, match=r"^t must be a number of seconds"):
        seconds("t", 10**400)  # (too large for a float: refused, naming it)
