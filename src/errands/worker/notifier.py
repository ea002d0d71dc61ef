"""Wake-ups for idle pools over pub/sub, so a new job starts without polling delay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..outagelog import OutageLog
from ..store.connection import REDIS_ERRORS
from ..store.topology import connection_option

__all__ = ["Notifier", "SilentSubscription", "path_lost"]

log = logging.getLogger("errands.notifier")


class SilentSubscription(ConnectionError):
    """The subscription's PING went unanswered: its connection (and likely the path to the
    server) is dead."""


def path_lost(exc: BaseException) -> bool:
    """Whether the subscription was lost with its connection (its PING unanswered, a reset,
    a timeout): the path to the server is suspect. Not another error (a server's error reply,
    a fault of errands' own while handling a message): its connections are left alone."""
    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)


class Notifier:
    """Subscribes to the wake channels (the namespace's, which wakes every idle pool, and the
    pool's own, which wakes it alone: store/lua/lib/wake.lua) and sets ``event`` on every
    message; passes messages on the control channel (``cancel:<id>``) to ``on_control``; calls
    ``on_lost`` when a subscription is lost with its connection (:func:`path_lost`: the
    worker gives up its held connections no call is in flight on)."""

    # A subscribed connection only ever reads, so a half-open one (a NAT or firewall that
    # forgot it, a peer gone without a FIN) would go unnoticed for hours: when nothing arrives
    # for ping_interval (at most the socket timeout), PING; no answer within as long again:
    # reconnect. A dead subscription is found within about 2 * ping_interval.
    ping_interval = 5.0

    def __init__(
        self,
        redis: Redis,
        channels: Sequence[str],
        event: asyncio.Event,
        control_channel: str | None = None,
        on_control: Callable[[str], None] | None = None,
    ) -> None:
        self.redis = redis
        self.channels = list(channels)
        self.event = event
        self.control_channel = control_channel
        self.on_control = on_control
        self.subscribed = asyncio.Event()
        self.reconnects = 0
        self.on_lost: Callable[[], Awaitable[None]] | None = None
        # told each time event is set: the channel ('' after a (re)subscription) and message
        self.on_wake: Callable[[str, str], None] | None = None

    async def run(self) -> None:
        delay = 0.05
        outage = OutageLog(log, "wake-up subscription")
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    channels = list(self.channels)
                    if self.control_channel:
                        channels.append(self.control_channel)
                    await pubsub.subscribe(*channels)
                    self.subscribed.set()
                    outage.ok()
                    # wake once after (re)subscribing: messages may have been missed meanwhile
                    self._wake("", "")
                    delay = 0.05
                    await self._listen(pubsub)
            except Exception as exc:  # REDIS_ERRORS, and whatever else: never stop listening
                if self.subscribed.is_set() and self.on_lost is not None and path_lost(exc):
                    with contextlib.suppress(Exception):  # (best effort)
                        await self.on_lost()
                self.subscribed.clear()
                self.reconnects += 1
                if isinstance(exc, REDIS_ERRORS):
                    outage.failed(exc)
                else:
                    log.error("wake-up subscription lost (%r); resubscribing in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _listen(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        timeout = connection_option(self.redis, "socket_timeout") or 15.0
        every = min(self.ping_interval, timeout)  # also how long a PING may take to answer
        heard = loop.time()
        pinged: float | None = None
        while True:
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=min(every, 1.0)
            )
            now = loop.time()
            if message is not None:
                heard, pinged = now, None
                if message.get("type") != "pong":
                    self._dispatch(message)
            elif pinged is not None and now - pinged > every:
                raise SilentSubscription(
                    f"no answer on the wake-up subscription for {now - heard:.1f}s"
                )
            elif pinged is None and now - heard >= every:
                await pubsub.ping()
                pinged = now

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if channel == self.control_channel and self.on_control is not None:
            data = message.get("data")
            self.on_control(data.decode() if isinstance(data, bytes) else str(data))
        else:
            data = message.get("data")
            self._wake(str(channel), data.decode() if isinstance(data, bytes) else str(data))

    def _wake(self, channel: str, data: str) -> None:
        self.event.set()
        if self.on_wake is not None:  # (the batch loops: worker/batchwait.py)
            self.on_wake(channel, data)
