"""A row taking the id of a deleted set-aside row (SQLite) is relayed, not passed over as that
row: a table made now never reuses an id (AUTOINCREMENT), and the relay knows a set-aside row by
its id and job id (a table an older errands made reuses them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from errands import Enqueuer

pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from sqlalchemy import create_engine, text

from errands.contrib.sqlalchemy_relay import SQLAlchemySource
from errands.outbox import OutboxRelay
from tests.outbox.test_relay import make_table, rows_left, stored, write
from tests.outbox.test_relay_poison import raw_row

OLDER_TABLE = (  # errands_outbox as create_outbox_table made it on SQLite before AUTOINCREMENT
    "CREATE TABLE errands_outbox (id INTEGER NOT NULL, job_id VARCHAR(200) NOT NULL, "
    "name VARCHAR(200) NOT NULL, payload TEXT NOT NULL, created_at DOUBLE NOT NULL, "
    "PRIMARY KEY (id))"
)


def make_older_table(sync_url: str) -> None:
    engine = create_engine(sync_url)
    with engine.begin() as conn:
        conn.execute(text(OLDER_TABLE))
    engine.dispose()


def test_a_new_sqlite_table_never_reuses_an_id(tmp_path: Path) -> None:
    """create_outbox_table makes the id AUTOINCREMENT on SQLite: a row inserted after the row
    of the largest id was deleted takes a new id (it took the deleted one's before)."""
    sync_url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(sync_url)
    raw_row(sync_url, "{}", "one")
    raw_row(sync_url, "{}", "two")
    engine = create_engine(sync_url)
    with engine.begin() as conn:
        conn.execute(text("delete from errands_outbox where id = 2"))
    engine.dispose()
    raw_row(sync_url, "{}", "three")
    engine = create_engine(sync_url)
    with engine.connect() as conn:
        ids = dict(conn.execute(text("select job_id, id from errands_outbox")).all())
    engine.dispose()
    assert ids == {"one": 1, "three": 3}


@pytest.mark.parametrize("table", ["older", "current"])
async def test_a_row_taking_the_id_of_a_deleted_set_aside_row_is_relayed(
    tmp_path: Path, redis_url: str, namespace: str, table: str
) -> None:
    """Row 2 cannot be enqueued and is set aside; the operator deletes it (docs/outbox.md's
    repair), and two rows are committed. On a table an older errands made (no AUTOINCREMENT)
    they take ids 1 and 2 (the table is empty: SQLite's rowid starts again): the relay, which
    passes over a set-aside row by its id and job id, relays the new row 2 (it passed it over
    until it restarted, reporting nothing). A table made now gives them new ids."""
    sync_url = f"sqlite:///{tmp_path / 'app.db'}"
    make_older_table(sync_url) if table == "older" else make_table(sync_url)
    first = write(sync_url, 1)
    raw_row(sync_url, "not json", "bad-2")
    relay = OutboxRelay(SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"))
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        redis = enqueuer.redis
        try:
            assert await relay.relay_once(enqueuer) == 1
            assert list(relay.skipped) == [2]
            engine = create_engine(sync_url)
            with engine.begin() as conn:  # the repair: the bad row deleted
                conn.execute(text("delete from errands_outbox where id = 2"))
            engine.dispose()
            later = write(sync_url, 2, start=1)
            await relay.drain(enqueuer)
        finally:
            await relay.source.aclose()
        jobs = await stored(redis, namespace)
    left = await rows_left(sync_url)
    assert jobs == set(first + later) and left == 0, f"{left} committed row(s) passed over"


async def test_a_bad_row_taking_the_id_of_a_deleted_set_aside_row_is_set_aside(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """On an older table, a row that cannot be enqueued either, taking the id of a deleted
    set-aside row, is set aside in turn (with its own job id), and the rows after it relayed:
    the relay did not take its error for the old row's (which failed the batch for good)."""
    sync_url = f"sqlite:///{tmp_path / 'app.db'}"
    make_older_table(sync_url)
    raw_row(sync_url, "not json", "bad-1")
    relay = OutboxRelay(SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"))
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        redis = enqueuer.redis
        try:
            assert await relay.relay_once(enqueuer) == 0 and list(relay.skipped) == [1]
            engine = create_engine(sync_url)
            with engine.begin() as conn:
                conn.execute(text("delete from errands_outbox where id = 1"))
            engine.dispose()
            raw_row(sync_url, "[]", "bad-again")  # (id 1 again)
            good = write(sync_url, 1)
            assert await relay.relay_once(enqueuer) == 1
        finally:
            await relay.source.aclose()
        jobs = await stored(redis, namespace)
    assert jobs == set(good) and list(relay.skipped) == [1] and await rows_left(sync_url) == 1
