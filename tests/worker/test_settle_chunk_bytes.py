"""A settler's calls of many settles (a batch's failed jobs, or its jobs going back at a stop)
are capped by their arguments' bytes as well as by SETTLE_MAX jobs: settles of large envelopes
(2 MB each) go in several calls of at most SETTLE_BYTES of arguments, in their order. (The cap
was SETTLE_MAX jobs alone: 500 jobs of 2 MB made one call of about 1 GB.)"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from errands.clock import SystemClock, to_ms
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from errands.store.settlecall import SETTLE_BYTES
from errands.worker.settler import Settler


async def test_settles_of_large_envelopes_are_split_by_bytes(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    settler = Settler(
        scripts,
        "pool-1",
        SystemClock(),
        JSONSerializer(),
        dead_max_jobs=100,
        dead_max_age=3600.0,
        history=False,
    )
    calls: list[list[str]] = []
    sizes: list[int] = []
    sent = scripts.settle_report

    async def spy(pool_id: str, settles: list[Settle]) -> Any:
        calls.append([s.id for s in settles])
        sizes.append(sum(len(s.envelope) for s in settles))
        return await sent(pool_id, settles)

    monkeypatch.setattr(scripts, "settle_report", spy)
    now_ms = to_ms(SystemClock().now())
    big = b"x" * (2 * 1024 * 1024)
    settles = [
        Settle(f"j{i}", "b", "requeue", keys.queue("b"), now_ms, 1, envelope=big, history=False)
        for i in range(10)
    ]
    await settler._send_many(settles)
    assert len(calls) > 1 and max(sizes) <= SETTLE_BYTES, sizes
    assert [i for call in calls for i in call] == [f"j{i}" for i in range(10)]
