"""One Lua script called on a connection held for it, the command packed by errands.

The enqueue path's cost in Python is mostly redis-py's generic machinery around one EVALSHA:
taking a connection from the pool and giving it back (a lock, health bookkeeping), and packing
twenty-odd arguments through its encoder. The coalescer (store/coalescer.py) never has more
than one enqueue call in flight per event loop, so that call can own a connection: the
:class:`PinnedScript` holds one, packs ``EVALSHA`` itself (keys and arguments are ``str``,
``bytes`` or ``int``), and reads the reply with redis-py's parser.

It never replaces the general path, only goes before it: the caller falls back to the
ordinary script call (which loads a missing script, retries after a broken connection and
names the server in its errors) whenever this one raises ``NoScriptError`` or loses its
connection, and the enqueue script is idempotent on the job id, so a call sent twice stores
each job once. Not used on a Redis Cluster client or with ``wait_replicas``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from .scripts import Arg, Scripts

__all__ = ["PinnedEnqueue", "PinnedScript"]


class PinnedScript:
    """Calls the script ``sha`` on a connection of ``redis``'s pool held between calls.
    One call at a time (the caller guarantees it)."""

    def __init__(self, redis: Redis, sha: str) -> None:
        self._pool = redis.connection_pool
        self._sha = sha.encode()
        self._conn: AbstractConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = os.getpid()

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        conn = self._conn
        loop = asyncio.get_running_loop()
        if conn is None or self._loop is not loop or self._pid != os.getpid():
            # (after a fork the socket is the parent's: forget it, never close it)
            conn = self._conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            self._loop, self._pid = loop, os.getpid()
        try:
            await conn.send_packed_command(self._pack(keys, args), check_health=False)
            return await conn.read_response()
        except ResponseError:
            raise  # the reply was read: the connection is fine
        except BaseException:  # broken, timed out or cancelled mid-call: never reuse it
            self._conn = None
            await conn.disconnect(nowait=True)
            await self._pool.release(conn)
            raise

    async def aclose(self) -> None:
        """Give the connection back to the pool."""
        conn, self._conn = self._conn, None
        if conn is not None and self._loop is asyncio.get_running_loop():
            await self._pool.release(conn)

    def _pack(self, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
        n = len(keys)
        out = [b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n" % (n + len(args) + 3, self._sha)]
        count = b"%d" % n
        out.append(b"$%d\r\n%s\r\n" % (len(count), count))
        for value in (*keys, *args):
            if isinstance(value, str):
                data = value.encode()
            elif isinstance(value, bytes):
                data = value
            elif isinstance(value, int):
                data = b"%d" % value
            else:
                data = repr(value).encode()  # floats, as redis-py encodes them
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)


class PinnedEnqueue:
    """The enqueue script (``Scripts.enqueue``'s call) on a pinned connection."""

    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.scripts = scripts
        self.script = PinnedScript(redis, scripts.sha("enqueue"))

    async def enqueue(self, names: Sequence[str], jobs: Sequence[Sequence[Arg]]) -> list[int]:
        """As ``Scripts.enqueue``: the 0-based indices of the jobs already there."""
        existed = await self.script(*self.scripts.enqueue_request(names, jobs))
        return [int(i) - 1 for i in existed]

    async def aclose(self) -> None:
        await self.script.aclose()
