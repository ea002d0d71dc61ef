"""What the relays report and Client.outbox() shows: backlog, lag, the relays, and a stuck
relay (one that cannot get a batch through) made visible."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, FakeClock
from errands.store.keys import Keys
from errands.store.outbox import SILENT_AFTER, STALL_AFTER
from tests.support.invariants import assert_invariants

pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from errands.contrib.sqlalchemy_outbox import enqueue_in_outbox
from errands.contrib.sqlalchemy_relay import SQLAlchemySource
from errands.outbox import OutboxRelay, OutboxStatus
from tests.outbox.test_relay import make_table, rows_left, write


async def reported(
    client: Client, relay: OutboxRelay, check: Callable[[OutboxStatus], bool]
) -> None:
    async with asyncio.timeout(20):
        while True:
            status = await client.outbox()
            if any(r.id == relay.id for r in status.relays) and check(status):
                return
            await asyncio.sleep(0.02)


async def test_a_healthy_relay_reports_an_empty_backlog(
    tmp_path: Path, redis_url: str, namespace: str, redis: Redis
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(url)
    write(url, 30)
    relay = OutboxRelay(
        SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"),
        poll_interval=0.05,
        report_interval=0.05,
    )
    async with (
        Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
    ):
        assert (await client.outbox()).relays == []  # nobody reports
        relay.start(enqueuer)
        try:
            await reported(client, relay, lambda s: s.backlog == 0)
            status = await client.outbox()
            assert await redis.pttl(Keys(namespace).outbox_relays) > 0
            await assert_invariants(redis, namespace)
        finally:
            await relay.stop()
        assert (await client.outbox()).relays == []  # a relay that stops withdraws
    assert status.lag == 0 and not status.stuck
    (mine,) = status.relays
    assert mine.relayed == 30 and mine.error is None and not mine.stalled and not mine.silent


async def test_rows_that_cannot_be_enqueued_are_passed_over_and_make_the_outbox_stuck(
    tmp_path: Path, redis_url: str, namespace: str, redis: Redis
) -> None:
    """A row over the Enqueuer's max_payload fails its batch: the relay finds it, leaves it in
    the table, relays the others, and reports it; the outbox is stuck and its lag grows."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(url)
    fine = write(url, 2)
    engine = create_engine(url)
    with Session(engine) as session:
        poison = enqueue_in_outbox(session, "welcome", {"blob": "x" * 2000})
        session.commit()
    engine.dispose()
    fine += write(url, 2, start=2)
    relay = OutboxRelay(
        SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"),
        poll_interval=0.05,
        report_interval=0.0,
    )
    async with (
        Enqueuer.from_url(redis_url, namespace=namespace, max_payload=1000) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
    ):
        relay.start(enqueuer)
        try:
            await reported(client, relay, lambda s: s.backlog == 1 and s.stuck)
            status = await client.outbox()
        finally:
            await relay.stop()
    (mine,) = status.relays
    assert mine.skipped == 1 and "PayloadTooLargeError" in (mine.skip_error or "")
    assert (mine.skip_error or "").startswith("row ")  # (its id: where to find it)
    assert not mine.stalled and status.lag is not None
    jobs = {k.decode() for k in await redis.hkeys(Keys(namespace).jobs)}
    assert jobs == set(fine) and poison not in jobs
    assert await rows_left(url) == 1
    await assert_invariants(redis, namespace)


async def test_a_relay_without_its_table_is_stuck(
    tmp_path: Path, redis_url: str, namespace: str, redis: Redis
) -> None:
    clock = FakeClock(time.time())
    relay = OutboxRelay(
        SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"),
        poll_interval=0.05,
        report_interval=0.0,
        clock=clock,
    )
    async with (
        Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer,
        Client.from_url(redis_url, namespace=namespace, clock=clock) as client,
    ):
        relay.start(enqueuer)
        try:
            await reported(client, relay, lambda s: s.relays[0].error is not None)
            assert not (await client.outbox()).stuck  # a relay just started is given time
            clock.advance(STALL_AFTER + 1)
            await reported(client, relay, lambda s: s.stuck)
            status = await client.outbox()
        finally:
            await relay.stop()
    assert status.backlog is None
    assert "errands_outbox" in (status.relays[0].error or "")


