"""The Client's reads of the server and its counters: the outbox's status, the activity the
pools counted, and Redis's own info (a mixin of Client)."""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoPermissionError

from ..clock import Clock
from ..store.keys import Keys
from ..store.metrics import Bucket, read_buckets
from ..store.outbox import OutboxStatus, read_status
from ..store.topology import on_node_of

__all__ = ["ServerInfo"]


class ServerInfo:
    """Mixin of Client."""

    redis: Any
    keys: Keys
    clock: Clock

    async def outbox(self) -> OutboxStatus:
        """The transactional outbox as its relays report it (every 2 s): rows waiting
        (``backlog``), how long the oldest has waited (``lag``, seconds), each relay, and
        ``stuck``; see docs/outbox.md."""
        return await read_status(self.redis, self.keys, self.clock.now())

    async def activity(self, span: str = "hour") -> list[Bucket]:
        """Activity counted by the pools (store/metrics.py), oldest first: per minute of the
        last hour (``span="hour"``), or per hour of the last ``"day"`` or ``"week"``. Each
        bucket has ``done``, ``failed`` (retried) and ``dead`` attempts and, per job name,
        ``waits[name] = (total wait in ms, jobs started)``."""
        shapes = {"hour": ("m", 60, 60), "day": ("h", 3600, 24), "week": ("h", 3600, 168)}
        if span not in shapes:
            raise ValueError(f"span must be one of {', '.join(shapes)}, not {span!r}")
        kind, size, count = shapes[span]
        last = int(self.clock.now()) // size * size
        starts = [last - size * (count - 1 - i) for i in range(count)]
        return await read_buckets(self.redis, self.keys, kind, starts)

    async def redis_info(self) -> dict[str, Any]:
        """Server version, memory, maxmemory policy, clients, ops/s and key count (all None for
        an ACL user not allowed INFO and DBSIZE, see docs/deployment.md)."""
        node = on_node_of(self.redis, self.keys.jobs)  # on a cluster: the namespace's node
        try:
            info = await self.redis.info(**node)
            keys = await self.redis.dbsize(**node)
        except NoPermissionError:
            info, keys = {}, None
        return {
            "version": info.get("redis_version") or info.get("valkey_version"),
            "used_memory": info.get("used_memory_human"),
            "maxmemory_policy": info.get("maxmemory_policy"),
            "connected_clients": info.get("connected_clients"),
            "ops_per_sec": info.get("instantaneous_ops_per_sec"),
            "keys": keys,
            "uptime_seconds": info.get("uptime_in_seconds"),
        }
