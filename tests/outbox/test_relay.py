"""The transactional outbox on SQLAlchemy: rows written in the caller's transaction, relayed into
Redis with their job ids, on SQLite and PostgreSQL (psycopg and asyncpg)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.devserver import RedisServer
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from errands.contrib.sqlalchemy_outbox import (
    create_outbox_table,
    enqueue_in_outbox,
    outbox_ddl,
)
from errands.contrib.sqlalchemy_relay import SQLAlchemySource
from errands.outbox import OutboxRelay, OutboxRow, new_row
from errands.outbox.relay import send_rows


@pytest.fixture
async def enqueuer(redis_url: str, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        yield enqueuer


def make_table(sync_url: str) -> None:
    engine = create_engine(sync_url)
    create_outbox_table(engine)
    create_outbox_table(engine)  # a second time is a no-op
    engine.dispose()


def write(sync_url: str, n: int, *, commit: bool = True, start: int = 0) -> list[str]:
    engine = create_engine(sync_url)
    with Session(engine) as session:
        ids = [enqueue_in_outbox(session, "welcome", {"n": start + i}) for i in range(n)]
        session.commit() if commit else session.rollback()
    engine.dispose()
    return ids


async def stored(redis: Redis, namespace: str) -> set[str]:
    return {key.decode() for key in await redis.hkeys(Keys(namespace).jobs)}


async def rows_left(sync_url: str) -> int:
    engine = create_engine(sync_url)
    with engine.connect() as conn:
        n = conn.scalar(text("select count(*) from errands_outbox"))
    engine.dispose()
    return int(n or 0)


async def test_committed_rows_become_jobs_rolled_back_never(
    database: tuple[str, str], enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    sync_url, async_url = database
    make_table(sync_url)
    committed = write(sync_url, 25)
    rolled_back = write(sync_url, 5, commit=False)
    engine = create_engine(sync_url)
    with engine.begin() as conn:  # a Core connection: the INSERT runs at once
        committed.append(enqueue_in_outbox(conn, "welcome", {"n": 99}, job_id="signup-7"))
    engine.dispose()
    relay = OutboxRelay(SQLAlchemySource(async_url), batch=10)
    count, oldest = await relay.source.backlog()
    assert count == 26 and oldest is not None
    assert await relay.drain(enqueuer) == 26
    await relay.source.aclose()
    jobs = await stored(redis, namespace)
    assert jobs == set(committed)
    assert not set(rolled_back) & jobs
    assert await rows_left(sync_url) == 0
    await assert_invariants(redis, namespace)


async def test_a_row_of_a_savepoint_rolled_back_is_never_relayed(
    database: tuple[str, str], enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    """Rows written inside a savepoint that rolls back (a Session's, flushed or not; an
    AsyncSession's; a Core connection's) go with it; those of a released one commit."""
    sync_url, async_url = database
    make_table(sync_url)
    engine = create_engine(sync_url)
    kept = []
    with Session(engine) as session, session.begin():
        kept.append(enqueue_in_outbox(session, "welcome", {"n": 1}))
        with session.begin_nested():
            kept.append(enqueue_in_outbox(session, "welcome", {"n": 2}))
        savepoint = session.begin_nested()
        enqueue_in_outbox(session, "welcome", {"n": 3})
        savepoint.rollback()
        savepoint = session.begin_nested()
        enqueue_in_outbox(session, "welcome", {"n": 4})
        session.flush()
        savepoint.rollback()
    with engine.begin() as conn:
        kept.append(enqueue_in_outbox(conn, "welcome", {"n": 5}))
        nested = conn.begin_nested()
        enqueue_in_outbox(conn, "welcome", {"n": 6})
        nested.rollback()
    engine.dispose()
    async_engine = create_async_engine(async_url)
    async with AsyncSession(async_engine) as async_session, async_session.begin():
        kept.append(enqueue_in_outbox(async_session, "welcome", {"n": 7}))
        async_savepoint = await async_session.begin_nested()
        enqueue_in_outbox(async_session, "welcome", {"n": 8})
        await async_savepoint.rollback()
    await async_engine.dispose()
    relay = OutboxRelay(SQLAlchemySource(async_url))
    assert await relay.drain(enqueuer) == 4
    await relay.source.aclose()
    assert await stored(redis, namespace) == set(kept)


async def test_options_travel_with_the_row(
    database: tuple[str, str], enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    sync_url, async_url = database
    make_table(sync_url)
    engine = create_async_engine(async_url)
    async with AsyncSession(engine) as session, session.begin():
        later = enqueue_in_outbox(session, "welcome", {"n": 1}, delay=3600, meta={"t": "x"})
        urgent = enqueue_in_outbox(session, "welcome", {"n": 2}, priority=7)
        limited = enqueue_in_outbox(
            session, "welcome", {"n": 3}, timeout=2.5, partition="customer:9"
        )
    await engine.dispose()
    relay = OutboxRelay(SQLAlchemySource(async_url))
    assert await relay.drain(enqueuer) == 3
    await relay.source.aclose()
    keys = Keys(namespace)
    assert await redis.zscore(keys.scheduled("welcome"), later) is not None
    assert await redis.zscore(keys.queue("welcome"), urgent) is not None
    stored = Job.from_envelope(limited, orjson.loads(await redis.hget(keys.jobs, limited) or b""))
    assert (stored.timeout, stored.partition) == (2.5, "customer:9")


def test_a_bad_option_raises_in_the_transaction() -> None:
    with pytest.raises(ValueError, match="timeout"):
        new_row("welcome", {}, timeout=0)
    with pytest.raises(TypeError):
        new_row("welcome", {}, colour="red")


async def test_a_batch_relayed_twice_is_one_job_each(
    database: tuple[str, str], enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    """The relay dies after Redis has the jobs but before its delete commits: the rows are
    relayed again, and their job ids make the second enqueue store nothing."""
    sync_url, async_url = database
    make_table(sync_url)
    ids = write(sync_url, 30)
    source = SQLAlchemySource(async_url)

    async def send_then_fail(rows: list[OutboxRow]) -> None:
        await send_rows(enqueuer, rows)
        raise ConnectionError("the relay died before its commit")

    with pytest.raises(ConnectionError):
        await source.relay_batch(20, send_then_fail)
    assert await rows_left(sync_url) == 30  # the claim rolled back
    assert len(await stored(redis, namespace)) == 20
    relay = OutboxRelay(source)
    assert await relay.drain(enqueuer) == 30
    await source.aclose()
    assert await stored(redis, namespace) == set(ids)
    await assert_invariants(redis, namespace)


async def test_concurrent_relays_share_the_rows(
    database: tuple[str, str], enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    sync_url, async_url = database
    make_table(sync_url)
    ids = write(sync_url, 600)
    relays = [OutboxRelay(SQLAlchemySource(async_url), batch=50) for _ in range(3)]
    counts = await asyncio.gather(*(relay.drain(enqueuer) for relay in relays))
    for relay in relays:
        await relay.source.aclose()
    assert sum(counts) == 600
    assert await stored(redis, namespace) == set(ids)


async def test_relay_in_a_pool_wakes_on_commit(
    database: tuple[str, str], redis_url: str, namespace: str, redis: Redis
) -> None:
    """The relay inside a worker pool, with a long poll interval: on PostgreSQL the NOTIFY of
    the commit wakes it, elsewhere the poll does."""
    sync_url, async_url = database
    make_table(sync_url)
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    ran: list[int] = []

    @pool.job("welcome")
    async def welcome(n: int) -> None:
        ran.append(n)

    postgres = sync_url.startswith("postgresql")
    relay = OutboxRelay(SQLAlchemySource(async_url), poll_interval=60 if postgres else 0.05)
    relay.attach(pool)
    async with asyncio.timeout(60), pool:  # bounded: a stop that hangs fails here
        await asyncio.sleep(0)
        await asyncio.to_thread(write, sync_url, 3)
        async with asyncio.timeout(20):
            while len(ran) < 3 or relay.relayed < 3:  # jobs may start before the relay commits
                await asyncio.sleep(0.01)
    assert sorted(ran) == [0, 1, 2]
    assert relay.relayed == 3
    await assert_invariants(redis, namespace)


def test_outbox_ddl() -> None:
    pg = outbox_ddl("postgresql")
    assert pg[0].startswith("CREATE TABLE errands_outbox")
    assert any("pg_notify('errands_outbox'" in s for s in pg)
    assert not any("pg_notify" in s for s in outbox_ddl("sqlite"))
    with pytest.raises(ValueError, match="no outbox DDL"):
        outbox_ddl("oracle")


async def test_a_pool_stop_leaves_no_connection_held_by_its_relay(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """attach() enqueues through the pool's Redis client (here one the caller owns, which the
    pool does not close) with an Enqueuer it never closes: the relay calls only enqueue_many,
    which gives each connection back, so once the pool stops none is held for the relay."""
    sync_url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(sync_url)
    write(sync_url, 3)
    client = Redis.from_url(redis_url)
    pool = WorkerPool(client, namespace=namespace)

    @pool.job("welcome")
    async def welcome(n: int) -> None:
        pass

    relay = OutboxRelay(
        SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"), poll_interval=0.05
    )
    relay.attach(pool)
    try:
        async with asyncio.timeout(60), pool:
            async with asyncio.timeout(20):
                while relay.relayed < 3:
                    await asyncio.sleep(0.01)
        in_use = client.connection_pool._in_use_connections  # type: ignore[attr-defined]
        assert not in_use
    finally:
        await client.aclose()


async def test_rows_sharing_a_job_id_are_one_job(
    tmp_path: Path, enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    """Rows given one job_id (twice in a transaction, once more in another, of another name)
    are one job, in one batch: the others stored, every row deleted, none set aside."""
    sync_url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(sync_url)
    engine = create_engine(sync_url)
    with Session(engine) as session, session.begin():
        for n in range(2):
            enqueue_in_outbox(session, "welcome", {"n": n}, job_id="signup-7")
    with Session(engine) as session, session.begin():
        enqueue_in_outbox(session, "other", {}, job_id="signup-7")
    engine.dispose()
    ids = write(sync_url, 2)
    relay = OutboxRelay(SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"))
    try:
        assert await relay.relay_once(enqueuer) == 5
    finally:
        await relay.source.aclose()
    assert not relay.skipped
    assert await stored(redis, namespace) == {"signup-7", *ids}
    stored_job = orjson.loads(await redis.hget(Keys(namespace).jobs, "signup-7") or b"")
    assert (stored_job["n"], stored_job["a"]) == ("welcome", {"n": 0})  # the oldest row's
    assert await rows_left(sync_url) == 0


async def test_a_running_relay_carries_on_across_a_redis_restart(
    tmp_path: Path, namespace: str
) -> None:
    """Redis killed under a running relay: the rows committed meanwhile are claimed and rolled
    back (the error kept in ``last_error``), then relayed once the server is back."""
    sync_url = f"sqlite:///{tmp_path / 'app.db'}"
    make_table(sync_url)
    write(sync_url, 5)
    relay = OutboxRelay(
        SQLAlchemySource(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"), batch=3, poll_interval=0.05
    )
    with RedisServer() as server:
        async with Enqueuer.from_url(server.url, namespace=namespace, strict=None) as enqueuer:
            relay.start(enqueuer)
            try:
                async with asyncio.timeout(30):
                    while relay.relayed < 5:
                        await asyncio.sleep(0.02)
                    server.kill()  # (no persistence: the first 5 jobs go with it)
                    during = await asyncio.to_thread(write, sync_url, 7, start=5)
                    while relay.last_error is None:
                        await asyncio.sleep(0.02)
                    assert "cannot reach Redis" in relay.last_error
                    assert await rows_left(sync_url) == 7
                    server.start()
                    while relay.relayed < 12:
                        await asyncio.sleep(0.02)
            finally:
                await relay.stop()
            assert relay.last_error is None
            jobs = {key.decode() for key in await enqueuer.redis.hkeys(Keys(namespace).jobs)}
    assert jobs == set(during)
    assert await rows_left(sync_url) == 0
