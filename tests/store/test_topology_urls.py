"""Redis URLs -> clients (no server needed): schemes, options, errors that hide the password,
and the blocking twins the heartbeat thread uses."""

from __future__ import annotations

import ssl

import pytest
import redis
import redis.sentinel
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from errands import RedisUnavailableError
from errands.store.connection import connect, describe, redact_url
from errands.store.syncclient import sync_client_like
from errands.store.topology import SentinelManagedRedis, parse_redis_url

PW = "s3cret-pw"


def test_plain_and_tls_urls() -> None:
    t = parse_redis_url(f"redis://app:{PW}@cache:6380/2")
    assert (t.kind, t.tls) == ("standalone", False)
    assert t.options["username"] == "app" and t.options["password"] == PW
    assert (t.options["host"], t.options["port"], t.options["db"]) == ("cache", 6380, 2)
    t = parse_redis_url(
        "rediss://cache/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
        "&ssl_check_hostname=false&socket_timeout=3",
        ssl_keyfile="/other.pem",  # keyword arguments win over the query string
    )
    assert t.tls
    assert t.options["ssl_ca_certs"] == "/ca.pem" and t.options["ssl_certfile"] == "/c.pem"
    assert t.options["ssl_keyfile"] == "/other.pem"
    assert t.options["ssl_check_hostname"] is False and t.options["socket_timeout"] == 3.0


def test_cluster_and_sentinel_urls() -> None:
    t = parse_redis_url(f"redis+cluster://:{PW}@10.0.0.1:7000,[::1]:7001,node3")
    assert t.kind == "cluster" and not t.tls
    assert t.hosts == (("10.0.0.1", 7000), ("::1", 7001), ("node3", 6379))
    assert t.options["password"] == PW and "host" not in t.options
    t = parse_redis_url(
        f"rediss+sentinel://app:{PW}@s1:26379,s2:26380/main/3?sentinel_password=x&ssl_ca_certs=/a"
    )
    assert (t.kind, t.tls, t.service, t.options["db"]) == ("sentinel", True, "main", 3)
    assert t.hosts == (("s1", 26379), ("s2", 26380))
    assert t.sentinel_options == {"sentinel_password": "x"}
    assert t.options["ssl_ca_certs"] == "/a"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"http://u:{PW}@host/0", "unknown scheme"),
        (f"redis://u:{PW}@host/0?ssl_ca_certs=/ca.pem", "need a rediss:// URL"),
        (f"redis+cluster://u:{PW}@h1:7000/1", "database 0 only"),
        (f"redis+cluster://u:{PW}@h1:70000", "bad host:port"),
        (f"redis+sentinel://u:{PW}@s1:26379", "name the service"),
        (f"redis://u:{PW}@host/0?sentinel_password={PW}", "redis+sentinel:// only"),
        (f"redis+cluster://u:{PW}@h1:7000?bogus_option=1", "bogus_option"),
    ],
)
def test_bad_urls_raise_naming_the_url_without_password(url: str, why: str) -> None:
    with pytest.raises(RedisUnavailableError, match="invalid Redis URL") as raised:
        connect(url)
    assert why in str(raised.value)
    assert PW not in str(raised.value) and "u:***@" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://u:{PW}@h:1/0", "redis://u:***@h:1/0"),
        (f"redis://:{PW}@h:1/0", "redis://:***@h:1/0"),
        ("redis://u@h:1/0", "redis://u@h:1/0"),
        (f"redis+cluster://u:{PW}@a:1,b:2", "redis+cluster://u:***@a:1,b:2"),
        (
            f"redis+sentinel://:{PW}@a:1,b:2/main?sentinel_password={PW}&db=1",
            "redis+sentinel://:***@a:1,b:2/main?sentinel_password=***&db=1",
        ),
        (f"rediss://[::1]:7000/0?password={PW}", "rediss://[::1]:7000/0?password=***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


async def test_connect_builds_the_client_of_each_topology() -> None:
    plain = connect(f"redis://u:{PW}@127.0.0.1:1/3")
    cluster = connect(f"redis+cluster://u:{PW}@127.0.0.1:1,127.0.0.1:2")
    sentinel = connect(f"rediss+sentinel://u:{PW}@127.0.0.1:1,127.0.0.1:2/main/1")
    try:
        assert type(plain) is Redis
        assert isinstance(cluster, RedisCluster)
        assert isinstance(sentinel, SentinelManagedRedis)
        assert describe(plain) == "redis://127.0.0.1:1/3"
        assert describe(cluster) == "redis+cluster://127.0.0.1:1,127.0.0.1:2"
        assert describe(sentinel) == "rediss+sentinel://127.0.0.1:1,127.0.0.1:2/main/1"
        # errands' bounded timeouts apply to every topology
        assert cluster.connection_kwargs["socket_timeout"] == 15.0
        assert sentinel.connection_pool.connection_kwargs["socket_connect_timeout"] == 5.0
    finally:
        for client in (plain, cluster, sentinel):
            await client.aclose()


async def test_sync_twins_for_the_heartbeat_thread() -> None:
    tls = connect(
        f"rediss://u:{PW}@127.0.0.1:1/2?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k"
    )
    sentinel = connect(f"redis+sentinel://u:{PW}@127.0.0.1:1,127.0.0.1:2/main/4")
    try:
        twin = sync_client_like(tls, timeout_cap=1.0)
        kw = twin.connection_pool.connection_kwargs
        assert isinstance(twin, redis.Redis)
        assert (kw["host"], kw["port"], kw["db"], kw["password"]) == ("127.0.0.1", 1, 2, PW)
        assert kw["ssl_ca_certs"] == "/ca.pem" and kw["ssl_keyfile"] == "/k"
        assert kw["socket_timeout"] == 1.0
        twin.close()
        twin = sync_client_like(sentinel)
        pool = twin.connection_pool
        assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
        assert pool.service_name == "main" and pool.connection_kwargs["db"] == 4
        assert pool.connection_kwargs["password"] == PW
        hosts = [
            s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels
        ]
        assert hosts == [1, 2]
        twin.close()
    finally:
        await tls.aclose()
        await sentinel.aclose()


async def test_sync_twin_keeps_every_tls_option_of_the_pool_client() -> None:
    """Issue 12 (defect 2): the heartbeat's blocking client must speak TLS exactly as the pool's
    client does: an encrypted client key's password and the verify flags were dropped, so the
    heartbeat failed (or verified less) where the pool's own connection worked."""
    flags = [ssl.VerifyFlags.VERIFY_X509_STRICT]
    tls = Redis(
        host="127.0.0.1",
        port=1,
        ssl=True,
        ssl_certfile="/c.pem",
        ssl_keyfile="/k.pem",
        ssl_password="key-secret",
        ssl_include_verify_flags=flags,
        ssl_exclude_verify_flags=[ssl.VerifyFlags.VERIFY_X509_PARTIAL_CHAIN],
        ssl_min_version=ssl.TLSVersion.TLSv1_3,
    )
    try:
        twin = sync_client_like(tls, timeout_cap=1.0)
        kw = twin.connection_pool.connection_kwargs
        assert kw["ssl_password"] == "key-secret"
        assert kw["ssl_include_verify_flags"] == flags
        assert kw["ssl_exclude_verify_flags"] == [ssl.VerifyFlags.VERIFY_X509_PARTIAL_CHAIN]
        assert kw["ssl_min_version"] == ssl.TLSVersion.TLSv1_3
        assert twin.connection_pool.connection_class is redis.SSLConnection
        twin.close()
    finally:
        await tls.aclose()
