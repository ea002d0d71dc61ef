"""Keys.done_many: the result-record keys of an enqueue call's jobs (store/bulk.py), each id
checked as Keys.done checks it, at once when every id is letters and digits."""

from __future__ import annotations

from typing import Any

import pytest

from errands.building import random_id
from errands.store.keys import Keys


def test_done_many_is_done_of_each_id() -> None:
    keys = Keys("ns")
    ids = [random_id() for _ in range(5)] + ["a.b", "x!y", "é1", "job-7"]
    assert keys.done_many(ids) == [keys.done(i) for i in ids]
    assert keys.done_many([]) == []


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "a\nb", "a\x00b", 7, b"ab", None])
def test_done_many_refuses_what_done_refuses(bad: Any) -> None:
    keys = Keys("ns")
    with pytest.raises((ValueError, TypeError)) as done_error:
        keys.done(bad)
    with pytest.raises(type(done_error.value), match="job id"):
        keys.done_many(["abc", bad, "def"])
