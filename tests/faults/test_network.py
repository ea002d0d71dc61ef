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

from errands.store.connection import connect
from errands.store.devserver import RedisServer
from errands.store.keys import Keys
from tests.support.procs import Procs

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

# short timings: all three faults; default timings (socket timeout 15 s, heartbeat 2 s, dead
# after 10 s): the black hole only, after the other pool's reaper is armed
TIMINGS = {
    "short": {
        "FAULT_HEARTBEAT_INTERVAL": "0.25",
        "FAULT_DEAD_TIMEOUT": "2.5",
        "FAULT_SOCKET_TIMEOUT": "3.0",
    },
    "default": {},
}


async def wait_recovered(
    proxy: FaultProxy,
    admin: Redis,
    oracle: Oracle,
    keys: Keys,
    pool_id: str,
    pid: int,
    holding: set[str],
    at: float,
    bound: float,
) -> dict[str, float]:
    """Seconds after the fault at ``at`` until the proxied pool started a job, until the jobs
    it held at the fault left its in-progress set (acknowledged or settled), and until its
    wake-up subscription runs on a connection that passes traffic."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + bound + 10
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


@pytest.mark.parametrize("timings", ["short", "default"])
async def test_connection_reset_and_blackholed(
    timings: str,
    redis_server: Callable[..., RedisServer],
    proxy_to: Callable[[RedisServer], FaultProxy],
    procs: Procs,
    oracle: Oracle,
    oracle_url: str,
    namespace: str,
) -> None:
    server = redis_server()
    proxy = proxy_to(server)
    env = {**TIMINGS[timings], "FAULT_CONCURRENCY": "8"}
    socket_timeout = float(env.get("FAULT_SOCKET_TIMEOUT", 15.0))  # 15 s: errands' default
    bound = socket_timeout + 5.0
    faults = ["reset", "black hole", "black hole (replies only)"]
    if timings == "default":
        faults = ["black hole"]
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
        # the direct pool's reaper is armed (its beats healthy for dead_timeout): if the
        # proxied pool looked dead, it would be reaped
        await asyncio.sleep(2.5 if timings == "short" else 10.5)

        recovered: dict[str, dict[str, float]] = {}
        for fault in faults:
            holding = set(await in_progress(admin, keys, pools[a.pid]))
            at = time.time()
            if fault == "reset":
                affected = proxy.reset()
            else:
                affected = proxy.blackhole(replies_only="replies" in fault)
            assert affected > 0
            recovered[fault] = await wait_recovered(
                proxy, admin, oracle, keys, pools[a.pid], a.pid, holding, at, bound
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
        reaped = direct.logs(tail=1_000_000).count("reaped dead pool")
        await assert_nothing_stuck(admin, keys, ["work"])
        short_names = {
            "reset": "reset",
            "black hole": "blackhole",
            "black hole (replies only)": "lost_replies",
        }
        report(
            f"6. connection reset / black-holed via proxy ({timings} timings)",
            socket_timeout_s=socket_timeout,
            jobs=len(ids),
            **{
                f"{short_names[fault]}_{what}_s": recovered[fault][what]
                for fault in faults
                for what in ("started", "acked", "resubscribed")
            },
            bound_s=bound,
            lost=0,
            wrong_replies=len(wrong),
            duplicates=len(dups),
            proxied_pool_reaped=reaped,
            connections_through_proxy=proxy.accepted,
        )
        assert not wrong, wrong
        worst = max(max(r.values()) for r in recovered.values())
        assert worst < bound, proxied.logs()
        assert [p.poll() for p in (a, b)] == [None, None]
        # the proxied pool's heartbeats got through every fault in time: it was never reaped
        assert pools[a.pid] in registered and recoveries == 0 and reaped == 0, direct.logs()
        assert not dups
    finally:
        await admin.aclose()
