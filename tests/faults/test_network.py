"""Scenario 6 of issue 8: one pool talks to Redis through a TCP proxy that resets its
connections, then black-holes them (both ways; then only the replies, so commands run but their
replies are lost), while a second pool talks to Redis directly.

Bound: within socket_timeout + 5 s of each fault the proxied pool has started a job, settled
every job it held, and resubscribed to its wake-ups (half-open pub/sub connections are found by
PING); its heartbeats get through in time, so it is never taken for dead; no job is lost, and no
reply is ever handed to the wrong command (each job asks Redis to ECHO a token of its own).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from redis.asyncio import Redis

from errands.connection import connect
from errands.devserver import RedisServer
from errands.keys import Keys
from procs import Procs

from .common import (
    Fleet,
    Oracle,
    assert_nothing_stuck,
    duplicates,
    in_progress,
    report,
)
from .proxy import FaultProxy
from .test_redis_faults import Producer

pytestmark = pytest.mark.faults

SOCKET_TIMEOUT = 3.0
BOUND = SOCKET_TIMEOUT + 5.0


async def wait_recovered(
    proxy: FaultProxy,
    admin: Redis,
    oracle: Oracle,
    keys: Keys,
    pool_id: str,
    pid: int,
    holding: set[str],
    at: float,
) -> dict[str, float]:
    """Seconds after the fault at ``at`` until the proxied pool started a job, until the jobs
    it held at the fault left its in-progress set (acknowledged or settled), and until its
    wake-up subscription runs on a connection that passes traffic."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + BOUND + 10
    while len(done) < 3:
        if "started" not in done and any(s.pid == pid and s.t > at for s in await oracle.starts()):
            done["started"] = time.time() - at
        if "acked" not in done and not holding & set(await in_progress(admin, keys, pool_id)):
            done["acked"] = time.time() - at
        if "resubscribed" not in done:
            ports = proxy.passing_ports()
            for client in await admin.client_list():
                if int(client["sub"]) > 0 and int(client["addr"].rpartition(":")[2]) in ports:
                    done["resubscribed"] = time.time() - at
        if time.monotonic() > deadline:
            raise AssertionError(f"the proxied pool did not recover: {done}")
        await asyncio.sleep(0.05)
    return done


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
        "FAULT_DEAD_TIMEOUT": "2.5",
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

        recovered: dict[str, dict[str, float]] = {}
        for fault in ("reset", "black hole", "black hole (replies only)"):
            holding = set(await in_progress(admin, keys, pools[a.pid]))
            at = time.time()
            if fault == "reset":
                affected = proxy.reset()
            else:
                affected = proxy.blackhole(replies_only="replies" in fault)
            assert affected > 0
            recovered[fault] = await wait_recovered(
                proxy, admin, oracle, keys, pools[a.pid], a.pid, holding, at
            )
            await asyncio.sleep(0.5)

        await producer.stop()
        ids = producer.acknowledged
        await oracle.wait_ended(ids, timeout=30)
        wrong = await oracle.lines("wrong")
        starts = await oracle.starts()
        dups = duplicates(starts)
        registered = {m.decode() for m in await admin.zrange(keys.pools, 0, -1)}
        recoveries = await admin.hlen(keys.recoveries)
        await assert_nothing_stuck(admin, keys, ["work"])
        report(
            "6. connection reset / black-holed via proxy",
            socket_timeout_s=SOCKET_TIMEOUT,
            jobs=len(ids),
            **{
                f"{short}_{what}_s": recovered[fault][what]
                for fault, short in (
                    ("reset", "reset"),
                    ("black hole", "blackhole"),
                    ("black hole (replies only)", "lost_replies"),
                )
                for what in ("started", "acked", "resubscribed")
            },
            bound_s=BOUND,
            lost=0,
            wrong_replies=len(wrong),
            duplicates=len(dups),
            recovered_jobs=recoveries,
            connections_through_proxy=proxy.accepted,
        )
        assert not wrong, wrong
        worst = max(max(r.values()) for r in recovered.values())
        assert worst < BOUND, proxied.logs()
        assert [p.poll() for p in (a, b)] == [None, None]
        # the proxied pool's heartbeats got through every fault in time: it was never reaped
        assert pools[a.pid] in registered and recoveries == 0, direct.logs()
    finally:
        await admin.aclose()
