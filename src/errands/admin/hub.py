"""One shared subscription to a namespace's lifecycle events per Client (or Enqueuer).

Every ``result()`` waiter and ``events()`` stream of one Client shares one pub/sub connection: a
reader task subscribes when the first subscriber arrives, hands each event to the subscribers of
its job id (and to every stream), and unsubscribes when the last one leaves. A lost connection
(a Redis restart, a half-open socket) is resubscribed with a backoff, and every subscriber is
told (``RESUBSCRIBED``): events published meanwhile are lost to pub/sub, so a waiter re-checks
its job's stored state. Redis unreachable for ``outage_limit`` seconds in a row makes waiting
raise ``RedisUnavailableError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from ..aio import cancel_and_wait
from ..errors import RedisUnavailableError
from ..store.connection import REDIS_ERRORS, describe
from ..store.keys import Keys
from ..store.topology import connection_option
from .jobinfo import decode_json

__all__ = ["RESUBSCRIBED", "EventHub", "Subscriber"]

log = logging.getLogger("errands.events")

LISTEN_TTL_MS = 30_000  # the `listening` key: scripts publish events only while it exists
RESUBSCRIBED: dict[str, Any] = {"event": "_resubscribed"}  # handed to subscribers, never yielded


class Subscriber:
    """One waiter (``job_id``) or stream (``job_id`` None) of a hub: events land in ``queue``."""

    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ready = asyncio.Event()  # set once the hub is subscribed

    async def get(self, timeout: float) -> dict[str, Any] | None:
        """The next event (or ``RESUBSCRIBED``), None after ``timeout`` seconds without one."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class EventHub:
    """The shared subscription of one Client or Enqueuer (see the module docstring)."""

    def __init__(self, redis: Any, keys: Keys, *, outage_limit: float = 30.0) -> None:
        self.redis = redis
        self.keys = keys
        self.outage_limit = outage_limit
        self.ping_interval = 5.0  # a quiet subscription is PINGed: a half-open one is noticed
        self._by_id: dict[str, set[Subscriber]] = {}
        self._streams: set[Subscriber] = set()
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = False
        self._down_since: float | None = None
        self._last_error: BaseException | None = None
        self.subscriptions = 0  # how many times the reader (re)subscribed, for tests

    @property
    def subscribers(self) -> int:
        return len(self._streams) + sum(len(s) for s in self._by_id.values())

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str | None) -> AsyncIterator[Subscriber]:
        """Subscribe (to ``job_id``'s events, or to all with None) until the block ends; the
        block starts once the hub is subscribed, so no event published after that is missed."""
        sub = Subscriber(job_id)
        if job_id is None:
            self._streams.add(sub)
        else:
            self._by_id.setdefault(job_id, set()).add(sub)
        if self._subscribed:
            sub.ready.set()
        if self._reader is None:
            self._reader = asyncio.create_task(
                self._run(), name=f"errands-events-{self.keys.namespace}"
            )
        try:
            await self._until_ready(sub)
            yield sub
        finally:
            await self._leave(sub)

    async def _until_ready(self, sub: Subscriber) -> None:
        while not sub.ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.ready.wait(), 1.0)
            self.check_outage()

    async def _leave(self, sub: Subscriber) -> None:
        if sub.job_id is None:
            self._streams.discard(sub)
        else:
            waiting = self._by_id.get(sub.job_id, set())
            waiting.discard(sub)
            if not waiting:
                self._by_id.pop(sub.job_id, None)
        if not self.subscribers and self._reader is not None:
            reader, self._reader = self._reader, None
            self._subscribed = False
            await cancel_and_wait([reader])

    async def aclose(self) -> None:
        """Stop the reader (subscribers left waiting see no more events)."""
        if self._reader is not None:
            reader, self._reader = self._reader, None
            self._subscribed = False
            await cancel_and_wait([reader])

    # -- outages -----------------------------------------------------------------------------
    def failed(self, exc: BaseException) -> None:
        """Note a connection error; raise ``RedisUnavailableError`` once Redis has been
        unreachable for ``outage_limit`` seconds in a row."""
        self._last_error = exc
        if self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
        self.check_outage()

    def answered(self) -> None:
        """Redis answered a command: whatever failed before was not an outage that lasts."""
        if self._subscribed:
            self._down_since = None

    def check_outage(self) -> None:
        if self._down_since is None:
            return
        down = asyncio.get_running_loop().time() - self._down_since
        if down >= self.outage_limit:
            raise RedisUnavailableError(
                f"cannot reach Redis at {describe(self.redis)} for {down:.0f}s: "
                f"{self._last_error!r}"
            ) from self._last_error

    # -- the reader --------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await self.redis.set(self.keys.listening, b"1", px=LISTEN_TTL_MS)
                    await pubsub.subscribe(self.keys.events_channel)
                    await self._confirmed(pubsub)
                    self._on_subscribed()
                    delay = 0.05
                    await self._read(pubsub)
            except REDIS_ERRORS as exc:
                self._subscribed = False
                self._last_error = exc
                if self._down_since is None:
                    self._down_since = asyncio.get_running_loop().time()
                log.warning("event subscription lost (%r); resubscribing in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _confirmed(self, pubsub: Any) -> None:
        """Wait for the subscribe confirmation: only then is every later event sure to come."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (connection_option(self.redis, "socket_timeout") or 15.0)
        while loop.time() < deadline:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message.get("type") in ("subscribe", b"subscribe"):
                return
        raise ConnectionError("no confirmation of the event subscription")

    def _on_subscribed(self) -> None:
        self._subscribed = True
        self._down_since = None
        self.subscriptions += 1
        for sub in self._all():
            sub.ready.set()
            sub.queue.put_nowait(RESUBSCRIBED)

    def _all(self) -> list[Subscriber]:
        subs = list(self._streams)
        for waiting in self._by_id.values():
            subs.extend(waiting)
        return subs

    async def _read(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        timeout = connection_option(self.redis, "socket_timeout") or 15.0
        every = min(self.ping_interval, timeout)  # also how long a PING may take to answer
        heard = refreshed = loop.time()
        pinged: float | None = None
        while True:
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=min(every, 1.0)
            )
            now = loop.time()
            if now - refreshed >= LISTEN_TTL_MS / 3000:
                await self.redis.set(self.keys.listening, b"1", px=LISTEN_TTL_MS)
                refreshed = now
            if message is not None:
                heard, pinged = now, None
                if message.get("type") == "message":
                    self._dispatch(message.get("data"))
            elif pinged is not None and now - pinged > every:
                raise ConnectionError(f"no answer on the event subscription for {now - heard:.1f}s")
            elif pinged is None and now - heard >= every:
                await pubsub.ping()
                pinged = now

    def _dispatch(self, data: Any) -> None:
        event = decode_json(data)
        if not isinstance(event, dict):
            return
        for sub in self._streams:
            sub.queue.put_nowait(event)
        job_id = event.get("id")
        if isinstance(job_id, str):
            for sub in self._by_id.get(job_id, ()):
                sub.queue.put_nowait(event)
