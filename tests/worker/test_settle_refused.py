"""A settle that settle.lua refuses before its first write (here: a workflow member whose run
has a key of another type) is not retried for ever: refused alone, the job is parked (left in
progress, the orphan sweep leaves it) and logged; refused in a call of several jobs, the jobs
are sent one by one, so the unfit one does not hold the others. (The settler retried the same
call for ever: the job's slot, and the other jobs of the call, held while the pool lived.)"""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError

from errands.clock import SystemClock
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from errands.worker.settler import Settler, refused
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
    assert settler.parked == {member.id}
    assert await redis.zscore(keys.in_progress(POOL), f"{member.id}:work") is not None
    assert any(member.id in r.getMessage() for r in caplog.records)


async def test_an_unfit_job_does_not_hold_the_others_of_its_settle(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    _scripts, now, member, plain = await _member_and_plain(redis, keys)
    settler = _settler(redis, keys)
    settles = []
    for f in (member, plain):
        s = Settle(f.id, "work", "requeue", keys.queue("work"), now, 1, history=False)
        s.token, s.score_ms = f.token, f.score
        settles.append(s)
    await asyncio.wait_for(settler._send_many(settles), 5)
    assert settler.parked == {member.id}
    assert await redis.zscore(keys.in_progress(POOL), "plain:work") is None
    assert await redis.zscore(keys.queue("work"), "plain") is not None
    assert await redis.zscore(keys.in_progress(POOL), f"{member.id}:work") is not None


def test_only_the_scripts_refusals_count_as_refused() -> None:
    assert refused(
        ResponseError("WRONGTYPE errands:{n}:wf:w1:res holds another type: nothing settled")
    )
    assert refused(ResponseError("errands: unknown settle mode x"))
    assert not refused(ResponseError("OOM command not allowed when used memory > 'maxmemory'."))
    assert not refused(ConnectionError("Connection reset by peer"))
