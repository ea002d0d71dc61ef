"""enqueue_on_commit (SQLAlchemy) with a bad job among good ones: a job that cannot be enqueued
raises at the call, in the transaction, and the transaction's other jobs are stored at its
commit; a job that fails only at the commit (an enqueue middleware raising) does not take the
others with it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, SyncEnqueuer
from errands.errors import NotReplicatedError, RedisUnavailableError
from errands.serialization import PayloadTooLargeError, SerializationError

pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from errands.contrib.sqlalchemy import enqueue_on_commit
from tests.outbox.test_on_commit_sqlalchemy import Base, User, stored

BAD = [
    pytest.param({"args": {"id": uuid.uuid4(), "s": {1, 2}}}, SerializationError, id="set-arg"),
    pytest.param({"args": [1, 2]}, TypeError, id="args-not-a-dict"),
    pytest.param({"priority": 5000}, ValueError, id="priority"),
    pytest.param({"colour": "red"}, TypeError, id="unknown-option"),
    pytest.param({"timeout": 0}, ValueError, id="timeout"),
    pytest.param({"delay": -1}, ValueError, id="delay"),
    pytest.param({"job_id": "a\nb"}, ValueError, id="job-id"),
    pytest.param({"args": {"blob": "x" * 5000}}, PayloadTooLargeError, id="too-large"),
]


class Boom:
    """An enqueue middleware that raises for jobs with ``boom`` in their args: a job that
    passes every check at the call and fails at the commit."""

    async def enqueue(self, job: Job, next: Any) -> Any:
        if job.args.get("boom"):
            raise RuntimeError("boom")
        return await next()


@pytest.fixture
def sync_enqueuer(redis_url: str, namespace: str) -> Iterator[SyncEnqueuer]:
    with SyncEnqueuer.from_url(
        redis_url, namespace=namespace, strict=None, max_payload=4096, middleware=[Boom()]
    ) as enqueuer:
        yield enqueuer


@pytest.fixture
async def enqueuer(redis_url: str, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer.from_url(
        redis_url, namespace=namespace, strict=None, max_payload=4096, middleware=[Boom()]
    ) as enqueuer:
        yield enqueuer


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def users(engine: Any) -> int:
    with Session(engine) as session:
        return int(session.scalar(text("select count(*) from users")) or 0)


@pytest.mark.parametrize(("bad", "error"), BAD)
async def test_a_bad_job_raises_at_the_call_and_the_others_are_stored(
    engine: Any,
    sync_enqueuer: SyncEnqueuer,
    redis: Redis,
    namespace: str,
    bad: dict[str, Any],
    error: type[Exception],
) -> None:
    options = dict(bad)
    args = options.pop("args", {"n": 2})
    with Session(engine) as session:
        session.add(User(email="a@example.com"))
        first = enqueue_on_commit(session, "welcome", {"n": 1}, enqueuer=sync_enqueuer)
        with pytest.raises(error):
            enqueue_on_commit(session, "welcome", args, enqueuer=sync_enqueuer, **options)
        last = enqueue_on_commit(session, "welcome", {"n": 3}, enqueuer=sync_enqueuer)
        session.commit()  # nothing bad reaches the commit
    assert await stored(redis, namespace) == {first, last}
    assert users(engine) == 1


async def test_a_job_failing_at_the_commit_does_not_take_the_others(
    engine: Any,
    sync_enqueuer: SyncEnqueuer,
    redis: Redis,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Session(engine) as session:
        session.add(User(email="a@example.com"))
        first = enqueue_on_commit(session, "welcome", {"n": 1}, enqueuer=sync_enqueuer)
        failing = enqueue_on_commit(session, "welcome", {"boom": True}, enqueuer=sync_enqueuer)
        last = enqueue_on_commit(session, "welcome", {"n": 3}, enqueuer=sync_enqueuer)
        with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="boom"):
            session.commit()  # raises after the data is committed and the others stored
        assert f"1 of 3 job(s) enqueued on commit were not stored (ids {failing})" in caplog.text
        assert session.scalar(text("select count(*) from users")) == 1  # the session is usable
    assert await stored(redis, namespace) == {first, last}


async def test_jobs_stored_but_not_replicated_are_not_sent_again_one_by_one(
    engine: Any, redis_url: str, namespace: str, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """wait_replicas with no replica: the commit's one call stores every job and raises
    NotReplicatedError. It is raised as it is, said stored: the jobs were not each sent again
    (each waited its own wait_timeout, and the log said none was stored)."""
    calls: list[int] = []

    class Counting:
        async def enqueue(self, job: Job, next: Any) -> Any:
            calls.append(1)
            return await next()

    with (
        SyncEnqueuer.from_url(
            redis_url,
            namespace=namespace,
            strict=None,
            wait_replicas=1,
            wait_timeout=0.05,
            middleware=[Counting()],
        ) as sync,
        Session(engine) as session,
    ):
        session.add(User(email="a@example.com"))
        ids = [enqueue_on_commit(session, "welcome", {"n": i}, enqueuer=sync) for i in range(5)]
        with caplog.at_level(logging.ERROR), pytest.raises(NotReplicatedError):
            session.commit()
    assert len(calls) == 5  # (once each: no job sent again)
    assert "5 job(s) enqueued on commit were stored, but not confirmed by replicas" in caplog.text
    assert "not stored" not in caplog.text
    assert await stored(redis, namespace) == set(ids)


async def test_redis_unreachable_at_the_commit_sends_no_job_one_by_one(
    engine: Any, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis cannot be reached: the jobs are not each sent again (each would wait its own
    connection timeout); all are logged as not stored."""
    calls: list[int] = []
    with SyncEnqueuer.from_url("redis://127.0.0.1:1/0", namespace=namespace) as down:
        real = down.enqueue_many

        def counted(items: Any) -> Any:
            calls.append(len(items))
            return real(items)

        down.enqueue_many = counted  # type: ignore[method-assign]
        with Session(engine) as session:
            session.add(User(email="a@example.com"))
            ids = [enqueue_on_commit(session, "welcome", {"n": i}, enqueuer=down) for i in range(4)]
            with caplog.at_level(logging.ERROR), pytest.raises(RedisUnavailableError):
                session.commit()
    assert calls == [4]
    assert f"4 of 4 job(s) enqueued on commit were not stored (ids {', '.join(ids)})" in caplog.text


