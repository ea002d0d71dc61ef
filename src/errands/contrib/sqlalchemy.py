"""Enqueue with a SQLAlchemy transaction (``pip install 'sqlalchemy>=2'``); see docs/outbox.md.

>>> with Session(engine) as session, session.begin():
...     session.add(User(email=email))
...     enqueue_on_commit(session, "send_welcome", {"email": email}, enqueuer=sync_enqueuer)
>>> async with AsyncSession(engine) as session, session.begin():
...     session.add(User(email=email))
...     enqueue_on_commit(session, "send_welcome", {"email": email}, enqueuer=enqueuer)

The job is sent to Redis when the session's outermost transaction commits, in one round trip
with the other jobs of that transaction, and dropped when it rolls back; a job added inside a
savepoint (``session.begin_nested()``) is dropped when that savepoint rolls back. A crash (or
Redis being down) between the commit and the enqueue loses the job: the transactional outbox
(docs/outbox.md) does not.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import await_only

from ..store.keys import check_job_id

__all__ = ["enqueue_on_commit"]

log = logging.getLogger("errands.contrib.sqlalchemy")
_STATE = "errands.on_commit"


@dataclass
class _Pending:
    """The jobs waiting for a session's commit, each with the transaction it was added in."""

    enqueuer: Any
    jobs: list[tuple[SessionTransaction, tuple[str, dict[str, Any], dict[str, Any]]]] = field(
        default_factory=list
    )
    rolled_back: set[SessionTransaction] = field(default_factory=set)
    committed: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)


def enqueue_on_commit(
    session: Session | AsyncSession,
    name: str,
    args: dict[str, Any] | None = None,
    *,
    enqueuer: Any,
    **options: Any,
) -> str:
    """Keep a job until ``session`` commits; returns its job id (known now, stored then).

    ``enqueuer`` is a :class:`~errands.SyncEnqueuer` for a :class:`~sqlalchemy.orm.Session`
    and an :class:`~errands.Enqueuer` for an :class:`~sqlalchemy.ext.asyncio.AsyncSession`
    (awaited inside ``await session.commit()``). ``options`` are those of ``enqueue``
    (``delay``, ``at``, ``priority``, ``retry``, ``meta``, ``job_id``). Starts the session's
    transaction if none is in progress (as ``session.add`` does).
    """
    sync_session = session.sync_session if isinstance(session, AsyncSession) else session
    is_async = isinstance(session, AsyncSession)
    if inspect.iscoroutinefunction(enqueuer.enqueue_many) != is_async:
        wanted = "an Enqueuer" if is_async else "a SyncEnqueuer"
        raise TypeError(f"enqueue_on_commit with {type(session).__name__} needs {wanted}")
    job_id = options.setdefault("job_id", uuid.uuid4().hex)
    check_job_id(job_id)
    state = _state(sync_session, enqueuer, is_async)
    if state.enqueuer is not enqueuer:
        raise ValueError("one session enqueues through one enqueuer until it commits")
    if sync_session.get_transaction() is None:
        sync_session._autobegin_t()  # what session.add() does when no transaction is in progress
    current = sync_session.get_nested_transaction() or sync_session.get_transaction()
    assert current is not None
    state.jobs.append((current, (name, dict(args or {}), options)))
    return str(job_id)


def _state(session: Session, enqueuer: Any, is_async: bool) -> _Pending:
    state: _Pending | None = session.info.get(_STATE)
    if state is None:
        state = _Pending(enqueuer)
        session.info[_STATE] = state
        if not session.info.get(_STATE + ".hooked"):
            session.info[_STATE + ".hooked"] = True
            _hook(session, is_async)
    return state


def _hook(session: Session, is_async: bool) -> None:
    @event.listens_for(session, "after_soft_rollback")
    def rolled_back(session: Session, transaction: SessionTransaction) -> None:
        state: _Pending | None = session.info.get(_STATE)
        if state is not None and transaction.parent is not None:
            state.rolled_back.add(transaction)

    @event.listens_for(session, "after_commit")
    def committed(session: Session) -> None:
        state: _Pending | None = session.info.get(_STATE)
        if state is None or session.get_nested_transaction() is not None:
            return  # a savepoint released: its jobs now belong to the enclosing transaction
        state.committed = [job for txn, job in state.jobs if not _dropped(txn, state.rolled_back)]

    @event.listens_for(session, "after_transaction_end")
    def ended(session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is not None:
            return
        state: _Pending | None = session.info.pop(_STATE, None)
        if state is None or not state.committed:
            return
        # sent here, once the session is closed, so that a failure leaves it usable
        try:
            if is_async:
                await_only(state.enqueuer.enqueue_many(state.committed))
            else:
                state.enqueuer.enqueue_many(state.committed)
        except Exception:
            log.exception(
                "the transaction committed but %d job(s) enqueued on commit were not stored",
                len(state.committed),
            )
            raise


def _dropped(transaction: SessionTransaction | None, rolled_back: set[SessionTransaction]) -> bool:
    while transaction is not None:
        if transaction in rolled_back:
            return True
        transaction = transaction.parent
    return False
