"""Review probe (rev-lim): a pool logs a name skipped for a key of another type once, naming the
key and its repair (skipnames.py SkippedKeys). fetch.lua names only the first such key of the
name; when the operator repairs it and the name stays skipped for a second key (its rate log,
say), the pool says nothing more: the line it logged names a key that is repaired now, and the
name stays unfetched without any line naming the key that holds it back."""

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
