"""A relay failing every batch reports while it waits to retry, and is stalled after
STALL_AFTER whatever its poll interval (the two-poll allowance is an idle relay's)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, FakeClock
from errands.store.keys import Keys
from errands.store.outbox import SILENT_AFTER

pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")


from errands.contrib.sqlalchemy_relay import SQLAlchemySource
from errands.outbox import OutboxRelay
from tests.outbox.test_relay import make_table, write


async def test_a_relay_failing_every_batch_reports_while_it_waits_to_retry(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """The relay (its table missing: every batch fails) waits its 30 s poll interval before
    each retry, and reports every report_interval meanwhile: past SILENT_AFTER it is not shown
    silent (it slept without reporting before: 'killed, or cut off from Redis')."""
    clock = FakeClock(time.time())
    relay = OutboxRelay(
        SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"),
        poll_interval=SILENT_AFTER * 2,
        report_interval=0.05,
        clock=clock,
    )
    async with (
        Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer,
        Client.from_url(redis_url, namespace=namespace, clock=clock) as client,
    ):
        relay.start(enqueuer)
        try:
            async with asyncio.timeout(10):
                while not (first := (await client.outbox()).relays) or first[0].error is None:
                    await asyncio.sleep(0.02)
            clock.advance(SILENT_AFTER + 1)
            newer, deadline = False, time.monotonic() + 5  # (100 report intervals; the
            while not newer and time.monotonic() < deadline:  # retry is 30 s away)
                (mine,) = (await client.outbox()).relays
                newer = mine.reported_at > first[0].reported_at
                await asyncio.sleep(0.02)
        finally:
            await relay.stop()
    assert newer, "no report for 5 s while the relay waited to retry: shown silent"
    assert not mine.silent and mine.error is not None and "errands_outbox" in mine.error


async def test_a_relay_failing_every_batch_is_stalled_after_stall_after(
    tmp_path: Path, redis_url: str, namespace: str, redis: Redis
) -> None:
    """A relay polling every 60 s whose every batch fails (Redis refuses every enqueue: the
    namespace's jobs hash holds a string) while 3 rows wait. Driven as run() does at each try
    (relay_once fails, the error reported), at its start and at its retry one poll later: 60 s
    without a batch, it is stalled and the outbox stuck (the two-poll allowance is for an idle
    relay waiting for a NOTIFY, one reporting no error; it covered a failing one too)."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(url)
    write(url, 3)
    clock = FakeClock(time.time())
    poll = 60.0
    relay = OutboxRelay(
        SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"),
        poll_interval=poll,
        report_interval=2.0,
        clock=clock,
    )
    await redis.set(Keys(namespace).jobs, "not a hash")
    async with (
        Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer,
        Client.from_url(redis_url, namespace=namespace, clock=clock) as client,
    ):
        try:
            for attempt in range(2):  # (run(): try, report the error, sleep poll_interval)
                if attempt:
                    clock.advance(poll)
                with pytest.raises(Exception, match="WRONGTYPE"):
                    await relay.relay_once(enqueuer)
                relay.last_error = "ResponseError: WRONGTYPE"
                await relay._report(enqueuer)
            status = await client.outbox()
        finally:
            await relay.source.aclose()
    (mine,) = status.relays
    assert mine.error is not None and mine.backlog == 3 and not mine.skipped
    assert mine.last_batch_at is None  # (none since its start, 60 s ago: > STALL_AFTER)
    assert mine.stalled and status.stuck, "failing every batch for 60 s: shown healthy"
