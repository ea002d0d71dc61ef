"""docs/retries.md's table for the default ``ExponentialBackoff()``: the shortest and longest
delay of each retry (``random()`` at 0 and just under 1), and the time since the first failure,
as the table rounds them."""

from __future__ import annotations

import random

import pytest

from errands import ExponentialBackoff


class Pinned(random.Random):
    """A random() that always gives ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


UNITS = {"s": 1, "min": 60, "h": 3600}


def rounds_to(seconds: float, shown: str) -> bool:
    """``seconds`` written in the unit and to the digits of ``shown`` ("2.0 min") is ``shown``
    (halves up)."""
    number, unit = shown.split()
    step = 10.0 ** -len(number.partition(".")[2])
    value = seconds / UNITS[unit]
    return float(number) - step / 2 - 1e-9 <= value < float(number) + step / 2 - 1e-9


# fails: (shortest, longest, since the first failure: earliest, latest), as docs/retries.md has it
TABLE = {
    1: ("16 s", "76 s", "16 s", "76 s"),
    2: ("31 s", "2.0 min", "47 s", "3.3 min"),
    3: ("96 s", "3.6 min", "2.4 min", "6.9 min"),
    4: ("4.5 min", "7.0 min", "6.9 min", "13.9 min"),
    5: ("10.7 min", "13.7 min", "17.6 min", "27.6 min"),
    6: ("21.9 min", "25.4 min", "39.4 min", "52.9 min"),
    7: ("40.3 min", "44.3 min", "1.3 h", "1.6 h"),
    8: ("68.5 min", "73.0 min", "2.5 h", "2.8 h"),
    9: ("1.8 h", "1.9 h", "4.3 h", "4.7 h"),
    10: ("2.8 h", "2.9 h", "7.1 h", "7.6 h"),
}


def test_the_defaults_are_base_15_and_jitter_30() -> None:
    assert (ExponentialBackoff().base, ExponentialBackoff().jitter) == (15.0, 30.0)


def test_the_documented_table_of_the_default_curve() -> None:
    low, high = ExponentialBackoff(rng=Pinned(0.0)), ExponentialBackoff(rng=Pinned(1 - 1e-12))
    since_low = since_high = 0.0
    for fails, row in TABLE.items():
        since_low += low.delay(fails)
        since_high += high.delay(fails)
        delays = (low.delay(fails), high.delay(fails), since_low, since_high)
        assert all(rounds_to(d, text) for d, text in zip(delays, row, strict=True)), (fails, delays)


@pytest.mark.parametrize(("fails", "least", "most"), [(1, 16, 76), (2, 31, 121), (3, 96, 216)])
def test_the_retries_of_the_default_max_fails(fails: int, least: float, most: float) -> None:
    """The retries of max_fails=4: "about 16-76 s, 31-121 s and 96-216 s"."""
    assert ExponentialBackoff(rng=Pinned(0.0)).delay(fails) == least
    assert ExponentialBackoff(rng=Pinned(1 - 1e-12)).delay(fails) == pytest.approx(most)
