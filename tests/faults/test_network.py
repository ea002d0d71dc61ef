"""Scenario 6 of issue 8: one pool talks to Redis through a TCP proxy that resets its
connections, then black-holes them (both ways; then only the replies, so commands run but their
replies are lost), while a second pool talks to Redis directly.

Bound: the proxied pool starts jobs again within socket_timeout + 5 s of each fault; no job is
lost, every job ends, and no reply is ever handed to the wrong command (each job asks Redis to
ECHO a token of its own and checks the answer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from errands.connection import connect
from errands.devserver import RedisServer
from procs import Procs, eventually

from .common import (
    Fleet,
    Oracle,
    assert_nothing_stuck,
    duplicates,
    first_start_after,
    report,
)
from .proxy import FaultProxy
from .test_redis_faults import Producer

pytestmark = pytest.mark.faults

SOCKET_TIMEOUT = 3.0
BOUND = SOCKET_TIMEOUT + 5.0


@pytest.fixture
def proxy_to() -> Iterator[Callable[[RedisServer], FaultProxy]]:
    proxies: list[FaultProxy] = []

    def start(server: RedisServer) -> FaultProxy:
        proxies.append(FaultProxy(server.port).start())
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.stop()


async def test_connection_reset_and_blackholed(
    redis_server: Callable[..., RedisServer],
    proxy_to: Callable[[RedisServer], FaultProxy],
    procs: Procs,
    oracle: Oracle,
    oracle_url: str,
    namespace: str,
) -> None:
    server = redis_server()
    proxy = proxy_to(server)
    env = {
        "FAULT_HEARTBEAT_INTERVAL": "0.25",
        "FAULT_DEAD_TIMEOUT": "2.0",
        "FAULT_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT),
        "FAULT_CONCURRENCY": "8",
    }
    direct = Fleet(procs, server.url, namespace, oracle_url, **env)
    proxied = Fleet(procs, proxy.url, namespace, oracle_url, **env)
    keys = direct.keys
    admin = connect(server.url)
    try:
        a = proxied.start()
        b = direct.start()
        pools = await direct.wait_ready(admin, [a, b])
        producer = Producer(server.url, namespace, (0.05, 0.2), echo=True)
        producer.start()
        await asyncio.sleep(2.5)

        resumed: dict[str, float] = {}
        for fault in ("reset", "black hole", "black hole (replies only)"):
            at = time.time()
            if fault == "reset":
                affected = proxy.reset()
            else:
                affected = proxy.blackhole(replies_only="replies" in fault)
            assert affected > 0

            async def started_again(since: float = at) -> bool:
                return any(s.pid == a.pid and s.t > since for s in await oracle.starts())

            await eventually(started_again, BOUND + 10, f"the proxied pool to resume after {fault}")
            resumed[fault] = first_start_after(await oracle.starts(), a.pid, at)
            await asyncio.sleep(1.0)

        await producer.stop()
        ids = producer.acknowledged
        await oracle.wait_ended(ids, timeout=30)
        wrong = await oracle.lines("wrong")
        starts = await oracle.starts()
        dups = duplicates(starts)
        registered = {m.decode() for m in await admin.zrange(keys.pools, 0, -1)}
        await assert_nothing_stuck(admin, keys, ["work"])
        report(
            "6. connection reset / black-holed via proxy",
            socket_timeout_s=SOCKET_TIMEOUT,
            jobs=len(ids),
            resume_after_reset_s=resumed["reset"],
            resume_after_blackhole_s=resumed["black hole"],
            resume_after_lost_replies_s=resumed["black hole (replies only)"],
            bound_s=BOUND,
            lost=0,
            wrong_replies=len(wrong),
            duplicates=len(dups),
            proxied_pool_reaped=pools[a.pid] not in registered,
            connections_through_proxy=proxy.accepted,
        )
        print(proxied.logs(tail=20000)); print(direct.logs(tail=5000)); print(resumed)
        assert not wrong, wrong
        assert max(resumed.values()) < BOUND, proxied.logs()
        assert [p.poll() for p in (a, b)] == [None, None]
    finally:
        await admin.aclose()
