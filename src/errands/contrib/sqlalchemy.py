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
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import await_only

from ..errors import NotReplicatedError, RedisUnavailableError
from ..store.connection import REDIS_ERRORS
from ._on_commit import Item, checked_item

__all__ = ["enqueue_on_commit"]

log = logging.getLogger("errands.contrib.sqlalchemy")
_STATE = "errands.on_commit"


@dataclass
class _Pending:
    """The jobs waiting for a session's commit, each with the transaction it was added in."""

    enqueuer: Any
    jobs: list[tuple[SessionTransaction, Item]] = field(default_factory=list)
    rolled_back: set[SessionTransaction] = field(default_factory=set)
    committed: list[Item] = field(default_factory=list)


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
    (``delay``, ``at``, ``priority``, ``retry``, ``meta``, ``job_id``, ``timeout``,
    ``partition``). The job is built and encoded now, so a bad one raises here, in the
    transaction. Starts the session's transaction if none is in progress (as ``session.add``
    does).
    """
    sync_session = session.sync_session if isinstance(session, AsyncSession) else session
    is_async = isinstance(session, AsyncSession)
    if inspect.iscoroutinefunction(enqueuer.enqueue_many) != is_async:
        wanted = "an Enqueuer" if is_async else "a SyncEnqueuer"
        raise TypeError(f"enqueue_on_commit with {type(session).__name__} needs {wanted}")
    item = checked_item(enqueuer, name, args, options)  # a bad job raises here, not at commit
    state = _state(sync_session, enqueuer, is_async)
    if state.enqueuer is not enqueuer:
        raise ValueError("one session enqueues through one enqueuer until it commits")
    if sync_session.get_transaction() is None:
        sync_session._autobegin_t()  # what session.add() does when no transaction is in progress
    current = sync_session.get_nested_transaction() or sync_session.get_transaction()
    assert current is not None
    state.jobs.append((current, item))
    return str(item[2]["job_id"])


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
        _send(state, is_async)  # here, once the session is closed: a failure leaves it usable


# Redis cannot be reached (the Enqueuer's error, or redis-py's where one gets through)
_UNREACHABLE: tuple[type[Exception], ...] = (
    RedisUnavailableError,
    *(e for e in REDIS_ERRORS if issubclass(e, Exception)),
)
_STOPS: tuple[type[Exception], ...] = (NotReplicatedError, *_UNREACHABLE)


def _send(state: _Pending, is_async: bool) -> None:
    """Enqueue the committed jobs in one round trip; if that fails for one job's sake (an
    enqueue middleware raising for it, say), each job on its own, so that one job does not take
    the others with it (a key of another type fails the whole call before it writes); not when
    Redis cannot be reached (nothing would get through, each job waiting its own timeout), nor
    when the jobs were stored but not confirmed by replicas. Logs and raises the first error."""

    def enqueue(items: list[Item]) -> None:
        sent = state.enqueuer.enqueue_many(items)
        if is_async:
            await_only(sent)

    items = state.committed
    failed: list[tuple[Item, Exception]]
    try:
        enqueue(items)
        return
    except NotReplicatedError:
        log.error(
            "the transaction committed and its %d job(s) enqueued on commit were stored, but "
            "not confirmed by replicas (ids %s)",
            len(items),
            ", ".join(item[2]["job_id"] for item in items),
        )
        raise
    except _UNREACHABLE as exc:
        failed = [(item, exc) for item in items]
    except Exception as exc:
        failed = [(items[0], exc)] if len(items) == 1 else _one_by_one(items, enqueue)
        if not failed:  # (each alone went through: all are stored)
            return
    log.error(
        "the transaction committed but %d of %d job(s) enqueued on commit were not stored (ids %s)",
        len(failed),
        len(items),
        ", ".join(item[2]["job_id"] for item, _ in failed),
        exc_info=failed[0][1],
    )
    raise failed[0][1]


def _one_by_one(items: list[Item], enqueue: Any) -> list[tuple[Item, Exception]]:
    """Each job on its own: those that failed, with their error. Once Redis cannot be reached
    (or a job is stored but not confirmed by replicas), the rest are not tried: counted as
    failed."""
    failed: list[tuple[Item, Exception]] = []
    for at, item in enumerate(items):
        try:
            enqueue([item])
        except _STOPS as exc:
            stored = isinstance(exc, NotReplicatedError)  # (this one is stored)
            failed += [(rest, exc) for rest in items[at + 1 if stored else at :]]
            break
        except Exception as exc:
            failed.append((item, exc))
    return failed


def _dropped(transaction: SessionTransaction | None, rolled_back: set[SessionTransaction]) -> bool:
    while transaction is not None:
        if transaction in rolled_back:
            return True
        transaction = transaction.parent
    return False
