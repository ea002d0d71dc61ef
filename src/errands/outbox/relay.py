"""The relay: moves committed outbox rows into Redis, in batches, and deletes them.

The database side is a :class:`Source` (``errands.contrib.sqlalchemy_relay``'s; Django's
``enqueue_in_outbox`` rows are relayed by it too, from the same database). Each batch is
claimed, enqueued and deleted inside one database transaction; a crash anywhere before its
commit rolls the claim back and the rows are relayed again, and each row's job id makes the
second enqueue store nothing. So each committed row becomes one job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol

from redis.exceptions import ResponseError

from ..aio import wait_event
from ..clock import Clock, SystemClock
from ..enqueuer import EnqueueItem, Enqueuer
from ..errors import UnknownJobError
from ..serialization import SerializationError
from ..store.bulk import name_keys
from ..store.keyrepair import held_key
from ..store.keys import Keys
from ..store.outbox import report, withdraw
from .rows import OutboxRow, enqueue_item

__all__ = ["OutboxRelay", "Source"]

log = logging.getLogger("errands.outbox")
# errors about a row itself (its payload, size, name), not about reaching Redis or the database
ROW_ERRORS = (SerializationError, UnknownJobError, ValueError, TypeError, KeyError)


class PoisonRows(Exception):
    """Rows of a batch that cannot be enqueued: the batch rolls back, and is relayed again
    without them."""

    def __init__(self, errors: dict[int, str], jobs: dict[int, str]) -> None:
        super().__init__(f"{len(errors)} row(s) cannot be enqueued")
        self.errors = errors  # row id -> error
        self.jobs = jobs  # row id -> job id, of the batch's rows


Send = Callable[[list[OutboxRow]], Awaitable[None]]


class Source(Protocol):
    """The outbox table of one database, as the relay sees it."""

    async def relay_batch(self, limit: int, send: Send, skip: Collection[int] = ()) -> int:
        """Claim up to ``limit`` committed rows (oldest first; rows another relay holds, and
        the rows set aside in ``skip``, are passed over), ``await send(rows)``, delete them,
        commit; the number of rows. An error (of ``send`` too) rolls the claim back. The relay
        gives ``skip`` as a mapping row id -> job id: a row is passed over when both match, so
        a new row taking the id of a set-aside row that was deleted (SQLite reuses the largest
        id of a table without AUTOINCREMENT) is claimed; a Source reading ids only passes over
        that row too."""
        ...

    async def wait(self, timeout: float) -> None:
        """Return when rows were committed since the last return (a NOTIFY), or after
        ``timeout`` seconds."""
        ...

    async def backlog(self) -> tuple[int, float | None]:
        """Rows waiting, and the creation time (unix seconds) of the oldest."""
        ...

    async def aclose(self) -> None: ...


class PoolHooks(Protocol):
    """What :meth:`OutboxRelay.attach` needs of a ``WorkerPool``."""

    namespace: str
    redis: Any
    serializer: Any

    def on_startup(self, fn: Any) -> Any: ...
    def on_shutdown(self, fn: Any) -> Any: ...


async def send_rows(enqueuer: Enqueuer, rows: list[OutboxRow]) -> None:
    """Enqueue the rows' jobs in one round trip; a row already relayed stores nothing."""
    await enqueuer.enqueue_many([enqueue_item(row) for row in rows])


def row_fault(keys: Keys, exc: BaseException, names: Collection[str]) -> bool:
    """Whether ``exc``, raised by an enqueue of rows of job ``names``, is a row's fault: its
    payload, size or name (ROW_ERRORS), or a key of one of these names' own (its queue,
    scheduled set, partition keys, idle pools) holding another type, which refuses every
    enqueue of that name (lib/types.lua) and no other's. A namespace-wide key of another type
    refuses every row alike: no row's fault."""
    if isinstance(exc, ROW_ERRORS):
        return True
    if not isinstance(exc, ResponseError) or (key := held_key(keys, str(exc))) is None:
        return False
    return any(key in name_keys(keys, name) for name in names)


def build_items(rows: list[OutboxRow]) -> tuple[list[EnqueueItem], dict[int, str]]:
    """The ``enqueue_many`` items of the rows, and the rows whose payload cannot be read (row
    id -> error). ``enqueue_item`` is pure, so any exception of it is the row's fault: a payload
    edited into nonsense must not stop the others."""
    items: list[EnqueueItem] = []
    errors: dict[int, str] = {}
    for row in rows:
        try:
            items.append(enqueue_item(row))
        except Exception as exc:
            errors[row.id] = f"{type(exc).__name__}: {exc}"
    return items, errors


