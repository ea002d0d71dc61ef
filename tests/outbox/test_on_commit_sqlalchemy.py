"""enqueue_on_commit with SQLAlchemy sessions (sync and asyncio) on SQLite: jobs are stored when
the outermost transaction commits, dropped on rollback and with a savepoint that rolls back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, SyncEnqueuer
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

sqlalchemy = pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from sqlalchemy import Column, Integer, String, create_engine, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Session  # noqa: E402

from errands.contrib.sqlalchemy import enqueue_on_commit  # noqa: E402


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id = Column(Integer, primary_key=True)
    email = Column(String, nullable=False)


@pytest.fixture
def sync_enqueuer(redis_url: str, namespace: str) -> Iterator[SyncEnqueuer]:
    with SyncEnqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        yield enqueuer


@pytest.fixture
async def enqueuer(redis_url: str, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        yield enqueuer


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sqlalchemy.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


async def stored(redis: Redis, namespace: str) -> set[str]:
    return {key.decode() for key in await redis.hkeys(Keys(namespace).jobs)}


async def test_sync_session_commit_and_rollback(
    engine: sqlalchemy.Engine, sync_enqueuer: SyncEnqueuer, redis: Redis, namespace: str
) -> None:
    with Session(engine) as session:
        session.add(User(email="a@example.com"))
        kept = enqueue_on_commit(session, "welcome", {"n": 1}, enqueuer=sync_enqueuer)
        assert await stored(redis, namespace) == set()  # not before the commit
        session.commit()
        assert await stored(redis, namespace) == {kept}
        session.add(User(email="b@example.com"))
        dropped = enqueue_on_commit(session, "welcome", {"n": 2}, enqueuer=sync_enqueuer)
        session.rollback()
        # the session goes on: a job of its next transaction is sent at that commit
        later = enqueue_on_commit(session, "welcome", {"n": 3}, enqueuer=sync_enqueuer)
        session.commit()
    assert await stored(redis, namespace) == {kept, later}
    assert dropped not in await stored(redis, namespace)
    with Session(engine) as session:
        assert session.scalar(text("select count(*) from users")) == 1
    await assert_invariants(redis, namespace)


async def test_sync_session_savepoints(
    engine: sqlalchemy.Engine, sync_enqueuer: SyncEnqueuer, redis: Redis, namespace: str
) -> None:
    with Session(engine) as session, session.begin():
        outer = enqueue_on_commit(session, "welcome", {"n": 1}, enqueuer=sync_enqueuer)
        with session.begin_nested():
            released = enqueue_on_commit(session, "welcome", {"n": 2}, enqueuer=sync_enqueuer)
        assert await stored(redis, namespace) == set()  # a released savepoint is no commit
        savepoint = session.begin_nested()
        in_rolled_back = enqueue_on_commit(session, "welcome", {"n": 3}, enqueuer=sync_enqueuer)
        inner = session.begin_nested()
        in_inner = enqueue_on_commit(session, "welcome", {"n": 4}, enqueuer=sync_enqueuer)
        inner.commit()
        savepoint.rollback()  # takes the released inner savepoint's job with it
        after = enqueue_on_commit(session, "welcome", {"n": 5}, enqueuer=sync_enqueuer)
    jobs = await stored(redis, namespace)
    assert jobs == {outer, released, after}
    assert not {in_rolled_back, in_inner} & jobs


async def test_sync_session_exception_in_begin_block_drops(
    engine: sqlalchemy.Engine, sync_enqueuer: SyncEnqueuer, redis: Redis, namespace: str
) -> None:
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        session.add(User(email="a@example.com"))
        enqueue_on_commit(session, "welcome", {}, enqueuer=sync_enqueuer, priority=5)
        raise RuntimeError("the handler failed")
    assert await stored(redis, namespace) == set()


async def test_options_and_job_id(
    engine: sqlalchemy.Engine, sync_enqueuer: SyncEnqueuer, redis: Redis, namespace: str
) -> None:
    with Session(engine) as session, session.begin():
        job_id = enqueue_on_commit(
            session, "welcome", {"n": 1}, enqueuer=sync_enqueuer, job_id="user-1", delay=60
        )
    assert job_id == "user-1"
    assert await redis.zscore(Keys(namespace).scheduled("welcome"), "user-1") is not None


async def test_async_session_commit_rollback_savepoint(
    tmp_path: Path, enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        async with AsyncSession(engine) as session:
            async with session.begin():
                session.add(User(email="a@example.com"))
                kept = enqueue_on_commit(session, "welcome", {"n": 1}, enqueuer=enqueuer)
                async with session.begin_nested():
                    nested = enqueue_on_commit(session, "welcome", {"n": 2}, enqueuer=enqueuer)
                savepoint = await session.begin_nested()
                dropped = enqueue_on_commit(session, "welcome", {"n": 3}, enqueuer=enqueuer)
                await savepoint.rollback()
                assert await stored(redis, namespace) == set()
            # sent inside the commit: stored once it returns
            assert await stored(redis, namespace) == {kept, nested}
            lost = enqueue_on_commit(session, "welcome", {"n": 4}, enqueuer=enqueuer)
            await session.rollback()
        assert not {dropped, lost} & await stored(redis, namespace)
    finally:
        await engine.dispose()
    await assert_invariants(redis, namespace)


async def test_wrong_enqueuer_kind_is_refused(
    engine: sqlalchemy.Engine, enqueuer: Enqueuer
) -> None:
    with Session(engine) as session, pytest.raises(TypeError, match="needs a SyncEnqueuer"):
        enqueue_on_commit(session, "welcome", {}, enqueuer=enqueuer)


async def test_redis_down_at_commit_raises_after_the_commit(
    engine: sqlalchemy.Engine, namespace: str
) -> None:
    with SyncEnqueuer.from_url("redis://127.0.0.1:1/0", namespace=namespace) as down:
        session = Session(engine)
        session.add(User(email="a@example.com"))
        enqueue_on_commit(session, "welcome", {}, enqueuer=down)
        with pytest.raises(Exception, match="cannot reach Redis"):
            session.commit()
        # the data is committed and the session usable: the job is what is lost
        assert session.scalar(text("select count(*) from users")) == 1
        session.close()
