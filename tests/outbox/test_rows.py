"""Outbox rows written by an older errands stay relayable."""

from __future__ import annotations

import orjson

from errands.outbox.rows import OutboxRow, enqueue_item, new_row


def test_a_row_whose_max_fails_is_a_whole_float_is_relayed() -> None:
    """``RetryOptions(max_retries=3.0)`` of an older errands wrote ``"max_fails": 4.0``: the
    relay rebuilds it as 4 (the checks of max_fails, an int, refused it: stuck in the table)."""
    row = new_row("report", {"n": 1}, now=1_700_000_000.0)
    body = orjson.loads(row.payload)
    body["r"] = {"max_fails": 4.0}
    old = OutboxRow(row.job_id, row.name, orjson.dumps(body).decode(), row.created_at)
    name, args, options = enqueue_item(old)
    assert (name, args, options["retry"].max_fails) == ("report", {"n": 1}, 4)
