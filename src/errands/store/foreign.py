"""Pooled connections a held connection (store/pinned.py) must not take over as they are: ones
opened on another event loop (one Enqueuer used under ``asyncio.run`` per call, as
store/coalescer.py allows) or by the parent before a fork. Their replies would be read by a
loop that no longer runs (every call waited for the socket timeout), and each loop would leave
one more connection open on the server. Checked once per connect, never per call.

Here too the one at-fork hook of the asyncio connection pools errands creates or is given
(``watch_forks``): in a forked child none of them writes on the parent's sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import weakref
from typing import Any, TypeVar

from redis.asyncio.connection import AbstractConnection, ConnectionPool

__all__ = [
    "ForkAware",
    "forked",
    "forks",
    "give_back",
    "let_go",
    "let_go_foreign",
    "loop_of",
    "on_this_loop",
    "watch_client",
    "watch_forks",
]

_C = TypeVar("_C")
_forks = 0  # forks between this process and the one that imported errands (os.getpid() is a
# system call, ~1 us on a VM: too dear for every call; a held socket in a child is its parent's)


def forks() -> int:
    """The forks between this process and the one that imported errands (0: not a child)."""
    return _forks


# the loops a held connection ran on, with the fork count then (a loop seen before a fork is
# the parent's in the child: its sockets too)
_seen: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()
_parents: list[tuple[Any, Any]] = []  # the parent's sockets let go in a child, never closed


async def on_this_loop(pool: ConnectionPool, forks: int) -> AbstractConnection:
    """A connection of ``pool`` for the running loop (``forks``: since errands was imported),
    connected anew if it was opened on another loop or before a fork (given back to the pool
    if that fails)."""
    conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
    loop = asyncio.get_running_loop()
    _seen.setdefault(loop, forks)
    other = loop_of(conn)
    if other is None or other is loop:
        return conn
    try:
        # (a process that never forked owns every socket; in a child, one of a loop no held
        # connection ran on may be the parent's: kept, never closed)
        let_go(conn, own=forks == 0 or _seen.get(other) == forks)
        await conn.connect()  # type: ignore[no-untyped-call]
    except BaseException:
        await pool.release(conn)
        raise
    return conn


async def give_back(
    pool: ConnectionPool, conn: AbstractConnection | None, loop: asyncio.AbstractEventLoop | None
) -> None:
    """A held connection (if any) of ``loop``, not the running one (None: of the parent,
    before a fork), back to ``pool`` disconnected."""
    if conn is not None:
        let_go(conn, own=loop is not None)
        await pool.release(conn)


def loop_of(conn: AbstractConnection) -> asyncio.AbstractEventLoop | None:
    """The loop ``conn``'s socket was opened on (None: not connected)."""
    return getattr(getattr(conn, "_reader", None), "_loop", None)  # (redis-py's, asyncio's)


def let_go(conn: AbstractConnection, own: bool) -> None:
    """Make redis-py see ``conn`` disconnected (it connects anew on use) without running its
    disconnect here (on another loop). ``own``: this process's socket, shut down (the server
    drops its client now) and closed on its loop, or at once if that loop is closed; else a
    parent's socket, never touched (closing it would end the parent's connection)."""
    c: Any = conn
    reader, writer = c._reader, c._writer
    c._reader = c._writer = None
    with contextlib.suppress(Exception):
        c._parser.on_disconnect()
    if writer is None:
        return
    if not own:  # kept: collected, its streams would close it on the parent's loop object
        _parents.append((reader, writer))  # (whose epoll the child shares)
        return
    transport = writer.transport
    with contextlib.suppress(Exception):
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    loop = getattr(reader, "_loop", None)
    if loop is not None and not loop.is_closed():
        with contextlib.suppress(Exception):
            loop.call_soon_threadsafe(writer.close)  # (the writer kept till then: collected
            # before, it warns "unclosed")
        return
    raw = getattr(transport, "_sock", None)  # (asyncio's transport: its loop closed, it
    with contextlib.suppress(Exception):  # never closes its socket now; close() marks it
        transport.close()  # closing, then raises: no loop to tell)
    if raw is not None:
        raw.close()
        transport._sock = None


