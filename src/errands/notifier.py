"""Wake-ups for idle pools over pub/sub, so a new job starts without polling delay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from .connection import REDIS_ERRORS

__all__ = ["Notifier"]

log = logging.getLogger("errands.notifier")


class Notifier:
    """Subscribes to the namespace's wake channel and sets ``event`` on every message; passes
    messages on the control channel (``cancel:<id>``) to ``on_control``."""

    def __init__(
        self,
        redis: Redis,
        channel: str,
        event: asyncio.Event,
        control_channel: str | None = None,
        on_control: Callable[[str], None] | None = None,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.event = event
        self.control_channel = control_channel
        self.on_control = on_control
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        delay = 0.05
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    channels = [self.channel]
                    if self.control_channel:
                        channels.append(self.control_channel)
                    await pubsub.subscribe(*channels)
                    self.subscribed.set()
                    # wake once after (re)subscribing: messages may have been missed meanwhile
                    self.event.set()
                    delay = 0.05
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=5.0
                        )
                        if message is not None:
                            self._dispatch(message)
            except REDIS_ERRORS as exc:
                self.subscribed.clear()
                log.warning("wake-up subscription lost (%s); resubscribing in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if channel == self.control_channel and self.on_control is not None:
            data = message.get("data")
            self.on_control(data.decode() if isinstance(data, bytes) else str(data))
        else:
            self.event.set()
