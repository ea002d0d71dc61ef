"""Outbox rows whose payload was edited into nonsense: each is set aside (left in the table,
in ``relay.skipped``) and the other rows are relayed, whatever the nonsense (on SQLite: the
relay's handling of bad rows is the same for every database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.outbox import OutboxRelay, OutboxRow, enqueue_item
from errands.store.keys import Keys

pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

from errands.contrib.sqlalchemy_outbox import enqueue_in_outbox, outbox_table
from errands.contrib.sqlalchemy_relay import SQLAlchemySource
from tests.outbox.test_relay import make_table, rows_left, stored, write

NONSENSE = [
    "[]",
    '"x"',
    "null",
    "{}",  # no args
    '{"a": 5}',
    '{"a": {}, "r": 5}',
    '{"a": {}, "r": {"backoff": 5}}',
    '{"a": {}, "r": {"max_fails": "x"}}',
    '{"a": {}, "m": 5}',
    '{"a": {}, "d": 1e300}',
    '{"a": {}, "d": -1e300}',
    '{"a": {}, "d": "soon"}',
    '{"a": {}, "d": true}',
    '{"a": {}, "p": "high"}',
    '{"a": {}, "t": "x"}',
    '{"a": {}, "k": 5}',
    "not json",
]


@pytest.fixture
async def enqueuer(redis_url: str, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        yield enqueuer


def raw_row(sync_url: str, payload: str, job_id: str) -> None:
    engine = create_engine(sync_url)
    with engine.begin() as conn:
        conn.execute(
            insert(outbox_table).values(
                job_id=job_id, name="welcome", payload=payload, created_at=1.0
            )
        )
    engine.dispose()


@pytest.mark.parametrize("payload", NONSENSE)
async def test_a_nonsense_payload_is_set_aside_and_the_others_go_through(
    tmp_path: Path, enqueuer: Enqueuer, redis: Redis, namespace: str, payload: str
) -> None:
    sync_url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(sync_url)
    raw_row(sync_url, payload, "bad-1")  # the oldest row: in the first batch
    good = write(sync_url, 3)
    relay = OutboxRelay(SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"))
    try:
        assert await relay.relay_once(enqueuer) == 3
        assert await relay.relay_once(enqueuer) == 0
    finally:
        await relay.source.aclose()
    assert await stored(redis, namespace) == set(good)
    assert list(relay.skipped) == [1]  # the bad row's id
    assert await rows_left(sync_url) == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[]", "payload must be a JSON object with args 'a', got list []"),
        ('{"a": {}, "r": 5}', "payload field 'r' (retry) must be an object, got int 5"),
        ('{"a": {}, "d": 1e300}', "payload field 'd' (due) is out of range: 1e+300"),
        ('{"a": {}, "d": "soon"}', "payload field 'd' (due) must be unix seconds, got str 'soon'"),
    ],
)
def test_enqueue_item_names_what_is_wrong(payload: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        enqueue_item(OutboxRow("bad-1", "welcome", payload, 1.0, 1))
    assert str(raised.value) == message


async def test_bad_rows_of_a_later_claim_are_set_aside_in_the_same_call(
    tmp_path: Path, enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    """Rows 1 and 3 bad, batch of 2: the first claim (1, 2) sets 1 aside, the second (2, 3)
    sets 3 aside, the third (2, 4) is relayed; relay_once neither raises nor leaves row 3 for
    a later poll."""
    sync_url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(sync_url)
    raw_row(sync_url, '{"a": 5}', "bad-1")  # (bad rows found by the enqueue, one by one)
    good = write(sync_url, 1)
    raw_row(sync_url, '{"a": {}, "p": "high"}', "bad-3")
    good += write(sync_url, 1, start=1)
    relay = OutboxRelay(SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"), batch=2)
    try:
        assert await relay.relay_once(enqueuer) == 2
        assert sorted(relay.skipped) == [1, 3]
        assert relay.last_error is None
    finally:
        await relay.source.aclose()
    assert await stored(redis, namespace) == set(good)
    assert await rows_left(sync_url) == 2


async def test_a_job_name_whose_own_key_holds_another_type_is_set_aside(
    tmp_path: Path, enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    """The queue of job name ``broken`` holds a string: every enqueue of that name is refused
    (WRONGTYPE naming the key). Its rows are set aside, naming the key, and the rows of the
    other names behind them are relayed (batch of 2: the first claim holds two of its rows).
    A namespace-wide key of another type refuses every row alike: nothing is set aside then,
    the batch is tried again."""
    sync_url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(sync_url)
    engine = create_engine(sync_url)
    with Session(engine) as session, session.begin():
        broken = [enqueue_in_outbox(session, "broken", {"n": n}) for n in range(2)]
    engine.dispose()
    good = write(sync_url, 2)
    keys = Keys(namespace)
    await redis.set(keys.queue("broken"), "not a queue")
    relay = OutboxRelay(SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"), batch=2)
    try:
        assert await relay.relay_once(enqueuer) == 2
        assert sorted(relay.skipped) == [1, 2]
        assert all(keys.queue("broken") in error for error in relay.skipped.values())
        assert await stored(redis, namespace) == set(good)
        assert await rows_left(sync_url) == 2
        fresh = OutboxRelay(relay.source, batch=2)  # (a relay restarted: nothing set aside)
        await redis.delete(keys.queue("broken"), keys.seq)
        await redis.hset(keys.seq, "x", "a namespace-wide key of another type")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await fresh.relay_once(enqueuer)
        assert not fresh.skipped
        await redis.delete(keys.seq)
        assert await fresh.relay_once(enqueuer) == 2
    finally:
        await relay.source.aclose()
    assert await stored(redis, namespace) == set(good + broken)
    assert await rows_left(sync_url) == 0