async def test_the_dashboard_shows_the_backlog_and_a_stuck_relay(
    tmp_path: Path, redis_url: str, namespace: str, redis: Redis
) -> None:
    pytest.importorskip("starlette")
    import errands
    from tests.support.dashboard import http

    url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(url)
    write(url, 4)
    clock = FakeClock(time.time())
    relay = OutboxRelay(
        SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"),
        poll_interval=0.05,
        report_interval=0.0,
        clock=clock,
    )
    async with (
        Enqueuer.from_url(redis_url, namespace=namespace, max_payload=10) as enqueuer,
        Client.from_url(redis_url, namespace=namespace, clock=clock) as client,
        http(errands.dashboard(client)) as web,
    ):
        page = (await web.get("/")).text
        assert 'aria-label="outbox"' not in page  # no relay reports: no section
        relay.start(enqueuer)
        try:
            await reported(client, relay, lambda s: s.backlog == 4 and s.stuck)
            page = (await web.get("/")).text
            assert "4 rows waiting" in page, page[page.find('aria-label="outbox"') :][:1500]
            data = (await web.get("/api/overview")).json()
        finally:
            await relay.stop()
    section = page[page.find('aria-label="outbox"') :][:3000]
    assert 'id="outbox-stuck"' in section and "4 rows passed over" in section, section
    assert "PayloadTooLargeError" in section and '<td data-label="State">relaying</td>' in section
    assert data["outbox"]["stuck"] is True and data["outbox"]["backlog"] == 4


async def test_a_relay_that_died_goes_silent_one_that_stopped_withdraws(
    tmp_path: Path, redis_url: str, namespace: str, redis: Redis
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(url)
    write(url, 2)
    clock = FakeClock(time.time())
    source = SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    died = OutboxRelay(source, poll_interval=0.05, report_interval=0.0, clock=clock)
    async with (
        Enqueuer.from_url(redis_url, namespace=namespace, max_payload=10) as enqueuer,
        Client.from_url(redis_url, namespace=namespace, clock=clock) as client,
    ):
        task = asyncio.create_task(died.run(enqueuer))  # a relay whose process is killed:
        await reported(client, died, lambda s: s.backlog == 2)
        task.cancel()  # it never withdraws
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.aclose()
        clock.advance(SILENT_AFTER + 1)
        status = await client.outbox()
        assert status.relays[0].silent and status.stuck
        assert status.backlog == 2  # the last known count
        stopped = OutboxRelay(source, poll_interval=0.05, report_interval=0.0, clock=clock)
        async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as other:
            stopped.start(other)
            await reported(client, stopped, lambda s: len(s.relays) == 2 and s.backlog == 0)
            assert not (await client.outbox()).stuck  # one relay works
            await stopped.stop()
        assert [r.id for r in (await client.outbox()).relays] == [died.id]


@pytest.mark.parametrize(
    "corrupt",
    [b'{"at": "x"}', b'{"at": null}', b'{"at": [1]}'],
    ids=["at-string", "at-null", "at-list"],
)
async def test_a_corrupt_relay_entry_does_not_stop_the_others_reporting(
    tmp_path: Path, redis_url: str, namespace: str, redis: Redis, corrupt: bytes
) -> None:
    # an entry no relay writes (by hand, another version): report() read its "at" to drop stale
    # entries and raised comparing it; every relay's report then failed (logged at DEBUG only),
    # so each went silent and the outbox showed as stuck while the relays relayed
    await redis.hset(Keys(namespace).outbox_relays, "bad", corrupt)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(url)
    write(url, 3)
    relay = OutboxRelay(
        SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"),
        poll_interval=0.05,
        report_interval=0.05,
    )
    async with (
        Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer,
        Client.from_url(redis_url, namespace=namespace) as client,
    ):
        relay.start(enqueuer)
        try:
            await reported(client, relay, lambda s: s.backlog == 0)
            status = await client.outbox()
        finally:
            await relay.stop()
    assert not status.stuck and [r.relayed for r in status.relays] == [3]
    assert await redis.hget(Keys(namespace).outbox_relays, "bad") is None  # dropped as stale


async def test_a_relay_waiting_longer_than_its_report_interval_still_reports(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """A relay waiting for rows with a poll interval longer than SILENT_AFTER and STALL_AFTER
    (a NOTIFY wakes it on PostgreSQL) reports every ``report_interval`` meanwhile, so it is
    not taken for a dead one while it waits, nor for a stalled one before two polls passed
    without a batch."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(url)
    write(url, 1)
    clock = FakeClock(time.time())
    poll = STALL_AFTER * 2
    relay = OutboxRelay(
        SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"),
        poll_interval=poll,
        report_interval=0.05,
        clock=clock,
    )
    async with (
        Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer,
        Client.from_url(redis_url, namespace=namespace, clock=clock) as client,
    ):
        relay.start(enqueuer)
        try:
            await reported(client, relay, lambda s: s.backlog == 0)
            (first,) = (await client.outbox()).relays
            clock.advance(poll * 1.5)  # (waiting: the next poll is real seconds away)
            await reported(client, relay, lambda s: s.relays[0].reported_at > first.reported_at)
            waiting = await client.outbox()
            clock.advance(poll)  # two polls without a batch: stalled (not stuck: no backlog)
            await reported(client, relay, lambda s: s.relays[0].stalled)
        finally:
            await relay.stop()
    (mine,) = waiting.relays
    assert not mine.silent and not mine.stalled and mine.backlog == 0 and not waiting.stuck
