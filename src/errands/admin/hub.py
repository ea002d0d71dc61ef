"""One shared subscription to a namespace's lifecycle events per Client (or Enqueuer).

Every ``result()`` waiter and ``events()`` stream of one Client shares one pub/sub connection: a
reader task subscribes when the first subscriber arrives and unsubscribes when the last one
leaves. A waiter listens on its job's own channel (``<events channel>:<id>``), a stream on the
namespace's events channel, and the hub marks what it listens to in the ``listening`` HASH:
field ``*`` while it has a stream, one field per job id waited for (values: expiry times in ms,
refreshed every third of ``LISTEN_TTL_MS``; expired fields are trimmed). The scripts publish an
event on the namespace's channel only while ``*`` is there, and on a job's channel only while
its id is (store/lua/lib/events.lua): a job nobody watches publishes nothing.

A lost connection (a Redis restart, a half-open socket) is resubscribed with a backoff, and
every subscriber is told (``RESUBSCRIBED``): events published meanwhile are lost to pub/sub, so
a waiter re-checks its job's stored state. Redis unreachable for ``outage_limit`` seconds in a
row makes waiting raise ``RedisUnavailableError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import ResponseError

from ..aio import cancel_and_wait, wait_event
from ..errors import RedisUnavailableError
from ..store.connection import REDIS_ERRORS, describe
from ..store.keys import Keys
from ..store.topology import connection_option
from .jobinfo import decode_json

__all__ = ["RESUBSCRIBED", "EventHub", "Subscriber"]

log = logging.getLogger("errands.events")

LISTEN_TTL_MS = 30_000  # fields of `listening` expire (and the key) unless refreshed
STREAMS = "*"  # the `listening` field of hubs with a stream: events on the namespace's channel
RESUBSCRIBED: dict[str, Any] = {"event": "_resubscribed"}  # handed to subscribers, never yielded


class Subscriber:
    """One waiter (``job_id``) or stream (``job_id`` None) of a hub: events land in ``queue``."""

    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ready = asyncio.Event()  # set once its channel is subscribed and marked
        self.ended = False  # a waiter that saw its job end: its mark can go when it leaves

    async def get(self, timeout: float) -> dict[str, Any] | None:
        """The next event (or ``RESUBSCRIBED``), None after ``timeout`` seconds without one."""
        # (not asyncio.wait_for: on Python 3.11 it loses a cancel that comes as the event does,
        # and a task iterating events() would then never end: tests/admin/test_hub_cancel.py)
        try:
            async with asyncio.timeout(timeout):
                return await self.queue.get()
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
        self._pubsub: Any = None  # the reader's subscription, while it is up
        self._confirmed: dict[str, asyncio.Event] = {}  # channel asked for -> set once confirmed
        self._unready: set[Subscriber] = set()  # not ready yet: the reader catches them up
        self._down_since: float | None = None
        self._last_error: BaseException | None = None
        self.subscriptions = 0  # how many times the reader (re)subscribed, for tests

    @property
    def subscribers(self) -> int:
        return len(self._streams) + sum(len(s) for s in self._by_id.values())

    def channel(self, job_id: str | None) -> str:
        """The channel of a job's events (of every job's, for None: the streams')."""
        if job_id is None:
            return self.keys.events_channel
        return self.keys.events_channel + ":" + job_id

    def _wanted(self) -> dict[str, str]:
        """Channel -> its `listening` field, for every subscriber of the hub."""
        wanted = {self.channel(job_id): job_id for job_id in self._by_id}
        if self._streams:
            wanted[self.keys.events_channel] = STREAMS
        return wanted

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str | None) -> AsyncIterator[Subscriber]:
        """Subscribe (to ``job_id``'s events, or to all with None) until the block ends; the
        block starts once the hub is subscribed, so no event published after that is missed."""
        sub = Subscriber(job_id)
        if job_id is None:
            self._streams.add(sub)
        else:
            self._by_id.setdefault(job_id, set()).add(sub)
        self._unready.add(sub)
        if self._reader is None:
            self._reader = asyncio.create_task(
                self._run(), name=f"errands-events-{self.keys.namespace}"
            )
        try:
            if self._pubsub is not None:
                with contextlib.suppress(*REDIS_ERRORS):  # else the reader resubscribes
                    await self._join(sub)
            await self._until_ready(sub)
            yield sub
        finally:
            await self._leave(sub)

    async def _join(self, sub: Subscriber) -> None:
        """Subscribe the channel of ``sub`` (unless asked for already) and mark it in
        `listening` meanwhile; once the subscription is confirmed, ``sub`` is ready."""
        pubsub, channel = self._pubsub, self.channel(sub.job_id)
        confirmed = self._confirmed.get(channel)
        if confirmed is None:
            confirmed = self._confirmed[channel] = asyncio.Event()
            await pubsub.subscribe(channel)
        timeout = connection_option(self.redis, "socket_timeout") or 15.0
        with contextlib.suppress(TimeoutError):
            await asyncio.gather(
                wait_event(confirmed, timeout),
                self._mark([STREAMS if sub.job_id is None else sub.job_id]),
            )
        if confirmed.is_set() and pubsub is self._pubsub:
            self._ready(sub)

    async def _until_ready(self, sub: Subscriber) -> None:
        while not sub.ready.is_set():
            await wait_event(sub.ready, 1.0)
            self.check_outage()

    def _ready(self, sub: Subscriber) -> None:
        sub.ready.set()
        self._unready.discard(sub)

    async def _leave(self, sub: Subscriber) -> None:
        self._unready.discard(sub)
        if sub.job_id is None:
            self._streams.discard(sub)
        else:
            waiting = self._by_id.get(sub.job_id, set())
            waiting.discard(sub)
            if not waiting:
                self._by_id.pop(sub.job_id, None)
        if not self.subscribers and self._reader is not None:
            reader, self._reader = self._reader, None
            self._subscribed, self._pubsub = False, None
            await cancel_and_wait([reader])
        channel = self.channel(sub.job_id)
        if channel in self._wanted():
            return
        self._confirmed.pop(channel, None)
        pubsub = self._pubsub
        if pubsub is not None:
            # best effort: the reader may close the connection meanwhile (the last one left)
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe(channel)
        with contextlib.suppress(*REDIS_ERRORS):
            if sub.ended and sub.job_id is not None:
                # its end was published: no other waiter of it (of any client) misses anything
                await self.redis.hdel(self.keys.listening, sub.job_id)

    async def _mark(self, fields: list[str], trim: bool = False) -> None:
        """Mark ``fields`` in `listening` until LISTEN_TTL_MS from now; ``trim``: drop the
        fields every hub let expire (waiters and streams gone without a word)."""
        now = time.time() * 1000
        for attempt in (1, 2):
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    if fields:
                        pipe.hset(
                            self.keys.listening, mapping=dict.fromkeys(fields, now + LISTEN_TTL_MS)
                        )
                    pipe.pexpire(self.keys.listening, LISTEN_TTL_MS)
                    if trim:
                        pipe.hgetall(self.keys.listening)
                    replies = await pipe.execute()
                break
            except ResponseError as exc:
                if attempt == 2 or "WRONGTYPE" not in str(exc):
                    raise
                # an older errands' STRING (a rolling upgrade): theirs publish on any key
                await self.redis.delete(self.keys.listening)
        if trim:
            expired = [f for f, v in replies[-1].items() if float(v) < now]
            if expired:
                await self.redis.hdel(self.keys.listening, *expired)

    async def aclose(self) -> None:
        """Stop the reader (subscribers left waiting see no more events)."""
        if self._reader is not None:
            reader, self._reader = self._reader, None
            self._subscribed, self._pubsub = False, None
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
                    wanted = self._wanted()
                    # marked first (a cluster client learns its slots from a first command);
                    # nobody is ready before the subscriptions are confirmed
                    await self._mark(list(wanted.values()))
                    self._confirmed = {ch: asyncio.Event() for ch in wanted}
                    await pubsub.subscribe(*wanted)
                    await self._confirm(pubsub, len(wanted))
                    self._pubsub = pubsub
                    self._on_subscribed(set(wanted))
                    delay = 0.05
                    await self._read(pubsub)
            except REDIS_ERRORS as exc:
                self._subscribed, self._pubsub = False, None
                self._last_error = exc
                if self._down_since is None:
                    self._down_since = asyncio.get_running_loop().time()
                log.warning("event subscription lost (%r); resubscribing in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _confirm(self, pubsub: Any, count: int) -> None:
        """Wait for the confirmations of ``count`` subscriptions: only then is every later
        event sure to come."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (connection_option(self.redis, "socket_timeout") or 15.0)
        while loop.time() < deadline:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and self._confirmation(message):
                count -= 1
                if count <= 0:
                    return
        raise ConnectionError("no confirmation of the event subscription")

    def _confirmation(self, message: dict[str, Any]) -> bool:
        if message.get("type") not in ("subscribe", b"subscribe"):
            return False
        channel = message.get("channel")
        channel = channel.decode() if isinstance(channel, bytes) else str(channel)
        # (only a channel still asked for: one whose waiters left before its confirmation
        # came is unsubscribed, and a mark would let its next waiter skip subscribing)
        if (confirmed := self._confirmed.get(channel)) is not None:
            confirmed.set()
        return True

    def _on_subscribed(self, channels: set[str]) -> None:
        self._subscribed = True
        self._down_since = None
        self.subscriptions += 1
        for sub in self._all():
            if self.channel(sub.job_id) in channels:
                self._ready(sub)
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
            message = await pubsub.get_message(timeout=min(every, 1.0))
            now = loop.time()
            if now - refreshed >= LISTEN_TTL_MS / 3000:
                await self._mark(list(self._wanted().values()), trim=True)
                refreshed = now
            await self._catch_up()
            if message is not None:
                heard, pinged = now, None
                if message.get("type") == "message":
                    self._dispatch(message.get("channel"), message.get("data"))
                else:
                    self._confirmation(message)
            elif pinged is not None and now - pinged > every:
                raise ConnectionError(f"no answer on the event subscription for {now - heard:.1f}s")
            elif pinged is None and now - heard >= every:
                await pubsub.ping()
                pinged = now

    async def _catch_up(self) -> None:
        """Subscribers not ready (they came while the reader (re)subscribed): ask for their
        channels; once confirmed, mark them and let them start. Never waits for a reply of
        the subscription: the reader is the one reading them."""
        for sub in list(self._unready):
            if self._pubsub is None:
                return
            if sub.ready.is_set():
                self._unready.discard(sub)
                continue
            channel = self.channel(sub.job_id)
            confirmed = self._confirmed.get(channel)
            if confirmed is None:
                self._confirmed[channel] = asyncio.Event()
                await self._pubsub.subscribe(channel)
            elif confirmed.is_set():
                await self._mark([STREAMS if sub.job_id is None else sub.job_id])
                self._ready(sub)

    def _dispatch(self, channel: Any, data: Any) -> None:
        event = decode_json(data)
        if not isinstance(event, dict):
            return
        if isinstance(channel, bytes):
            channel = channel.decode(errors="replace")
        if channel == self.keys.events_channel:
            for sub in self._streams:
                sub.queue.put_nowait(event)
            return
        job_id = event.get("id")
        if isinstance(job_id, str) and channel == self.channel(job_id):
            for sub in self._by_id.get(job_id, ()):
                sub.queue.put_nowait(event)
