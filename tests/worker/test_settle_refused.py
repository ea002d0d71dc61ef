"""A settle that settle.lua refuses before its first write (here: a workflow member whose run
has a key of another type) is not retried for ever: the job is parked (left in progress, the
orphan sweep leaves it) and logged. (The settler retried the same call for ever: the job's slot,
and the other jobs of the call, held while the pool lived.) settle.lua answers a refused job
with the reason, a reply and not an error, job by job: the other jobs of a call are settled by
that very call, and the settler acts on the reply, not on an error's text."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from redis.asyncio import Redis

from errands.clock import SystemClock
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.records import Fetched
from errands.store.scripts import Scripts, Settle, SettleRefused
from errands.store.settlecall import settle_many_request
from errands.worker.settler import Settler
from tests.worker.test_ack_unfit_job import POOL, _member_and_plain


def _settler(redis: Redis, keys: Keys) -> Settler:
    return Settler(
        Scripts(redis, keys),
        POOL,
        SystemClock(),
        JSONSerializer(),
        dead_max_jobs=100,
        dead_max_age=3600.0,
        history=False,
    )


async def test_a_refused_settle_is_parked_not_retried(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    _scripts, _now, member, _plain = await _member_and_plain(redis, keys)
    settler = _settler(redis, keys)
    with caplog.at_level(logging.ERROR, logger="errands.worker"):
        await asyncio.wait_for(settler.requeue_fetched(member, "work"), 5)  # (for ever)
    assert settler.parked.keys() == {member.id}
    assert await redis.zscore(keys.in_progress(POOL), f"{member.id}:work") is not None
    assert any(member.id in r.getMessage() for r in caplog.records)


def _requeues(keys: Keys, now: int, *fetched: Fetched) -> list[Settle]:
    settles = []
    for f in fetched:
        s = Settle(f.id, "work", "requeue", keys.queue("work"), now, 1, history=False)
        s.token, s.score_ms = f.token, f.score
        settles.append(s)
    return settles


async def test_an_unfit_job_does_not_hold_the_others_of_its_settle(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(namespace)
    _scripts, now, member, plain = await _member_and_plain(redis, keys)
    settler = _settler(redis, keys)
    calls: list[str] = []
    call = Scripts._call

    async def counted(self: Scripts, name: str, *args: Any) -> Any:
        calls.append(name)
        return await call(self, name, *args)

    monkeypatch.setattr(Scripts, "_call", counted)
    await asyncio.wait_for(settler._send_many(_requeues(keys, now, member, plain)), 5)
    assert calls == ["settle"]  # (one call: the plain job settled by it, not sent again)
    assert settler.parked.keys() == {member.id}
    assert await redis.zscore(keys.in_progress(POOL), "plain:work") is None
    assert await redis.zscore(keys.queue("work"), "plain") is not None
    assert await redis.zscore(keys.in_progress(POOL), f"{member.id}:work") is not None


async def test_settle_answers_a_refused_job_with_its_reason_and_settles_the_others(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts, now, member, plain = await _member_and_plain(redis, keys)
    request = settle_many_request(keys, POOL, _requeues(keys, now, member, plain))
    for _ in range(2):  # the second: a re-send of the first (redis-py, a reply lost)
        reply = await scripts._call("settle", *request)  # (not an error)
        assert isinstance(reply[0], bytes) and b"holds another type: nothing settled" in reply[0]
        assert reply[1] == 1
    assert await redis.zscore(keys.queue("work"), "plain") is not None
    assert await redis.zscore(keys.in_progress(POOL), f"{member.id}:work") is not None
    outcomes = await scripts.settle_report(POOL, _requeues(keys, now, member))
    assert len(outcomes) == 1 and isinstance(outcomes[0], SettleRefused)
    assert "holds another type" in str(outcomes[0])
