"""A master demoted to a replica keeps its clients connected and, until its resync is done,
answers from its data as it was. A script that answers from what it read, writing nothing,
answers so there too (no READONLY), where the new master may hold otherwise; such an answer
writes nothing first (lua/lib/types.lua unwritten), which a replica refuses. ``check`` sends
such calls on a master of the test's own, then demotes it and sends them again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError

from tests.support.infra.nodes import free_port
from tests.support.resend import snapshot

__all__ = ["Call", "check", "dirty"]

Call = Callable[[], Awaitable[Any]]


async def dirty(redis: Redis) -> int:
    """Writes since the start (--save ''): what a write that changed anything counts."""
    return int((await redis.info("persistence"))["rdb_changes_since_last_save"])


async def check(redis: Redis, namespace: str, calls: list[tuple[Call, Any]]) -> None:
    """Each call answers as expected on the master with nothing written; once the master is
    demoted, each is refused (READONLY)."""
    before, writes = await snapshot(redis, namespace), await dirty(redis)
    for call, answer in calls:
        assert await call() == answer
    assert await snapshot(redis, namespace) == before
    assert await dirty(redis) == writes
    await redis.replicaof("127.0.0.1", str(free_port()))  # (nobody there: the data stays)
    for call, _answer in calls:
        with pytest.raises(ReadOnlyError):
            await call()
    assert await snapshot(redis, namespace) == before
