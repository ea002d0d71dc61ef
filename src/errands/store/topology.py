"""From a Redis URL to the right asyncio client: one server, TLS, Redis Cluster or Sentinel.

=====================================================================  =========================
``redis://[user:password@]host[:port][/db]``                           one server
``rediss://[user:password@]host[:port][/db]``                          one server over TLS
``unix://[user:password@]/path/to/redis.sock[?db=N]``                  one server, Unix socket
``redis+cluster://[user:password@]host:port[,host:port...]``           Redis Cluster (any nodes)
``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``  Sentinel's master
=====================================================================  =========================

``rediss+cluster://`` and ``rediss+sentinel://`` use TLS (with Sentinel: to the sentinels too).
Options come from the query string or from keyword arguments (keyword arguments win):
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` (``required``,
``optional``, ``none``), ``ssl_check_hostname``, ``socket_timeout``, ``socket_connect_timeout``,
``client_name``, and for Sentinel ``sentinel_username`` / ``sentinel_password`` (the
credentials of the sentinels themselves; ``user:password@`` is for the data nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    BlockingConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from ..errors import RedisUnavailableError
from .foreign import ForkAware, let_go, loop_of, watch_forks
from .urls import redact_url

__all__ = [
    "RedisClient",
    "RedisTarget",
    "as_redis",
    "connect_url",
    "connection_option",
    "describe_client",
    "is_cluster",
    "on_node_of",
    "parse_redis_url",
]

#: What errands accepts as a client: ``redis.asyncio.Redis`` (also a Sentinel-managed one from
#: ``Sentinel.master_for``) or ``redis.asyncio.RedisCluster``.
RedisClient: TypeAlias = Redis | RedisCluster

Kind = Literal["standalone", "cluster", "sentinel"]
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "unix": ("standalone", False),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
# of the data-node options, those that also apply to the connections to the sentinels
_SHARED_WITH_SENTINELS = (
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)


@dataclass(frozen=True)
class RedisTarget:
    """A parsed Redis URL: what to connect to and with which connection options."""

    kind: Kind
    tls: bool
    hosts: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    sentinel_options: dict[str, Any] = field(default_factory=dict)


def _invalid(url: str, why: str) -> RedisUnavailableError:
    return RedisUnavailableError(f"invalid Redis URL {redact_url(url)}: {why}")


def _hosts(url: str, hostlist: str) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for part in hostlist.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [::1]:7000
            host, _, rest = part[1:].partition("]")
            port = rest.lstrip(":") or "6379"
        else:
            host, _, port = part.partition(":")
            port = port or "6379"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _invalid(url, f"bad host:port {part!r}")
        hosts.append((host, int(port)))
    if not hosts:
        raise _invalid(url, "no host given")
    return tuple(hosts)


def parse_redis_url(url: str, **overrides: Any) -> RedisTarget:
    """Parse ``url`` (see the module docs); ``overrides`` win over the query string."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _invalid(url, str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise _invalid(url, f"unknown scheme {parts.scheme!r} (use one of {known})")
    kind, tls = _SCHEMES[scheme]
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    hosts: tuple[tuple[str, int], ...] = ()
    service = None
    path = parts.path
    if kind == "sentinel":
        segments = [s for s in path.split("/") if s]
        if not segments or len(segments) > 2:
            raise _invalid(url, "Sentinel URLs name the service: redis+sentinel://host:port/<name>")
        service = unquote(segments[0])
        path = "/" + segments[1] if len(segments) == 2 else ""
    database = path.strip("/") if scheme != "unix" else ""
    if database and not database.isdigit():  # redis-py would silently use database 0
        raise _invalid(url, f"the database must be a number, e.g. /0, not {database!r}")
    if kind != "standalone":
        hosts = _hosts(url, hostlist)
        # let redis-py parse credentials, db and the query string of an equivalent plain URL
        netloc = (userinfo + "@" if userinfo else "") + "localhost"
        scheme = "rediss" if tls else "redis"
        url_for_options = urlunsplit((scheme, netloc, path, parts.query, ""))
    else:
        url_for_options = url
    try:
        options: dict[str, Any] = dict(parse_url(url_for_options))
    except ValueError as exc:
        raise _invalid(url, str(exc)) from None
    options.update(overrides)
    connection_class = options.pop("connection_class", None)
    if kind != "standalone":
        for key in ("host", "port", "path"):
            options.pop(key, None)
    elif connection_class is not None:
        options["connection_class"] = connection_class
    ssl_options = sorted(k for k in options if k.startswith("ssl_"))
    if ssl_options and not tls:
        raise _invalid(url, f"TLS options ({', '.join(ssl_options)}) need a rediss:// URL")
    if kind == "cluster" and options.get("db"):
        raise _invalid(url, "Redis Cluster has database 0 only")
    sentinel_options = {k: options.pop(k) for k in _SENTINEL_OPTIONS if k in options}
    if kind != "sentinel" and sentinel_options:
        raise _invalid(url, f"{', '.join(sentinel_options)} apply to redis+sentinel:// only")
    return RedisTarget(kind, tls, hosts, service, options, sentinel_options)


