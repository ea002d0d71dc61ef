"""Wake-ups for idle pools over pub/sub, so a new job starts without polling delay."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from .connection import REDIS_ERRORS

__all__ = ["Notifier"]

log = logging.getLogger("errands.notifier")


class Notifier:
    """Subscribes to the namespace's wake channel and sets ``event`` on every message."""

    def __init__(self, redis: Redis, channel: str, event: asyncio.Event) -> None:
        self.redis = redis
        self.channel = channel
        self.event = event
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        delay = 0.05
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.subscribed.set()
                    # wake once after (re)subscribing: messages may have been missed meanwhile
                    self.event.set()
                    delay = 0.05
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=5.0
                        )
                        if message is not None:
                            self.event.set()
            except REDIS_ERRORS as exc:
                self.subscribed.clear()
                log.warning("wake-up subscription lost (%s); resubscribing in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
