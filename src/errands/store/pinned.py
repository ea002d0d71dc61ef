"""One Lua script called on a connection held for it, the command packed by errands.

The enqueue path's cost in Python is mostly redis-py's generic machinery around one EVALSHA:
taking a connection from the pool and giving it back (a lock, health bookkeeping), packing
twenty-odd arguments through its encoder, and, with a socket timeout set (errands always sets
one), a task of its own for every send (``asyncio.wait_for``) and a timeout scope for every
read: two extra turns of the event loop per call. The :class:`PinnedScript` holds one
connection of the pool, packs ``EVALSHA`` itself (keys and arguments are ``str``, ``bytes`` or
``int``) and, once redis-py has connected it (AUTH, SELECT, CLIENT SETNAME done), reads its
replies itself (:class:`_Link`): the socket's bytes go straight into a hiredis reader, and each
reply resolves the future of the call it answers, in the order the calls were written. A call
is one write and one wait; several calls may be in flight on the link at once.

It never replaces the general path, only goes before it: the caller falls back to the
ordinary script call (which loads a missing script, retries after a broken connection and
names the server in its errors) whenever this one raises ``NoScriptError`` or loses its
connection, and the enqueue script is idempotent on the job id, so a call sent twice stores
each job once. A reply that does not come within the client's ``socket_timeout`` breaks the
link (every call in flight fails with ``TimeoutError``; the next call connects anew). A push
message of RESP3 (redis-py's default protocol since 8.0) between two replies is passed over.
Not used on a Redis Cluster client or with ``wait_replicas``. An idle pool's ``BLPOP`` of
its hand-off list goes the same way (:class:`PinnedConnection`, the command packed by the
mailbox: worker/mailbox.py). A pool's fetch and ack calls (store/hotcalls.py) are sent as
``FCALL`` of their libraries of Redis Functions once loaded (``PinnedScript.function``,
store/fnlib.py), the general path staying ``EVALSHA``.

``enqueue_many`` (:class:`BulkEnqueue`) packs its calls too (by hiredis; without it, by
joining runs of strings or of bytes: a call of thousands of jobs costs a few joins, not an
encoding per argument), and sends each on a connection taken from the pool for the call
(several may run at once), read by redis-py. The same fallback to the general path.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .bulk import Columns, OneJobHeads, enqueue_request, job_spec, one_job_command, pack_call
from .connection import BROKEN, as_read_only
from .foreign import forks, give_back, on_this_loop
from .scripts import Arg, Scripts

try:
    import hiredis
except ImportError:  # pragma: no cover (a dependency: redis[hiredis])
    hiredis = None  # type: ignore[assignment]

__all__ = ["BulkEnqueue", "PinnedConnection", "PinnedEnqueue", "PinnedScript"]

_MISSING = object()  # hiredis: no complete reply yet
_PUSH: Any = getattr(hiredis, "PushNotification", None)  # a RESP3 push (hiredis >= 3.2)


class _Link(asyncio.Protocol):
    """The replies to the calls written on a transport taken over from redis-py, in order."""

    def __init__(
        self,
        transport: asyncio.Transport,
        parse_error: Callable[[str], Exception],
        timeout: float | None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse, replyError=parse_error, notEnoughData=_MISSING
        )
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._paused: asyncio.Future[None] | None = None  # the transport's buffer is full
        self.broken: BaseException | None = None
        self._transport = transport
        self._streams = transport.get_protocol()  # redis-py's, told when the connection ends
        transport.set_protocol(self)

    def call(self, data: bytes) -> Awaitable[Any]:
        """Write one command; its reply (an error reply as the exception, not raised), to
        await (the future itself: no coroutine of its own, unless the buffer is full)."""
        if self.broken is not None:
            raise _fresh(self.broken)
        future = self._loop.create_future()
        self._waiting.append((future, self._loop.time()))
        self._transport.write(data)
        if self._timer is None and self._timeout is not None:
            self._timer = self._loop.call_later(self._timeout, self._expire)
        if self._paused is not None:
            return self._after(self._paused, future)
        return future

    async def _after(self, paused: asyncio.Future[None], future: asyncio.Future[Any]) -> Any:
        await asyncio.shield(paused)
        return await future

    def close(self) -> None:
        self._fail(RedisConnectionError("the pinned connection was closed"))

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._waiting
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not _MISSING:
                if _PUSH is not None and isinstance(reply, _PUSH):
                    continue  # not the answer to a call
                if not waiting:
                    raise InvalidResponse(f"a reply no call waits for: {reply!r}")
                future = waiting.popleft()[0]
                if not future.done():  # (its caller was cancelled: the reply is dropped)
                    future.set_result(reply)
        except InvalidResponse as exc:
            self._fail(RedisConnectionError(f"protocol error on the pinned connection: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"the pinned connection was lost: {exc or 'closed'}"))
        self._streams.connection_lost(exc)  # (redis-py's disconnect() waits for it)

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost follows

    def pause_writing(self) -> None:
        self._paused = self._loop.create_future()

    def resume_writing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def _expire(self) -> None:
        """No reply for ``timeout`` seconds after the oldest call in flight: give up the link."""
        self._timer = None
        if not self._waiting or self._timeout is None:
            return
        due = self._waiting[0][1] + self._timeout
        if self._loop.time() >= due:
            self._fail(RedisTimeoutError("Timeout reading from the pinned connection"))
        else:
            self._timer = self._loop.call_at(due, self._expire)

    def _fail(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(_fresh(exc))
        self.resume_writing()
        if not self._transport.is_closing():
            self._transport.close()


class PinnedConnection:
    """Sends commands packed by the caller on a connection of ``redis``'s pool held between
    calls. Calls may overlap when errands reads the replies (``_link``; they come back in the
    order sent); on redis-py's reading (an older hiredis on RESP3, or none) they take turns
    (``_turn``: redis-py's reader refuses a second read while one waits)."""

    def __init__(self, redis: Redis) -> None:
        self._pool = redis.connection_pool
        self._conn: AbstractConnection | None = None
        self._link: _Link | None = None  # None: redis-py reads the replies (one call at a time)
        self._turn: asyncio.Lock | None = None  # (only when redis-py reads)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._forks = forks()
        self._connecting: asyncio.Future[tuple[AbstractConnection, _Link | None]] | None = None

    async def send(self, packed: bytes) -> Any:
        """The reply to ``packed``, one command in the Redis protocol (an error reply raised)."""
        conn, link = self._conn, self._link
        if conn is None or self._loop is not asyncio.get_running_loop() or self._forks != forks():
            # (after a fork the socket is the parent's: forget it, never close it)
            conn, link = await self._connected()
        try:
            if link is not None:
                reply = await link.call(packed)
            else:
                reply = await self._in_turn(conn, packed)
        except ResponseError:  # the reply was read: the connection is fine (READONLY on
            raise  # redis-py's reading: given up in _in_turn)
        except BaseException:
            if link is not None and link.broken is not None:  # broken or timed out (on
                await self._drop(conn)  # redis-py's reading, given up in _in_turn)
            raise
        if isinstance(reply, Exception):  # (LOADING, NOAUTH: not ResponseErrors)
            reply = as_read_only(reply)
            if isinstance(reply, ReadOnlyError):  # a replica now (a master demoted): the next
                await self._drop(conn)  # call takes a new connection from the pool
            raise reply
        return reply

    async def _in_turn(self, conn: AbstractConnection, packed: bytes) -> Any:
        """One call on redis-py's reading, after the calls before it on the connection."""
        turn = self._turn
        if turn is None or self._conn is not conn:
            raise RedisConnectionError("the pinned connection was given up")
        await turn.acquire()  # (cancelled while waiting: nothing sent, the connection stays)
        try:
            if self._conn is not conn:  # given up by the call before (broken, timed out)
                raise RedisConnectionError("the pinned connection was given up")
            await conn.send_packed_command(packed, check_health=False)
            return await conn.read_response()
        except ResponseError as exc:
            meant = as_read_only(exc)
            if isinstance(meant, ReadOnlyError):
                await self._drop(conn)  # (before the next call's turn: see __call__)
            if meant is not exc:
                raise meant from None
            raise  # else the reply was read: the connection is fine
        except BaseException:  # broken, timed out or cancelled mid-reply: never reuse it
            await self._drop(conn)
            raise
        finally:
            turn.release()

    async def _connected(self) -> tuple[AbstractConnection, _Link | None]:
        """Connect; the calls that arrive meanwhile wait for the same connection."""
        loop = asyncio.get_running_loop()
        pending = self._connecting
        if pending is None or pending.done() or pending.get_loop() is not loop:
            pending = self._connecting = loop.create_task(self._connect())
        await asyncio.wait([pending])  # (a caller cancelled: the connect goes on for the others)
        if pending.cancelled():  # by aclose()
            raise RedisConnectionError("the pinned connection was closed while being made")
        return pending.result()

    async def _connect(self) -> tuple[AbstractConnection, _Link | None]:
        old, self._conn, self._link = self._conn, None, None  # (old: of another loop or the
        await give_back(self._pool, old, self._loop if self._forks == forks() else None)  # parent)
        conn = await on_this_loop(self._pool, forks())  # (not one of another loop or the parent)
        self._conn, self._loop, self._forks = conn, asyncio.get_running_loop(), forks()
        self._link = _take_over(conn)
        self._turn = asyncio.Lock() if self._link is None else None
        return conn, self._link

    async def _drop(self, conn: AbstractConnection) -> None:
        if self._conn is not conn:
            return  # dropped already (another call in flight on the same link)
        link, self._conn, self._link = self._link, None, None
        if link is not None:
            link.close()
        await conn.disconnect(nowait=True)
        await self._pool.release(conn)

    async def give_up(self, idle_only: bool = False) -> None:
        """The path is suspect (another connection broke or timed out): close the held one,
        its calls in flight failing with ``ConnectionError`` (the next connects anew); unless a
        call is in flight on redis-py's reading (unsafe under its read) or any, ``idle_only``."""
        conn, link = self._conn, self._link
        if conn is None or self._loop is not asyncio.get_running_loop() or self._forks != forks():
            return
        in_flight = bool(link._waiting) if link else self._turn is not None and self._turn.locked()
        if in_flight and (idle_only or link is None):
            return
        await self._drop(conn)

    async def aclose(self) -> None:
        """Close the connection and give it back to the pool (which reconnects it on use)."""
        pending, self._connecting = self._connecting, None
        loop = asyncio.get_running_loop()
        if pending is not None and not pending.done() and pending.get_loop() is loop:
            pending.cancel()  # (the pool takes back what it got; the callers fall back)
            await asyncio.wait([pending])
        conn = self._conn
        if conn is not None and self._loop is loop:
            if self._link is None:
                self._conn = None
                await self._pool.release(conn)  # redis-py's reading: still in step, reusable
            else:
                await self._drop(conn)
        self._conn = self._link = None


class PinnedScript(PinnedConnection):
    """Calls the script ``sha`` on a connection held for it (:class:`PinnedConnection`); or,
    while ``function`` is set, the function of that name (``FCALL``: the same script loaded as
    a library of Redis Functions, store/fnlib.py and store/hotcalls.py)."""

    def __init__(self, redis: Redis, sha: str) -> None:
        super().__init__(redis)
        self.sha = sha.encode()
        self.function: bytes | None = None

    def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Coroutine[Any, Any, Any]:
        """The script's reply (as :meth:`send` of its ``EVALSHA`` or ``FCALL``, packed here)."""
        return self.call_packed(lambda verb, name: pack_call(name, keys, args, verb))

    def call_packed(self, pack: Callable[[bytes, bytes], bytes]) -> Coroutine[Any, Any, Any]:
        """As a call, the command ``pack(verb, name)`` packs (store/hotcalls.py)."""
        fn = self.function
        return self.send(pack(b"EVALSHA", self.sha) if fn is None else pack(b"FCALL", fn))


def _take_over(conn: AbstractConnection) -> _Link | None:
    """Read ``conn``'s replies with a :class:`_Link`, when that is safe: hiredis is there (and
    tells RESP3 pushes apart, on a RESP3 connection) and nothing unread is buffered; else None
    (redis-py reads)."""
    c: Any = conn  # (redis-py's private attributes, checked one by one)
    writer, reader = getattr(c, "_writer", None), getattr(c, "_reader", None)
    if hiredis is None or writer is None or reader is None or getattr(reader, "_buffer", True):
        return None
    if str(getattr(c, "protocol", 2) or 2) == "3" and _PUSH is None:
        return None
    transport = writer.transport  # asyncio's or uvloop's (not an asyncio.Transport subclass)
    if not hasattr(transport, "set_protocol") or transport.is_closing():
        return None
    return _Link(transport, c._parser.parse_error, getattr(c, "socket_timeout", None))


def _fresh(exc: BaseException) -> BaseException:
    """The same error for another caller (one exception raised in many tasks would collect
    every task's traceback)."""
    return type(exc)(*exc.args)


class PinnedEnqueue:
    """The enqueue script (``Scripts.enqueue``'s call) on a pinned connection. A call of one
    job reuses its name's part of the command (packed once per name, see
    :func:`one_job_command`)."""

    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.scripts = scripts
        self.script = PinnedScript(redis, scripts.sha("enqueue"))
        self._heads: OneJobHeads = {}

    async def enqueue(self, names: Sequence[str], jobs: Sequence[Sequence[Arg]]) -> list[int]:
        """As ``Scripts.enqueue``: the 0-based indices of the jobs already there."""
        if len(jobs) == 1 and len(names) == 1 and type(envelope := jobs[0][3]) is bytes:
            row, k = jobs[0], self.scripts.keys
            spec = job_spec(1, int(row[4]), int(row[5]), str(row[6]))
            command = one_job_command(k, self.script.sha, self._heads, names[0], str(row[2]),
                                      envelope, spec)  # fmt: skip
            existed = await self.script.send(command)
        else:
            existed = await self.script(*self.scripts.enqueue_request(names, jobs))
        return [int(i) - 1 for i in existed]

    async def aclose(self) -> None:
        await self.script.aclose()


class BulkEnqueue:
    """The enqueue script for ``enqueue_many``, packed here (see the module's docstring);
    ``pool`` None (a cluster client, ``wait_replicas``): always the general path."""

    def __init__(self, scripts: Scripts, pool: ConnectionPool | None) -> None:
        self.scripts = scripts
        self._pool = pool
        self.calls = 0  # script calls made (for tests)

    async def enqueue(self, columns: Columns) -> list[int]:
        """The 0-based indices of the jobs found already there (not stored again)."""
        self.calls += 1
        if self._pool is not None:
            keys, args = enqueue_request(self.scripts.keys, *columns)
            try:
                sha = self.scripts.sha("enqueue").encode()
                existed = await self._direct(pack_call(sha, keys, args))
                return [int(i) - 1 for i in existed]
            except NoScriptError:
                pass  # the general path loads the script
            except BROKEN:
                pass  # the general path reconnects, retries and names the server
        return await self.scripts.enqueue_columns(columns)

    async def _direct(self, command: bytes) -> Any:
        assert self._pool is not None
        pool = self._pool
        conn = await on_this_loop(pool, forks())  # (not another loop's, nor the parent's)
        try:
            await conn.send_packed_command(command)
            reply = await conn.read_response()
        except ResponseError:
            await pool.release(conn)  # the reply was read: the connection is fine
            raise
        except BaseException:  # broken, timed out or cancelled mid-call: never reuse it
            await conn.disconnect(nowait=True)
            await pool.release(conn)
            raise
        await pool.release(conn)
        return reply