class OutboxRelay:
    """Relays a :class:`Source` into Redis: ``await relay.run(enqueuer)``, or inside a worker
    pool with ``relay.attach(pool)``. Any number of relays may run on one table (in every pool:
    there is no leader); each batch is claimed by one of them.

    ``batch`` rows per transaction; ``poll_interval`` bounds the wait for new rows when no
    NOTIFY comes (other databases than PostgreSQL, or a lost LISTEN connection). Every
    ``report_interval`` seconds a running relay counts the rows waiting and reports to Redis,
    where ``Client.outbox()`` and the dashboard read it.
    """

    def __init__(
        self,
        source: Source,
        *,
        batch: int = 1000,
        poll_interval: float = 1.0,
        report_interval: float = 2.0,
        clock: Clock | None = None,
    ) -> None:
        if batch < 1 or batch > 5000:
            raise ValueError(f"batch must be 1..5000 rows, got {batch}")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        self.source = source
        self.batch = batch
        self.poll_interval = poll_interval
        self.report_interval = report_interval
        self.clock: Clock = clock or SystemClock()
        self.id = uuid.uuid4().hex[:16]
        self._reported_at: float | None = None
        self._started_at: float | None = None  # the first report of this relay
        self.relayed = 0  # rows relayed by this relay
        self.last_batch_at: float | None = None  # when a batch (even an empty one) last committed
        self.last_error: str | None = None
        # rows that cannot be enqueued (row id -> error): left in the table, passed over by this
        # relay, shown in its reports; delete or fix them, then restart the relay
        self.skipped: dict[int, str] = {}
        self._skip_jobs: dict[int, str] = {}  # their job ids (row id -> job id)
        self._enqueuer: Enqueuer | None = None
        self._task: asyncio.Task[None] | None = None

    async def relay_once(self, enqueuer: Enqueuer) -> int:
        """Relay one batch; the number of rows. Rows that cannot be enqueued are added to
        ``skipped`` and the batch is claimed again without them, as often as a batch has new
        ones (each time at least one row more is set aside, so this ends)."""
        self._enqueuer = enqueuer
        while True:
            try:
                n = await self.source.relay_batch(self.batch, self._send, self._skip_jobs)
                break
            except PoisonRows as poison:
                # (a row of a set-aside row's id but another job id is another row)
                new = {
                    i: e
                    for i, e in poison.errors.items()
                    if i not in self._skip_jobs or self._skip_jobs[i] != poison.jobs.get(i)
                }
                if not new:  # (a Source that did not pass over the skipped rows)
                    raise
                for row_id, error in new.items():
                    log.error("outbox relay: row %d of errands_outbox cannot be enqueued, left "
                              "in the table and passed over: %s", row_id, error)  # fmt: skip
                self.skipped.update(new)
                self._skip_jobs.update({i: poison.jobs.get(i, "") for i in new})
        self.relayed += n
        self.last_batch_at = self.clock.now()
        self.last_error = None
        return n

    async def drain(self, enqueuer: Enqueuer) -> int:
        """Relay until the table is empty (for tests and scripts); the number of rows."""
        total = 0
        while n := await self.relay_once(enqueuer):
            total += n
        return total

    async def _send(self, rows: list[OutboxRow]) -> None:
        assert self._enqueuer is not None
        items, errors = build_items(rows)
        jobs = {row.id: row.job_id for row in rows}
        if errors:  # set aside at once: building an item does no I/O, so the row is at fault
            raise PoisonRows(errors, jobs)
        keys = self._enqueuer.keys
        try:
            await self._enqueuer.enqueue_many(items)
        except Exception as exc:
            if not row_fault(keys, exc, {row.name for row in rows}):
                raise
            # one at a time, to name the rows at fault; the others go again with the next batch
            for row, item in zip(rows, items, strict=True):
                try:
                    await self._enqueuer.enqueue_many([item])
                except Exception as one:
                    if not row_fault(keys, one, {row.name}):
                        raise
                    errors[row.id] = f"{type(one).__name__}: {one}"
            if not errors:
                raise
            raise PoisonRows(errors, jobs) from None

    async def run(self, enqueuer: Enqueuer) -> None:
        """Relay until cancelled: batch after batch while full ones come, then wait for a
        NOTIFY or ``poll_interval``. Errors (database or Redis down) are logged and retried
        after ``poll_interval``."""
        self._enqueuer = enqueuer
        while True:
            try:
                n = await self.relay_once(enqueuer)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "outbox relay: %s; retrying in %.1fs", self.last_error, self.poll_interval
                )
                await self._report(enqueuer)
                # (not source.wait: a NOTIFY must not hasten the retry of a failing relay)
                await self._wait(enqueuer, asyncio.sleep(self.poll_interval))
                continue
            await self._report(enqueuer)
            if n < self.batch:
                await self._wait(enqueuer, self.source.wait(self.poll_interval))

    async def _wait(self, enqueuer: Enqueuer, waiting: Awaitable[None]) -> None:
        """Await ``waiting`` (a NOTIFY or ``poll_interval``, or the pause before a retry),
        reporting every ``report_interval`` meanwhile: a relay waiting longer than a report's
        silence (``poll_interval`` 60 s on PostgreSQL, woken by NOTIFY) is not taken for a
        dead one, whether it waits for rows or to retry a batch that failed."""
        if not 0 < self.report_interval < self.poll_interval:
            await waiting
            return
        done = asyncio.Event()

        async def report_meanwhile() -> None:
            while not done.is_set():
                await wait_event(done, self.report_interval)
                if not done.is_set():
                    await self._report(enqueuer)

        reporter = asyncio.create_task(report_meanwhile(), name="errands-outbox-report")
        try:
            await waiting
        finally:
            done.set()  # (a report in flight ends first, unless this wait was cancelled)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)

    async def _report(self, enqueuer: Enqueuer) -> None:
        """Count the backlog and report to Redis, at most every ``report_interval``; never
        raises (a relay that cannot report still relays)."""
        now = self.clock.now()
        if self._reported_at is not None and now - self._reported_at < self.report_interval:
            return
        self._reported_at = now
        if self._started_at is None:
            self._started_at = now
        status: dict[str, Any] = {
            "every": self.report_interval,
            "poll": self.poll_interval,
            "started_at": self._started_at,
            "relayed": self.relayed,
            "last_batch_at": self.last_batch_at,
            "error": self.last_error,
            "skipped": len(self.skipped),
            # (the first row set aside: its id, for an operator to find it in the table)
            "skip_error": next((f"row {i}: {e}" for i, e in self.skipped.items()), None),
            "backlog": None,
            "oldest": None,
        }
        try:
            status["backlog"], status["oldest"] = await self.source.backlog()
        except Exception as exc:
            status["error"] = status["error"] or f"{type(exc).__name__}: {exc}"
        try:
            await report(enqueuer.redis, enqueuer.keys, self.id, status, now)
        except Exception as exc:
            log.debug("outbox relay: report failed: %s", exc)

    # -- inside a worker pool ------------------------------------------------------------------
    def attach(self, pool: PoolHooks) -> None:
        """Run this relay in ``pool`` while it runs (started after its startup hooks, stopped at
        its shutdown), enqueueing through the pool's Redis and namespace."""

        async def start(context: dict[str, Any]) -> None:
            enqueuer = Enqueuer(
                pool.redis, namespace=pool.namespace, serializer=pool.serializer, strict=None
            )
            self.start(enqueuer)

        async def stop(context: dict[str, Any]) -> None:
            await self.stop()

        pool.on_startup(start)
        pool.on_shutdown(stop)

    def start(self, enqueuer: Enqueuer) -> None:
        """Start :meth:`run` as a task of the running event loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(enqueuer), name="errands-outbox-relay")

    async def stop(self) -> None:
        """Cancel the task of :meth:`start` (a batch in flight rolls back) and close the source."""
        if self._task is not None:
            self._task.cancel()
            _, pending = await asyncio.wait({self._task}, timeout=10.0)
            if pending:
                log.error("outbox relay: its task did not stop within 10 s of its cancel")
            self._task = None
            if self._enqueuer is not None:
                with contextlib.suppress(Exception):
                    await withdraw(self._enqueuer.redis, self._enqueuer.keys, self.id)
        await self.source.aclose()