def let_go_foreign(pool: ConnectionPool) -> None:
    """Let go (``own``) of every connection of ``pool`` opened on another loop than the running
    one, so that closing the pool here does not run their disconnect on that loop (closed: it
    raised "Event loop is closed")."""
    p: Any = pool
    loop = asyncio.get_running_loop()
    for conn in [*getattr(p, "_available_connections", ()), *getattr(p, "_in_use_connections", ())]:
        other = loop_of(conn)
        if other is not None and other is not loop:
            let_go(conn, own=True)


_pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()


def watch_forks(pool: ConnectionPool) -> None:
    """In a child forked from now on, ``pool`` is made fit for the child (``forked``; by the
    hook that also counts the fork): every pool errands creates (ForkAware), and a client's
    passed to an Enqueuer, Client or WorkerPool (``watch_client``)."""
    _pools.add(pool)


def watch_client(redis: _C) -> _C:
    """``redis``, its pool watched (``watch_forks``: an Enqueuer's, Client's or WorkerPool's,
    passed in, or made by connect() and watched already), and for a Sentinel's master
    (``Sentinel.master_for``) its sentinels' pools too: the master lookups of a child's calls
    never on the parent's connections to the sentinels. A ``RedisCluster`` has no pool: not
    covered."""
    pool = getattr(redis, "connection_pool", None)
    if isinstance(pool, ConnectionPool):
        watch_forks(pool)
        manager = getattr(pool, "sentinel_manager", None)
        for sentinel in [*getattr(manager, "sentinels", ())]:
            watch_client(sentinel)
    return redis


def forked(pool: ConnectionPool, forgotten: weakref.WeakSet[Any] | None = None) -> None:
    """(In a forked child) every connection ``pool`` holds (idle or in use) let go as the
    parent's: redis-py's own calls (the general path, not only the held connections) connect
    anew here, never writing on the parent's socket (its reply read by the parent). Its lock
    and condition, and a Sentinel master's pool's lookup lock (topology.SerialSentinel), made
    anew (another thread of the parent may have held them, or bound them to its loop: the
    child's first call waited for ever). With ``forgotten``: the connections in
    use moved there, no longer counted (their tasks are the parent's: the pool's owner drops
    one given back); else they stay counted (redis-py's pool refuses a connection it does not
    count), given back disconnected by a task of the forking thread, never by another's."""
    p: Any = pool
    in_use = getattr(p, "_in_use_connections", ())  # (getattr: a pool of the user's own class)
    for conn in [*getattr(p, "_available_connections", ()), *in_use]:
        if getattr(conn, "_writer", None) is not None:
            let_go(conn, own=False)
    for name, kind in (("_lock", asyncio.Lock), ("_condition", asyncio.Condition)):
        if isinstance(getattr(p, name, None), kind):
            setattr(p, name, kind())
    manager: Any = getattr(p, "sentinel_manager", None)  # (a Sentinel master's pool: the lookups'
    if isinstance(getattr(manager, "_lookup", None), asyncio.Lock):  # lock, topology.py's
        manager._lookup = asyncio.Lock()  # SerialSentinel, held maybe by another thread)
    if forgotten is not None:
        forgotten.update(p._in_use_connections)
        p._in_use_connections.clear()


class ForkAware(ConnectionPool):
    """A pool fit for a forked child (foreign.forked with forgetting): its lock and condition
    made anew there, its idle connections let go, those in use forgotten (one given back in the
    child is dropped). Every pool errands creates is one (store/topology.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._forgotten: weakref.WeakSet[Any] = weakref.WeakSet()  # in use at a fork
        watch_forks(self)

    async def release(self, connection: Any) -> None:
        if self._forgotten and connection in self._forgotten:  # the parent's: dropped
            self._forgotten.discard(connection)
            return
        await super().release(connection)


def _after_fork() -> None:
    global _forks
    _forks += 1
    for pool in list(_pools):
        forked(pool, getattr(pool, "_forgotten", None))  # (ForkAware's: forgets those in use)


os.register_at_fork(after_in_child=_after_fork)
