"""A small loopback TCP proxy for fault injection: it passes traffic, resets connections, or
black-holes them (data is read and silently dropped, nothing is closed: a half-open connection
as left behind by a dead NAT entry, a firewall or a peer that lost power).

It runs its own asyncio event loop in a daemon thread, so the test's event loop being busy never
delays the traffic it forwards. Every control method is thread-safe and returns once applied.

>>> with FaultProxy(redis_port) as proxy:
...     connect(proxy.url)              # clients talk to Redis through the proxy
...     proxy.reset()                   # RST every open connection
...     proxy.blackhole()               # open connections go silent, new ones pass
...     proxy.blackhole(replies_only=True)  # requests still reach Redis, replies are lost
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

__all__ = ["FaultProxy"]

T = TypeVar("T")

PASS, DROP_BOTH, DROP_REPLIES = "pass", "both", "replies"


class _Link:
    """One proxied connection: client <-> proxy <-> upstream."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.mode = PASS

    def drops(self, to_client: bool) -> bool:
        return self.mode == DROP_BOTH or (self.mode == DROP_REPLIES and to_client)

    def abort(self, rst: bool) -> None:
        for writer in (self.client, self.upstream):
            sock = writer.get_extra_info("socket")
            if rst and sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.links: set[_Link] = set()
        self.accepted = 0
        self.new_mode = PASS
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._hold_until = 0.0  # loop time until which replies are held back
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    # -- control (from any thread) -------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def start(self) -> FaultProxy:
        self._thread.start()

        async def serve() -> int:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            return int(self._server.sockets[0].getsockname()[1])

        self.port = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(timeout=10)
        return self

    def reset(self) -> int:
        """Reset (RST) every open connection; new connections pass. Returns how many."""

        def apply() -> int:
            links = list(self.links)
            for link in links:
                link.abort(rst=True)
            self.links.clear()
            return len(links)

        return self._call(apply)

    def blackhole(self, replies_only: bool = False, new_connections: bool = False) -> int:
        """Open connections go silent for good (both ways, or only Redis's replies); with
        ``new_connections`` new ones are black-holed too until ``restore()``. Returns how many
        connections were affected."""
        mode = DROP_REPLIES if replies_only else DROP_BOTH

        def apply() -> int:
            for link in self.links:
                link.mode = mode
            if new_connections:
                self.new_mode = mode
            return len(self.links)

        return self._call(apply)

    def hold_replies(self, seconds: float) -> int:
        """For ``seconds``, hold back every reply (requests still reach Redis, which runs them):
        a reply Redis sends meanwhile reaches its client only when the time is up, past the
        client's socket timeout if ``seconds`` exceeds it. Returns how many connections are open."""

        def apply() -> int:
            self._hold_until = max(self._hold_until, self._loop.time() + seconds)
            return len(self.links)

        return self._call(apply)

    def passing_ports(self) -> set[int]:
        """Local ports of the proxy's connections to Redis that still pass traffic (the ports
        Redis sees as the clients' in CLIENT LIST)."""

        def apply() -> set[int]:
            ports = set()
            for link in self.links:
                sock = link.upstream.get_extra_info("socket")
                if link.mode == PASS and sock is not None:
                    ports.add(int(sock.getsockname()[1]))
            return ports

        return self._call(apply)

    def restore(self) -> None:
        """New connections pass again (black-holed ones stay dead, as they would for real)."""

        def apply() -> None:
            self.new_mode = PASS

        self._call(apply)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for link in list(self.links):
                link.abort(rst=False)
            self.links.clear()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the proxy itself (on its own loop) ------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        link.mode = self.new_mode
        self.links.add(link)
        for task in (
            asyncio.create_task(self._pump(link, reader, up_writer, to_client=False)),
            asyncio.create_task(self._pump(link, up_reader, writer, to_client=True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        to_client: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if link.drops(to_client):
                    continue
                if to_client and (held := self._hold_until - self._loop.time()) > 0:
                    await asyncio.sleep(held)
                    if link.drops(to_client) or link not in self.links:
                        continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # the client went away, or Redis did on a passing link: close both sides. When
            # Redis goes away behind a black hole, the client must not notice anything.
            if not to_client or link.mode == PASS:
                link.abort(rst=False)
                self.links.discard(link)
