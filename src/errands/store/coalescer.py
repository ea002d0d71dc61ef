"""Enqueues issued concurrently on one event loop, joined into one script call.

An ``await enqueue(...)`` inside a busy web app is rarely alone: while one script call is on
the wire, other requests' enqueues arrive. Sending each as its own ``EVALSHA`` pays a round
trip, a connection checkout and redis-py's command packing per job; ``enqueue.lua`` already
stores many jobs in one call. The coalescer sends a lone enqueue at once (no added latency)
and, while a call is in flight, gathers the enqueues that arrive into the next call (natural
batching, as auto-pipelining clients do). That next call leaves one turn of the event loop after
the reply: the requests a web server hands over with that reply (read in the same turn) reach
their enqueue first and join it (at 16 connections, 8 jobs a call instead of 5). For the
callers nothing changes:

- each ``await`` returns only once its own job is stored (the call that carried it returned);
- an error reaches only the callers whose jobs were in the failed call; a script error
  (``ResponseError``) in a call of several jobs re-sends them one by one, so only the jobs
  that fail by themselves fail (the enqueue script is idempotent on the job id, so the jobs
  stored by the first send are not stored twice); each caller is told as its own call
  returns, and once Redis cannot be reached the jobs not yet re-sent fail unsent;
- an error of the server's state met during that re-send (``server_refusal``: a replica,
  READONLY; over maxmemory, OOM; unable to persist, MISCONF; busy with a script, BUSY; the user
  may not run the script, NOPERM; ...) fails the jobs not yet re-sent at once, with no refused
  round trip each (a call of one job met it too: the batch's own refusal may have been its size,
  over maxmemory, or a passing state, so the re-send is always tried); a job too large to fit
  alone meets OOM the same way and fails the jobs behind it: tolerated, the server then being
  within one job of maxmemory;
- jobs are sent in the order they were submitted, so one caller's jobs keep their order;
- a caller cancelled before its job was sent drops the job; once sent, the job is stored
  whether the caller still waits or not (as with a direct call).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import (
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)

from .bulk import MAX_CALL_BYTES
from .connection import BROKEN, REDIS_ERRORS
from .foreign import forks
from .scripts import Arg

__all__ = ["Coalescer", "Send", "server_refusal"]

# (names, rows) -> 0-based indices of the rows whose job id was already there
Send = Callable[[Sequence[str], Sequence[Sequence[Arg]]], Awaitable[list[int]]]
MAX_JOBS = 1000  # per script call: bounded work, and a bounded wait for the last one in


class _Pending:
    __slots__ = ("future", "name", "row")

    def __init__(self, name: str, row: list[Arg], future: asyncio.Future[bool]) -> None:
        self.name = name
        self.row = row  # (name index, name, id, envelope, priority, due ms); index set on send
        self.future = future


class Coalescer:
    """Joins concurrent enqueues of one event loop into calls of ``send`` (the enqueue script)."""

    def __init__(self, send: Send, max_jobs: int = MAX_JOBS, fast: Send | None = None) -> None:
        self._send = send
        self._fast = fast  # tried first (store/pinned.py); ``send`` when it cannot answer
        self.max_jobs = max_jobs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Pending] = []
        self._busy = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._forks = forks()
        self.calls = 0  # script calls made (for tests and figures)

    async def submit(self, name: str, row: list[Arg]) -> bool:
        """Store one job (``row`` as for the enqueue script); True if its id was already
        there. Raises what the call carrying it raised."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests, a sync wrapper's thread): fresh state
            self._adopt(loop)
        if not self._busy:
            self._busy = True  # fast path: alone, sent from the caller's own task
            try:
                self.calls += 1
                one = row if row[0] == 1 else [1, *row[1:]]  # its name's index in the call: 1
                return bool(await self._send_once([name], [one]))
            finally:
                self._after_call()
        pending = _Pending(name, row, loop.create_future())
        self._pending.append(pending)
        return await pending.future

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve ``loop`` from now on; refused while another thread's loop has a call in flight
        or jobs gathered: its callers would never be told (the state is one loop's)."""
        old, forked = self._loop, self._forks != forks()  # (forked: the old loop is the parent's)
        self._forks = forks()
        if old is not None and not forked and old.is_running() and (self._busy or self._pending):
            raise RuntimeError(
                "this Enqueuer is in use on another event loop, running in another thread: an "
                "Enqueuer (its connections too) serves one event loop at a time; use a "
                "SyncEnqueuer from threads, or one Enqueuer per event loop"
            )
        self._loop, self._pending, self._busy = loop, [], False

    def _after_call(self) -> None:
        """The call in flight ended: send what gathered meanwhile from a task of its own."""
        if self._pending:
            task = asyncio.ensure_future(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._busy = False

    async def _drain(self) -> None:
        batch: list[_Pending] = []
        try:
            while self._pending:
                await asyncio.sleep(0)  # one turn of the loop: this turn's callers join in
                batch = self._take()
                if batch:
                    await self._call(batch)
        except BaseException:  # cancelled (the loop is closing): nobody will send the rest
            for p in [*batch, *self._pending]:
                p.future.cancel()
            self._pending = []
            raise
        finally:
            self._after_call()

    def _take(self) -> list[_Pending]:
        """The next call's jobs: at most ``max_jobs``, and ``MAX_CALL_BYTES`` of envelopes
        (a larger one alone), in the order they came."""
        n, size = min(len(self._pending), self.max_jobs), 0
        for k in range(n):
            size += len(self._pending[k].row[3])  # type: ignore[arg-type]
            if size > MAX_CALL_BYTES and k:
                n = k
                break
        batch, self._pending = self._pending[:n], self._pending[n:]
        return [p for p in batch if not p.future.cancelled()]  # their callers gave up

    async def _call(self, batch: list[_Pending]) -> None:
        """One script call for ``batch``, its outcome told to each caller; on a script error
        with several jobs, one call per job (``_one_by_one``)."""
        try:
            existed = await self._once(batch)
        except ResponseError as exc:
            if len(batch) > 1:  # (one job's refusal, or the server's: the re-send tells which)
                await self._one_by_one(batch)
            else:
                _fail(batch, exc)
            return
        except Exception as exc:  # handed to each caller of the call
            _fail(batch, exc)
            return
        for p, was in zip(batch, existed, strict=True):
            if not p.future.done():
                p.future.set_result(was)

    async def _one_by_one(self, batch: list[_Pending]) -> None:
        """Each job in a call of its own, its caller told as soon as that call returns; an
        error reaches only the caller whose call raised it. Once Redis could not be reached (or
        refused a call for its state: ``server_refusal``), the jobs not yet re-sent are not sent
        again: their callers get that error at once instead of a reconnect wait each, one after
        the other (up to ``max_jobs`` connect or socket timeouts in a row), or as many refused
        round trips. (Not re-sent is not "not stored": the batch's first send
        may have stored them with its reply lost, as for any call a connection error ends.)
        A caller cancelled meanwhile has its job dropped, not re-sent (the batch stored
        nothing)."""
        for k, p in enumerate(batch):
            if p.future.cancelled():
                continue
            try:
                was = (await self._once([p]))[0]
            except Exception as exc:
                if isinstance(exc, REDIS_ERRORS) or server_refusal(exc):
                    _fail(batch[k:], exc)
                    return
                _fail([p], exc)
                continue
            if not p.future.done():  # (its caller may have been cancelled meanwhile)
                p.future.set_result(was)

    async def _once(self, batch: list[_Pending]) -> list[bool]:
        index: dict[str, int] = {}
        rows: list[list[Arg]] = []
        for p in batch:
            row = list(p.row)
            row[0] = index.setdefault(p.name, len(index) + 1)
            rows.append(row)
        self.calls += 1
        existed = set(await self._send_once(list(index), rows))
        return [i in existed for i in range(len(batch))]

    async def _send_once(self, names: list[str], rows: list[list[Arg]]) -> list[int]:
        if self._fast is not None:
            try:
                return await self._fast(names, rows)
            except NoScriptError:
                pass  # the general path loads the script
            except ReadOnlyError:
                pass  # not run; the held connection went: the general path finds the master
            except BROKEN:
                pass  # the general path reconnects, retries and names the server
        return await self._send(names, rows)


# error replies (their first word) for the server's state, whatever the call, that redis-py has
# no class of its own for: a failed RDB save under stop-writes-on-bgsave-error (MISCONF), a
# master without the replicas of min-replicas-to-write (NOREPLICAS), a script or function running
# too long (BUSY); and, quoted by Redis < 7 inside the error of the script whose command met them
# ("ERR Error running script (call to f_<sha>): @user_script:<line>: -OOM command not allowed
# ..."), the ones redis-py has a class for
_STATE_CODES = ("MISCONF", "NOREPLICAS", "BUSY", "READONLY", "OOM")
_QUOTED = re.compile(r"^Error running script .*?: -([A-Z]+) ")


def server_refusal(exc: BaseException) -> bool:
    """Whether ``exc``, an error reply to an enqueue call of one job, is about the server's
    state and not about that job: the next calls of the script are refused the same way until
    the state changes (a replica: READONLY; over maxmemory: OOM; the user may not run EVALSHA:
    NOPERM, but for a key, which the ACL's key patterns may allow for some job names only; a
    cluster's TRYAGAIN, CLUSTERDOWN: ``REDIS_ERRORS``; and ``_STATE_CODES``). Not NOSCRIPT: it
    reaches here only when the script cache was flushed again between redis-py's reload and its
    retry, and the next call loads the script again. The script's own refusals of a job (a key
    of another type: WRONGTYPE naming it; a bad job spec) are not."""
    if not isinstance(exc, ResponseError):
        return False
    text = str(exc)
    quoted = _QUOTED.match(text) if type(exc) is ResponseError else None
    code = quoted.group(1) if quoted else text.split(" ", 1)[0]
    if isinstance(exc, NoPermissionError) or code == "NOPERM":
        return " key" not in text
    if isinstance(exc, NoScriptError):
        return False
    if isinstance(exc, (ReadOnlyError, OutOfMemoryError, *REDIS_ERRORS)):
        return True
    return code in _STATE_CODES


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    """``exc`` to each caller of ``batch`` still waiting."""
    for p in batch:
        if not p.future.done():
            p.future.set_exception(exc if len(batch) == 1 else _fresh(exc))


def _fresh(exc: BaseException) -> BaseException:
    """The same error for another caller (one exception object raised in many tasks would
    collect every task's traceback)."""
    try:
        clone: Any = type(exc)(*exc.args)
    except Exception:
        return exc
    clone.__cause__ = exc.__cause__
    return clone  # type: ignore[no-any-return]