async def test_redis_lost_in_the_middle_of_the_one_by_one_sends_stops_them(
    engine: Any, sync_enqueuer: SyncEnqueuer, caplog: pytest.LogCaptureFixture
) -> None:
    """A middleware raising for the first job sends them one by one; Redis then cannot be
    reached for the second: the third and fourth are not tried, all three counted (its error
    raised, the first of those not stored)."""
    calls: list[int] = []
    real = sync_enqueuer.enqueue_many

    def flaky(items: Any) -> Any:
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("boom")  # (a middleware's, for one job)
        if len(calls) == 3:
            raise RedisUnavailableError("cannot reach Redis (test)")
        return real(items)

    sync_enqueuer.enqueue_many = flaky  # type: ignore[method-assign]
    with Session(engine) as session:
        session.add(User(email="a@example.com"))
        ids = [
            enqueue_on_commit(session, "welcome", {"n": i}, enqueuer=sync_enqueuer)
            for i in range(4)
        ]
        with caplog.at_level(logging.ERROR), pytest.raises(RedisUnavailableError):
            session.commit()
    assert calls == [4, 1, 1]  # (the batch, the first alone, the second alone: then no more)
    assert f"3 of 4 job(s) enqueued on commit were not stored (ids {', '.join(ids[1:])})" in (
        caplog.text
    )


async def test_async_session_a_job_failing_at_the_commit_does_not_take_the_others(
    tmp_path: Path, enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        async with AsyncSession(engine) as session:
            session.add(User(email="a@example.com"))
            first = enqueue_on_commit(session, "welcome", {"n": 1}, enqueuer=enqueuer)
            with pytest.raises(ValueError, match="priority"):
                enqueue_on_commit(session, "welcome", {}, enqueuer=enqueuer, priority=5000)
            enqueue_on_commit(session, "welcome", {"boom": True}, enqueuer=enqueuer)
            last = enqueue_on_commit(session, "welcome", {"n": 3}, enqueuer=enqueuer)
            with pytest.raises(RuntimeError, match="boom"):
                await session.commit()
    finally:
        await engine.dispose()
    assert await stored(redis, namespace) == {first, last}


async def test_the_args_are_those_of_the_call(
    engine: Any, sync_enqueuer: SyncEnqueuer, redis: Redis, namespace: str
) -> None:
    """The args dict is copied at the call: a key added afterwards does not count."""
    args: dict[str, Any] = {"n": 1}
    with Session(engine) as session, session.begin():
        job_id = enqueue_on_commit(session, "welcome", args, enqueuer=sync_enqueuer)
        args["boom"] = True
    assert await stored(redis, namespace) == {job_id}


class Recorder:
    """Not an Enqueuer, but has a (sync) enqueue_many: the job's options and its args as JSON
    are checked at the call all the same."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def enqueue_many(self, items: Any) -> list[Any]:
        self.items += items
        return []


async def test_another_enqueuer_kind_is_checked_at_the_call(engine: Any) -> None:
    recorder = Recorder()
    with Session(engine) as session:
        kept = enqueue_on_commit(session, "welcome", {"n": 1}, enqueuer=recorder)
        with pytest.raises(SerializationError):
            enqueue_on_commit(session, "welcome", {"s": {1}}, enqueuer=recorder)
        with pytest.raises(ValueError, match="priority"):
            enqueue_on_commit(session, "welcome", {}, enqueuer=recorder, priority=5000)
        session.commit()
    assert recorder.items == [("welcome", {"n": 1}, {"job_id": kept})]
