"""A give-back's uncount (lua/settle.lua) writes the rate logs of every window its spec names
in one HSET: with more windows than unpack() takes (~8,000 values), the call raised after its
first write (the attempt and in-progress entry gone, the job on no queue: lost). The logs are
written 1,000 values a call (lib/chunked.lua), and a spec now names at most 16 windows of each
kind (REVIEW F6; lib/limits.lua lim_spec refuses more before any write: test_fetch_edges.py)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.clock import SystemClock
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker.settler import Settler
from tests.support.invariants import assert_invariants


async def test_a_give_back_under_a_spec_of_many_windows_uncounts_them_all(
    redis: Redis, namespace: str
) -> None:
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue_many([("sms", {})])
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    windows = range(1_000_000, 1_000_016)  # the most a spec may name (4,100 before the cap)
    spec = ";".join(f"{kind}=5/{per}" for kind in "rR" for per in windows)
    (item,) = await scripts.fetch("p", 1, 1, [("sms", 0)], specs={"sms": spec})
    assert item.rate_spec == spec
    settler = Settler(
        scripts, "p", SystemClock(), JSONSerializer(), dead_max_jobs=10, dead_max_age=60.0,
        history=False,
    )  # fmt: skip
    await settler.requeue_fetched(item, "sms")  # (4,100: raised after its first write)
    assert await redis.zrange(keys.queue("sms"), 0, -1) == [item.id.encode()]
    log = await redis.hget(keys.rate_log("sms"), str(windows[-1]))
    assert log is None or int(log[-10:]) - int(log[1:11]) == 0  # uncounted (or dropped)
    await assert_invariants(redis, namespace)
