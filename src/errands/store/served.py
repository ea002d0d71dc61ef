"""Which job names the running pools serve, for catching typos: an enqueue of a name no pool
serves warns (or raises, ``Enqueuer(strict=True)``), and ``inspect queues`` marks such queues.

Each pool keeps one key (``Keys.serves(pool_id)``, a JSON list of its names): written with a TTL
when it starts, written again every third of the TTL, deleted when it stops, so a pool that dies
without stopping drops out within the TTL on its own. Plain ``SET ... PX`` and ``GET``: nothing
an ACL user of errands is not already allowed. Readers take the names of the registered pools.
A hint for people, not part of any guarantee: nothing waits on it, a failure to write it is only
logged, and a name seen served once is trusted afterwards.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from redis.exceptions import ResponseError

from ..outagelog import OutageLog
from .connection import REDIS_ERRORS
from .keys import Keys
from .stored import stored_text

__all__ = [
    "ServedNames",
    "registered_pools",
    "served_names",
    "unless_unread",
    "unserved",
    "unserved_message",
]

log = logging.getLogger("errands.pool")
T = TypeVar("T")


def _text(value: bytes | str) -> str:
    return stored_text(value)  # (a pool id no pool wrote may not be UTF-8)


# (redis, keys, a refusal naming a key) -> " (<key> is a <type>; repair: ...)": keyrepair.py
Hint = Callable[[Any, Keys, BaseException], Awaitable[str]]


async def registered_pools(
    redis: Any, keys: Keys, unread: str, hint: Hint | None = None
) -> list[tuple[str, float]]:
    """The pools' registry: (pool id, ms of its last beat), oldest beat first (one ZRANGE).
    While it holds another type (a hand edit), a ResponseError naming it, in the scripts' words
    (lib/types.lua: ``WRONGTYPE <key> holds another type: <unread>``), followed by ``hint``'s
    repair (Redis' own WRONGTYPE names no key)."""
    try:
        pairs = await redis.zrange(keys.pools, 0, -1, withscores=True)
    except ResponseError as exc:
        if not str(exc).startswith("WRONGTYPE"):
            raise
        refusal = ResponseError(f"WRONGTYPE {keys.pools} holds another type: {unread}")
        raise ResponseError(f"{refusal}{await hint(redis, keys, refusal) if hint else ''}") from exc
    return [(_text(p), score) for p, score in pairs]


async def unless_unread(read: Awaitable[T], keys: Keys, logger: logging.Logger) -> T | None:
    """``read``'s value, or None when registered_pools refused it (the registry of another type:
    its error, naming the key and its repair, logged as a WARNING), for a reader that answers
    the rest without it."""
    try:
        return await read
    except ResponseError as exc:
        if not str(exc).startswith(f"WRONGTYPE {keys.pools} holds another type: "):
            raise
        logger.warning("%s", exc)
        return None


async def served_names(redis: Any, keys: Keys, hint: Hint | None = None) -> set[str]:
    """The job names served by the running pools of the namespace (two round trips). While the
    pools' registry holds another type, registered_pools' ResponseError naming it."""
    unread = "the job names the running pools serve could not be read"
    pools = [p for p, _beat in await registered_pools(redis, keys, unread, hint)]
    if not pools:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        for pool in pools:
            pipe.get(keys.serves(pool))
        raws = await pipe.execute()
    names: set[str] = set()
    for raw in raws:
        try:
            value = orjson.loads(raw) if raw is not None else []
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, list):
            names.update(n for n in value if isinstance(n, str))
    return names


async def unserved(redis: Any, keys: Keys, name: str, hint: Hint | None = None) -> str | None:
    """``unserved_message`` for ``name`` when no running pool serves it, else None (served_names'
    error while the pools' registry holds another type)."""
    served = await served_names(redis, keys, hint)
    return None if name in served else unserved_message(name, served, keys.namespace)


class ServedNames:
    """One pool's published names: ``publish()`` at start, ``run()`` as a task (started again
    when the pool comes back under a new id), ``withdraw()`` at stop. None of them raises. The
    TTL is 3 x ``dead_timeout``, at least 30 s."""

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        pool_id: Callable[[], str],
        names: list[str],
        dead_timeout: float,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.pool_id = pool_id  # read at each write: a pool that lost its lease gets a new id
        self.value = orjson.dumps(sorted(names))
        self.ttl_ms = int(max(3 * dead_timeout, 30.0) * 1000)
        self._outage = OutageLog(log, "publishing the job names this pool serves")

    @property
    def key(self) -> str:
        return self.keys.serves(self.pool_id())

    async def publish(self) -> None:
        try:
            await self.redis.set(self.key, self.value, px=self.ttl_ms)
            self._outage.ok()
        except REDIS_ERRORS as exc:
            self._outage.failed(exc)
        except Exception as exc:  # a hint only: never let it stop the pool
            log.warning("could not publish the job names this pool serves: %r", exc)

    async def run(self) -> None:
        """Write the names now (under the pool's current id), then again, with a fresh TTL,
        every third of the TTL."""
        while True:
            await self.publish()
            await asyncio.sleep(self.ttl_ms / 3000)

    async def withdraw(self) -> None:
        try:
            await self.redis.delete(self.key)
        except Exception as exc:
            log.debug("could not withdraw the served job names: %r", exc)


def unserved_message(name: str, served: set[str], namespace: str) -> str:
    """``no running pool serves job name 'send_emial' in namespace 'myapp' (did you mean
    'send_email'?)``."""
    message = f"no running pool serves job name {name!r} in namespace {namespace!r}"
    close = difflib.get_close_matches(name, served, n=1)
    if close:
        return f"{message} (did you mean {close[0]!r}?)"
    if not served:
        return f"{message} (no pool is running)"
    return f"{message} (served: {', '.join(sorted(served)[:10])})"
