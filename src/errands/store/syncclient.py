"""A blocking twin of an asyncio client, for the heartbeat thread: same server(s), same
credentials and TLS settings, same topology (one server, Redis Cluster or Sentinel)."""

from __future__ import annotations

from typing import Any

import redis
import redis.cluster
import redis.sentinel
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["SyncClient", "sync_client_like"]

# untyped in redis-py
_ClusterNode: Any = redis.cluster.ClusterNode
_Sentinel: Any = redis.sentinel.Sentinel

SyncClient = redis.Redis | redis.cluster.RedisCluster

_SYNC_KWARGS = (
    "host",
    "port",
    "db",
    "username",
    "password",
    "credential_provider",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "client_name",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_ca_data",
    "ssl_check_hostname",
    "ssl_min_version",
    "ssl_ciphers",
    "ssl_password",  # of an encrypted client key
    "ssl_include_verify_flags",
    "ssl_exclude_verify_flags",
)


def _common(kwargs: dict[str, Any], ssl: bool, cap: float | None, *drop: str) -> dict[str, Any]:
    common = {k: kwargs[k] for k in _SYNC_KWARGS if k in kwargs and k not in drop}
    if not ssl:
        common = {k: v for k, v in common.items() if not k.startswith("ssl_")}
    common.setdefault("socket_timeout", 5.0)
    common.setdefault("socket_connect_timeout", 5.0)
    if cap is not None:
        for k in ("socket_timeout", "socket_connect_timeout"):
            if common[k] is None or common[k] > cap:
                common[k] = cap
    return common


class _SentinelManagedRedis(redis.Redis):
    """A blocking Sentinel-managed client that also closes its connections to the sentinels."""

    def close(self) -> None:
        super().close()
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            sentinel.close()


def sync_client_like(
    client: AsyncRedis | AsyncRedisCluster, timeout_cap: float | None = None
) -> SyncClient:
    """A blocking client to the same server(s) as an asyncio client, its socket timeouts at
    most ``timeout_cap`` seconds."""
    if isinstance(client, AsyncRedisCluster):
        kwargs = client.connection_kwargs
        ssl = issubclass(kwargs["connection_class"], SSLConnection)
        nodes = [_ClusterNode(n.host, n.port) for n in client.startup_nodes]
        common = _common(kwargs, ssl, timeout_cap, "host", "port", "db")
        return redis.cluster.RedisCluster(startup_nodes=nodes, ssl=ssl, **common)
    pool = client.connection_pool
    kw = pool.connection_kwargs
    ssl = issubclass(pool.connection_class, SSLConnection)
    if isinstance(pool, SentinelConnectionPool):
        manager: Any = pool.sentinel_manager
        sentinels: list[tuple[str, int]] = []
        for s in getattr(manager, "all_sentinels", manager.sentinels):
            skw = s.connection_pool.connection_kwargs
            address = (skw.get("host", "localhost"), skw.get("port", 26379))
            if address not in sentinels:  # (redis-py's own list may hold one twice)
                sentinels.append(address)
        sentinel_class = manager.sentinels[0].connection_pool.connection_class
        sentinel_ssl = issubclass(sentinel_class, SSLConnection)
        sentinel_kwargs = _common(
            manager.sentinel_kwargs, sentinel_ssl, timeout_cap, "host", "port", "db"
        )
        if sentinel_ssl:
            sentinel_kwargs["ssl"] = True
        sentinel_kwargs["retry"] = Retry(NoBackoff(), 0)  # one try per sentinel
        sync: Any = _Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
        common = _common(kw, ssl, timeout_cap, "host", "port")
        master: redis.Redis = sync.master_for(
            pool.service_name, redis_class=_SentinelManagedRedis, ssl=ssl, **common
        )
        return master
    common = _common(kw, ssl, timeout_cap)
    if issubclass(pool.connection_class, UnixDomainSocketConnection):
        for k in ("host", "port"):
            common.pop(k, None)
        return redis.Redis(unix_socket_path=kw["path"], **common)
    return redis.Redis(ssl=ssl, **common)
