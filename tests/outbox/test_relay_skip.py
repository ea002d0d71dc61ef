"""Many rows set aside: the relay passes over them in statements of at most ``skip_chunk``
skipped rows (an id and a job id each) each, so no claim exceeds a database's bind-parameter
limit (asyncpg 32767, PostgreSQL 65535, SQLite 999 before 3.32), and the rows after them are
still relayed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer

pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from sqlalchemy import create_engine, event, text

from errands.contrib.sqlalchemy_relay import SQLAlchemySource
from errands.outbox import OutboxRelay
from tests.outbox.test_relay import make_table, rows_left, stored, write
from tests.outbox.test_relay_poison import raw_row


@pytest.fixture
async def enqueuer(redis_url: str, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        yield enqueuer


def test_skip_windows() -> None:
    from errands.outbox.rows import skip_windows

    assert list(skip_windows([], 3)) == [(None, None, [])]
    assert list(skip_windows([5, 1, 3], 3)) == [(None, None, [1, 3, 5])]
    assert list(skip_windows([7, 1, 3, 5, 9, 2, 8], 3)) == [
        (None, 3, [1, 2, 3]),  # ids up to 3: of the skipped ones, 1, 2, 3
        (3, 8, [5, 7, 8]),  # ids over 3, up to 8
        (8, None, [9]),  # ids over 8
    ]
    with pytest.raises(ValueError, match="chunk"):
        list(skip_windows([1], 0))


def count_binds(source: SQLAlchemySource) -> list[int]:
    """The number of bind parameters of each statement the source's engine runs."""
    counts: list[int] = []

    def before(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        counts.append(len(params) if isinstance(params, tuple | list | dict) else 0)

    event.listen(source.engine.sync_engine, "before_cursor_execute", before)
    return counts


async def test_rows_set_aside_are_passed_over_in_chunks(
    database: tuple[str, str], enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    """Bad rows around and between good ones, 3 skipped ids a statement: every good row is
    relayed, oldest first, and no statement carries more than 3 ids."""
    sync_url, async_url = database
    make_table(sync_url)
    good: list[str] = []
    for i in range(8):  # rows 1-2 bad, 3 good, 4-5 bad, 6 good, ...
        raw_row(sync_url, "[]", f"bad-{2 * i}")
        raw_row(sync_url, "[]", f"bad-{2 * i + 1}")
        good += write(sync_url, 1, start=i)
    source = SQLAlchemySource(async_url)
    source.skip_chunk = 3
    binds = count_binds(source)
    relay = OutboxRelay(source, batch=2)
    try:
        first = await relay.relay_once(enqueuer)
        assert first == 2 and await stored(redis, namespace) == set(good[:2])  # oldest first
        assert await relay.drain(enqueuer) == 6
    finally:
        await source.aclose()
    assert await stored(redis, namespace) == set(good)
    assert len(relay.skipped) == 16
    assert await rows_left(sync_url) == 16
    # 3 rows (an id and a job id each), the two bounds, the LIMIT (and SQLite's OFFSET)
    assert binds and max(binds) <= 2 * 3 + 4


async def test_more_rows_set_aside_than_asyncpg_takes_parameters(
    pg_server: str, enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    """33,000 bad rows (asyncpg passes at most 32,767 parameters in a statement), then a good
    one: one relay_once sets them all aside and relays the good row, with the default chunk."""
    from tests.outbox.conftest import new_pg_database

    base = new_pg_database(pg_server)
    sync_url = f"postgresql+psycopg://{base}"
    make_table(sync_url)
    engine = create_engine(sync_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO errands_outbox (job_id, name, payload, created_at) "
                "SELECT 'bad-' || n, 'welcome', '[]', 1.0 FROM generate_series(1, 33000) AS n"
            )
        )
    engine.dispose()
    good = write(sync_url, 1)
    relay = OutboxRelay(SQLAlchemySource(f"postgresql+asyncpg://{base}"), batch=5000)
    try:
        assert await relay.relay_once(enqueuer) == 1
    finally:
        await relay.source.aclose()
    assert len(relay.skipped) == 33000
    assert await stored(redis, namespace) == set(good)
    assert await rows_left(sync_url) == 33000
