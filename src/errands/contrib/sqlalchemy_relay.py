"""The database side of the outbox relay on SQLAlchemy's asyncio engines (PostgreSQL through
psycopg 3 or asyncpg, SQLite through aiosqlite). See docs/outbox.md.

>>> relay = OutboxRelay(SQLAlchemySource("postgresql+psycopg://app@db/app"))
>>> relay.attach(pool)                       # or: python -m errands relay --database URL
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..aio import wait_event
from ..outbox.relay import Send
from ..outbox.rows import CHANNEL, OutboxRow, skip_windows
from .sqlalchemy_outbox import outbox_table

__all__ = ["SQLAlchemySource", "async_url"]

log = logging.getLogger("errands.outbox")
_ASYNC_DRIVERS = {"postgresql": "postgresql+psycopg", "sqlite": "sqlite+aiosqlite"}


def async_url(url: str) -> str:
    """``url`` with an asyncio driver: ``postgresql://`` becomes ``postgresql+psycopg://``,
    ``sqlite://`` ``sqlite+aiosqlite://``; a URL naming its driver is kept."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(False) if driver else url


class SQLAlchemySource:
    """``errands_outbox`` of the database of ``engine`` (an ``AsyncEngine`` or a URL).

    A batch is claimed with ``DELETE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
    RETURNING`` on PostgreSQL, so concurrent relays take different rows; on SQLite the DELETE
    takes the database's write lock, so relays take turns. The claim commits only after Redis
    has the jobs. On PostgreSQL a connection LISTENs for the table trigger's NOTIFY
    (``listen=False``: poll only).
    """

    # the most skipped rows (the relay's rows set aside) one claim statement passes over, each
    # two bind parameters (its id and job id): SQLite before 3.32 takes 999 in a statement,
    # asyncpg 32767, PostgreSQL 65535; more take one statement more per chunk, in the same
    # transaction
    skip_chunk = 400

    def __init__(self, engine: AsyncEngine | str, *, listen: bool = True) -> None:
        self._owns_engine = isinstance(engine, str)
        self.engine = create_async_engine(async_url(engine)) if isinstance(engine, str) else engine
        self.dialect = self.engine.dialect.name
        self._listen = listen and self.dialect == "postgresql"
        self._notified = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    def _claim(
        self,
        limit: int,
        after: int | None,
        upto: int | None,
        skip: list[tuple[int, str]] | list[int],
    ) -> Any:
        t = outbox_table
        oldest = select(t.c.id).order_by(t.c.id).limit(limit)
        if after is not None:
            oldest = oldest.where(t.c.id > after)
        if upto is not None:
            oldest = oldest.where(t.c.id <= upto)
        # (id, job id) pairs: a row that took the id of a deleted set-aside row is claimed
        if skip and isinstance(skip[0], tuple):
            oldest = oldest.where(tuple_(t.c.id, t.c.job_id).not_in(skip))
        elif skip:
            oldest = oldest.where(t.c.id.not_in(skip))
        if self.dialect == "postgresql":
            oldest = oldest.with_for_update(skip_locked=True)
        return (
            delete(t)
            .where(t.c.id.in_(oldest.scalar_subquery()))
            .returning(t.c.id, t.c.job_id, t.c.name, t.c.payload, t.c.created_at)
        )

    async def relay_batch(self, limit: int, send: Send, skip: Collection[int] = ()) -> int:
        """One DELETE ... RETURNING per range of ``skip_windows`` (one when no more than
        ``skip_chunk`` rows are skipped), oldest range first, until ``limit`` rows are claimed.
        ``skip`` a mapping (row id -> job id, as the relay gives it): a row is passed over when
        its id and job id both match; ids only: when its id does."""
        self._ensure_listener()
        async with self.engine.begin() as conn:
            rows: list[OutboxRow] = []
            for after, upto, ids in skip_windows(skip, self.skip_chunk):
                passed: list[tuple[int, str]] | list[int] = (
                    [(i, skip[i]) for i in ids] if isinstance(skip, Mapping) else ids
                )
                result = await conn.execute(self._claim(limit - len(rows), after, upto, passed))
                rows += [
                    OutboxRow(job_id, name, payload, created_at, id)
                    for id, job_id, name, payload, created_at in result.all()
                ]
                if len(rows) >= limit:
                    break
            if rows:
                rows.sort(key=lambda row: row.id)
                await send(rows)
        return len(rows)

    async def wait(self, timeout: float) -> None:
        self._ensure_listener()
        await wait_event(self._notified, timeout)  # (not asyncio.wait_for: see errands/aio.py)
        self._notified.clear()

    async def backlog(self) -> tuple[int, float | None]:
        t = outbox_table
        async with self.engine.connect() as conn:
            result = await conn.execute(select(func.count(), func.min(t.c.created_at)))
            count, oldest = result.one()
        return int(count), (float(oldest) if oldest is not None else None)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            _, pending = await asyncio.wait({self._listener}, timeout=5.0)
            if pending:
                log.error("outbox relay: the LISTEN connection did not close within 5 s")
            self._listener = None
        if self._owns_engine:
            await self.engine.dispose()

    # -- LISTEN/NOTIFY (PostgreSQL) --------------------------------------------------------------
    def _ensure_listener(self) -> None:
        if self._listen and (self._listener is None or self._listener.done()):
            self._listener = asyncio.create_task(self._listen_loop(), name="errands-outbox-listen")

    async def _listen_loop(self) -> None:
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay: LISTEN %s failed (%s), polling meanwhile", CHANNEL, exc)
            self._notified.set()  # rows may have come while nobody listened
            await asyncio.sleep(1.0)

    async def _listen_once(self) -> None:
        async with self.engine.connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            try:
                if self.engine.dialect.driver == "asyncpg":
                    await raw.add_listener(CHANNEL, lambda *_: self._notified.set())
                    lost = asyncio.Event()
                    raw.add_termination_listener(lambda *_: lost.set())
                    self._notified.set()
                    await lost.wait()
                else:  # psycopg 3
                    await raw.set_autocommit(True)
                    await raw.execute(f"LISTEN {CHANNEL}")
                    self._notified.set()
                    async for _ in raw.notifies():
                        self._notified.set()
            finally:
                # a LISTENing connection goes back to no pool; bounded: it may be half-dead
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5.0):
                        await conn.invalidate()
