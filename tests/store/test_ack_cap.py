"""ack.lua takes at most ACK_MAX jobs a call: more would make its unpack() calls raise after
its first write (the jobs' attempts and running slots gone, their records half written). A call
with more is refused before its first write; ``Scripts.ack`` sends more in several calls, so no
job is lost (the one place the cap is enforced: the acker hands it every ack pending); and a job
id given twice in one call is acknowledged once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

import errands.store.ackcall as ackcall_module
from errands import Enqueuer
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from errands.worker.acker import Acker
from tests.support.resend import snapshot

POOL = "p0000000000000001"


async def fetched(redis: Redis, namespace: str, n: int) -> tuple[Scripts, list[Acked]]:
    """n jobs of ``work`` fetched by POOL, each as an ack would carry it (no result record
    kept: each leaves a tombstone)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace) as enq:
        await enq.enqueue_many([("work", {}, {}) for _ in range(n)])  # type: ignore[arg-type]
    now = await scripts.heartbeat(POOL, b"{}", 600_000, "register")
    got = await scripts.fetch(POOL, now, n, [("work", 0)])
    assert got is not None and len(got) == n
    return scripts, [Acked(f.id, "work", b"null", now, 0, 1, f.token) for f in got]


async def test_an_ack_call_of_more_than_the_cap_is_refused_before_its_first_write(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = 1000
    scripts, done = await fetched(redis, namespace, cap + 1)
    monkeypatch.setattr(ackcall_module, "ACK_MAX", 10**6)  # sent in one call (ack_slices)
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="nothing acknowledged"):
        await scripts.ack(POOL, done, False, 1, True)
    assert await snapshot(redis, namespace) == before
    monkeypatch.undo()
    assert await scripts.ack(POOL, done, False, 1, True) == []  # split: every job acked
    keys = scripts.keys
    assert await redis.zcard(keys.in_progress(POOL)) == 0
    assert int(await redis.hget(keys.stats, "processed") or 0) == cap + 1


async def test_an_ack_of_thousands_of_jobs_loses_none(redis: Redis, namespace: str) -> None:
    """4,500 jobs: in one call their tombstones' ZADD unpack()ed 9,000 values and raised after
    the jobs were forgotten."""
    scripts, done = await fetched(redis, namespace, 4500)
    assert await scripts.ack(POOL, done, False, 1, True) == []
    keys = scripts.keys
    assert await redis.zcard(keys.in_progress(POOL)) == 0
    assert int(await redis.hget(keys.running, "work") or 0) == 0
    assert await redis.hlen(keys.attempts) == 0
    assert await redis.hlen(keys.jobs) == 0
    assert await redis.zcard(keys.ended) == 4500
    assert await redis.zcard(keys.history_of("work")) == 4500
    assert int(await redis.hget(keys.stats, "processed") or 0) == 4500
    assert await scripts.ack(POOL, done, False, 1, True) == []  # a re-send: nothing refused
    assert int(await redis.hget(keys.stats, "processed") or 0) == 4500


async def test_a_job_given_twice_in_one_ack_is_acknowledged_once(
    redis: Redis, namespace: str
) -> None:
    scripts, done = await fetched(redis, namespace, 2)
    assert await scripts.ack(POOL, [done[0], done[1], done[0]], False, 1, True) == []
    keys = scripts.keys
    assert int(await redis.hget(keys.stats, "processed") or 0) == 2
    assert int(await redis.hget(keys.running, "work") or 0) == 0
    assert await redis.zcard(keys.history_of("work")) == 2


async def test_the_acker_leaves_the_cap_to_the_ack_call(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cap is enforced once, by ``Scripts.ack_report`` (the script's own limit): the acker
    hands it every ack pending, 2,001 here, in one flush, and every job is acknowledged."""
    scripts, done = await fetched(redis, namespace, 2001)
    report, calls = Scripts.ack_report, []

    async def counted(self: Scripts, pool_id: str, acks: Sequence[Acked], *args: Any) -> Any:
        calls.append(len(acks))
        return await report(self, pool_id, acks, *args)

    monkeypatch.setattr(Scripts, "ack_report", counted)
    acker = Acker(scripts, POOL, SystemClock(), history=False)
    for a in done:
        acker.add(a, False)
    await acker.flush()
    assert calls == [2001] and acker.idle and acker.refused == 0
    assert await redis.zcard(scripts.keys.in_progress(POOL)) == 0
    assert int(await redis.hget(scripts.keys.stats, "processed") or 0) == 2001