class SerialSentinel(Sentinel):
    """``Sentinel`` whose master lookups run one at a time. redis-py reorders its list of
    sentinels after each lookup by index, across an ``await``: concurrent lookups (several
    tasks reconnecting after a failover) can leave one sentinel twice in the list and lose
    another, which is then neither asked nor closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cast(Any, super()).__init__(*args, **kwargs)
        self.all_sentinels: list[Redis] = list(cast(Any, self).sentinels)
        self._lookup = asyncio.Lock()

    async def discover_master(self, service_name: str) -> Any:
        async with self._lookup:
            return await cast(Any, super()).discover_master(service_name)


class SentinelPool(ForkAware, SentinelConnectionPool):
    """The pool of a Sentinel's master, fit for a forked child (foreign.ForkAware)."""


class SentinelManagedRedis(Redis):
    """The client of a Sentinel's master that also closes its connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "all_sentinels", ()):
            await sentinel.aclose()


def connect_url(url: str, defaults: Mapping[str, Any], **overrides: Any) -> Redis:
    """An asyncio client for ``url``: ``defaults`` (errands' timeouts) are overridden by the
    URL's query string, which is overridden by ``overrides``. A ``RedisCluster`` for cluster
    URLs, typed as ``Redis`` (errands uses the commands both share)."""
    target = parse_redis_url(url, **overrides)
    options = {**defaults, **target.options}
    try:
        if target.kind == "cluster":
            return cast(Redis, _cluster(target, options))
        if target.kind == "sentinel":
            return _sentinel_master(target, options)
        # a burst of concurrent enqueues waits for a free connection (up to the socket
        # timeout) instead of failing with "Too many connections"
        options.setdefault("max_connections", 100)
        options.setdefault("timeout", options.get("socket_timeout") or 15.0)
        if options.get("connection_class") is UnixDomainSocketConnection:  # (TCP's only: its
            options.pop("socket_keepalive", None)  # connection refuses them, TypeError at
            options.pop("socket_keepalive_options", None)  # the first call)
        pool = LoopPool(**options)
    except (TypeError, ValueError) as exc:
        raise _invalid(url, str(exc)) from None
    client = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


class LoopPool(ForkAware, BlockingConnectionPool):
    """redis-py's blocking pool, for one event loop at a time, one after the other (an
    ``asyncio.run`` per call, a loop per test, asgiref's ``async_to_sync``): its lock and
    condition, which asyncio binds to the first loop that waits on them, are made anew when
    bound to a loop that no longer runs; else every call that waits for a connection on a later
    loop (more calls than ``max_connections`` at once) raised ``RuntimeError: ... is bound to a
    different event loop``. A loop still running in another thread keeps them (its waiters
    sleep on them): a wait on a second loop at once is refused (see docs/enqueueing.md).
    In a forked child they are made anew, the idle connections are let go (the parent's
    sockets, left open: the child's calls connect anew), and the connections in use at the
    fork (their tasks are the parent's) are forgotten: not counted, never pooled again (as
    redis-py's sync pool's ``_checkpid``); a task of the forking thread giving one back just
    drops it."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        self._on_this_loop(refuse=True)
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def release(self, connection: Any) -> None:
        if self._forgotten and connection in self._forgotten:  # (dropped: ForkAware)
            await super().release(connection)
            return
        owner = self._on_this_loop(refuse=False)  # (a release is never refused: a slot lost)
        if owner is None:
            await super().release(connection)
        else:
            self._give_back_for(owner, connection)

    def _give_back_for(self, owner: asyncio.AbstractEventLoop, connection: Any) -> None:
        """A release while the lock and condition are bound to ``owner``, a loop running in
        another thread: awaiting them here raised RuntimeError when one was held (the
        connection counted in use for ever, a slot lost), else notified the owner's waiters
        from this thread (which asyncio does not support). The connection is given back without
        them (each step one operation, atomic under the GIL), let go if its socket is of
        another loop than the owner's (its tasks would read it on theirs) or marked for
        reconnect, and the owner notifies a waiter on its own loop. One not in use (given back
        twice) is left alone: idle twice, two tasks would share its socket."""
        if connection not in self._in_use_connections:
            return
        other = loop_of(connection)
        if (other is not None and other is not owner) or connection.should_reconnect():
            let_go(connection, own=True)
        self._in_use_connections.discard(connection)
        self._available_connections.append(connection)
        with contextlib.suppress(RuntimeError):  # (the owner closed since: no waiter left)
            owner.call_soon_threadsafe(
                lambda: self._run_in_background(self._given_back(connection))
            )

    async def _given_back(self, connection: Any) -> None:
        """(On the owner's loop) a waiter told of the connection given back, as a release."""
        async with self._condition:
            self._condition.notify()
        await self._finish_release(connection)

    def _on_this_loop(self, refuse: bool) -> asyncio.AbstractEventLoop | None:
        """The loop running in another thread that the lock and condition are bound to (with
        ``refuse``: RuntimeError), else None (made anew if bound to a loop no longer running)."""
        loop = asyncio.get_running_loop()
        stale = False
        condition = self._condition
        for lock in (condition, getattr(condition, "_lock", None), self._lock):
            bound = getattr(lock, "_loop", None)  # (asyncio's mixin)
            if bound is None or bound is loop:
                continue
            if bound.is_running():  # in another thread: made anew, its waiters would never wake
                if refuse:
                    raise RuntimeError(
                        "this Redis client's connections are awaited on another event loop, "
                        "running in another thread: a connection pool (its Enqueuer or Client "
                        "too) serves one event loop at a time; use a SyncEnqueuer from threads, "
                        "or one client per event loop"
                    )
                return cast(asyncio.AbstractEventLoop, bound)
            stale = True
        if stale:
            self._lock, self._condition = asyncio.Lock(), asyncio.Condition()
        return None


def _cluster(target: RedisTarget, options: dict[str, Any]) -> RedisCluster:
    _check_cluster_pubsub()
    nodes = [ClusterNode(host, port) for host, port in target.hosts]
    options.pop("db", None)
    return RedisCluster(startup_nodes=nodes, ssl=target.tls, **options)


def _check_cluster_pubsub() -> None:
    if not hasattr(RedisCluster, "pubsub"):  # pragma: no cover - redis-py < 8
        import redis

        raise RedisUnavailableError(
            f"Redis Cluster needs redis-py >= 8.0 (pub/sub of the asyncio RedisCluster); "
            f"installed: {redis.__version__}"
        )


def _sentinel_master(target: RedisTarget, options: dict[str, Any]) -> Redis:
    sentinel_kwargs = {k: options[k] for k in _SHARED_WITH_SENTINELS if k in options}
    # one try per sentinel: the lookup moves on to the next sentinel, and the connection to
    # the master retries the whole lookup (redis-py's default would wait ~4 s per sentinel)
    sentinel_kwargs["retry"] = Retry(NoBackoff(), 0)
    for key, value in target.sentinel_options.items():
        sentinel_kwargs[key.removeprefix("sentinel_")] = value
    if target.tls:
        sentinel_kwargs["ssl"] = True
        options["ssl"] = True
    manager: Any = SerialSentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)
    for sentinel in manager.all_sentinels:  # (a child's lookups never on the parent's sockets)
        watch_forks(sentinel.connection_pool)
    client = manager.master_for(target.service, SentinelManagedRedis, SentinelPool, **options)
    return cast(Redis, client)


def as_redis(client: RedisClient) -> Redis:
    """A passed client, typed as ``Redis`` for errands' internals (a ``RedisCluster``
    answers the same commands)."""
    if isinstance(client, RedisCluster):
        _check_cluster_pubsub()
    return cast(Redis, client)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def on_node_of(client: Any, key: str) -> dict[str, Any]:
    """Keyword arguments sending a keyless command (INFO, DBSIZE) to the node holding ``key``
    on a cluster (else to any node); nothing for other clients."""
    if isinstance(client, RedisCluster):
        try:
            return {"target_nodes": client.get_node_from_key(key)}
        except Exception:  # slots not known yet: any node will do
            return {}
    return {}


def connection_option(client: Any, name: str) -> Any:
    """A connection option (``socket_timeout``...) of any client, ``None`` when unset."""
    if isinstance(client, RedisCluster):
        return client.connection_kwargs.get(name)
    return client.connection_pool.connection_kwargs.get(name)


def describe_client(client: Any) -> str:
    """A URL-like description of the server(s) a client talks to, for messages. Never holds
    a password."""
    if isinstance(client, RedisCluster):
        kwargs = client.connection_kwargs
        scheme = "rediss" if issubclass(kwargs["connection_class"], SSLConnection) else "redis"
        nodes = ",".join(f"{n.host}:{n.port}" for n in client.startup_nodes)
        return f"{scheme}+cluster://{nodes}"
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    ssl = "s" if issubclass(pool.connection_class, SSLConnection) else ""
    db = kwargs.get("db", 0)
    if isinstance(pool, SentinelConnectionPool):
        hosts = ",".join(_addr(s) for s in pool.sentinel_manager.sentinels)
        return f"redis{ssl}+sentinel://{hosts}/{pool.service_name}/{db}"
    if issubclass(pool.connection_class, UnixDomainSocketConnection):
        return f"unix://{kwargs.get('path')}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"redis{ssl}://{host}:{port}/{db}"


def _addr(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 26379)}"
