"""A pool logs a name its fetches skip once while it stays skipped, naming what holds it back
(skipnames.py FetchSkips), and logs it served when a fetch skips it no more. fetch.lua names one
reason a call: the first key of the name of another type (SkippedKeys), or its running count not
a counter (SkippedNames). When the reason moves (the first key repaired, a second still bad; the
count repaired, a key still bad) the pool names the new one, and says nothing of the name being
served while it is still skipped (it kept the first key's line, or said 'served again' for the
repaired count)."""

from __future__ import annotations

import logging

import pytest

from errands.store.keys import Keys
from errands.store.records import FetchResult
from errands.worker.skipnames import FetchSkips


def test_a_name_skipped_for_another_key_after_a_repair_is_logged_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = Keys("ns")
    skips = FetchSkips(keys)
    queue, rate = keys.queue("work"), keys.rate_log("work")
    with caplog.at_level(logging.WARNING, logger="errands.worker"):
        skips.note(FetchResult(None, [], skipped_keys={"work": queue}), ["work"])
        assert queue in caplog.text
        caplog.clear()
        # the queue repaired (DEL): the next fetch skips the name for its rate log
        skips.note(FetchResult(None, [], skipped_keys={"work": rate}), ["work"])
        assert rate in caplog.text, "the key now holding the name back is never named"
        assert "served" not in caplog.text
        caplog.clear()
        skips.note(FetchResult(None, [], skipped_keys={"work": rate}), ["work"])
        assert caplog.text == ""  # (once while so)
        skips.note(FetchResult(None, []), ["work"])
        assert "work: its keys are of their types again: served" in caplog.text


@pytest.mark.parametrize("back", [False, True])
def test_a_reason_moving_between_the_count_and_a_key_names_the_new_one_and_serves_nothing(
    caplog: pytest.LogCaptureFixture, back: bool
) -> None:
    keys = Keys("ns")
    skips = FetchSkips(keys)
    queue = keys.queue("work")
    count = FetchResult(None, [], skipped={"work": "x"})
    key = FetchResult(None, [], skipped_keys={"work": queue})
    first, then = (key, count) if back else (count, key)
    with caplog.at_level(logging.WARNING, logger="errands.worker"):
        skips.note(first, ["work", "mail"])
        caplog.clear()
        # the first reason repaired, the name skipped for the other
        skips.note(then, ["work", "mail"])
        assert "served" not in caplog.text, "served again while still skipped"
        assert ("running count" if back else queue) in caplog.text
        caplog.clear()
        skips.note(FetchResult(None, []), ["work", "mail"])
        assert caplog.text.count("served") == 1, caplog.text
