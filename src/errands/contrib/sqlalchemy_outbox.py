"""The transactional outbox for SQLAlchemy: the ``errands_outbox`` table, its DDL, and
``enqueue_in_outbox``, which writes a job as a row of the caller's transaction. The relay that
moves rows into Redis is :mod:`errands.contrib.sqlalchemy_relay`. See docs/outbox.md.

>>> create_outbox_table(engine)              # or outbox_ddl("postgresql") in a migration
>>> with Session(engine) as session, session.begin():
...     session.add(User(email=email))
...     enqueue_in_outbox(session, "send_welcome", {"email": email})
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    Column,
    Connection,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    insert,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, registry
from sqlalchemy.schema import CreateIndex, CreateTable

from ..outbox.ddl import POSTGRES_NOTIFY
from ..outbox.rows import TABLE, new_row

__all__ = [
    "create_outbox_table",
    "enqueue_in_outbox",
    "outbox_ddl",
    "outbox_metadata",
    "outbox_table",
]

outbox_metadata = MetaData()
outbox_table = Table(
    TABLE,
    outbox_metadata,
    # INTEGER PRIMARY KEY on SQLite: the rowid itself (AUTOINCREMENT: never reused)
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("job_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    # SQLite: AUTOINCREMENT, so an id is never used twice (without it, a row inserted after the
    # row of the largest id was deleted takes that id; the relay tells the two apart by job id)
    sqlite_autoincrement=True,
)
Index(f"{TABLE}_created_at", outbox_table.c.created_at)

_NOTIFY = POSTGRES_NOTIFY
for _statement in _NOTIFY:
    _ddl = DDL(_statement)  # type: ignore[no-untyped-call]
    event.listen(outbox_table, "after_create", _ddl.execute_if(dialect="postgresql"))


class _Record:
    """An outbox row as the ORM adds it (so ``session.add`` works without an await)."""

    def __init__(self, job_id: str, name: str, payload: str, created_at: float) -> None:
        self.job_id = job_id
        self.name = name
        self.payload = payload
        self.created_at = created_at


registry().map_imperatively(_Record, outbox_table)


def create_outbox_table(bind: Engine | Connection) -> None:
    """Create ``errands_outbox`` (and, on PostgreSQL, its NOTIFY trigger) unless it exists.
    For an ``AsyncEngine``: ``await conn.run_sync(create_outbox_table)``."""
    outbox_metadata.create_all(bind)


def outbox_ddl(dialect: str | Dialect) -> list[str]:
    """The SQL statements that create the table on ``dialect`` (``"postgresql"``, ``"sqlite"``
    or a Dialect), for a migration tool (Alembic: ``op.execute`` each)."""
    if isinstance(dialect, str):
        dialects: dict[str, Any] = {"postgresql": postgresql.dialect, "sqlite": sqlite.dialect}
        if dialect not in dialects:
            raise ValueError(f"no outbox DDL for {dialect!r}: give a SQLAlchemy Dialect")
        dialect = dialects[dialect]()
    assert isinstance(dialect, Dialect)
    statements = [str(CreateTable(outbox_table).compile(dialect=dialect)).strip()]
    statements += [str(CreateIndex(i).compile(dialect=dialect)) for i in outbox_table.indexes]
    if dialect.name == "postgresql":
        statements += _NOTIFY
    return statements


def enqueue_in_outbox(
    session: Session | AsyncSession | Connection,
    name: str,
    args: dict[str, Any] | None = None,
    **options: Any,
) -> str:
    """Write the job as a row of ``session``'s transaction; returns its job id. The relay
    enqueues it once the transaction commits; a rollback takes the row with it.

    ``options`` are those of ``enqueue`` (``delay``, ``at``, ``priority``, ``retry``, ``meta``,
    ``job_id``, ``timeout``, ``partition``); a ``delay`` counts from now. A ``Session`` or
    ``AsyncSession`` gets the row with its other objects (``session.add``: no await, flushed at
    the latest by the commit); a ``Connection`` runs the INSERT at once.
    """
    row = new_row(name, args, **options)
    record: dict[str, Any] = {
        "job_id": row.job_id,
        "name": row.name,
        "payload": row.payload,
        "created_at": row.created_at,
    }
    if isinstance(session, Session | AsyncSession):
        session.add(_Record(**record))
    elif isinstance(session, Connection):
        session.execute(insert(outbox_table).values(**record))
    else:
        raise TypeError(
            f"enqueue_in_outbox takes a Session, AsyncSession or Connection, "
            f"got {type(session).__name__}"
        )
    return row.job_id
