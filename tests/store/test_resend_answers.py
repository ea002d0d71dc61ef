"""Re-sent calls (redis-py sends a script call again, the same KEYS and ARGV, when the reply to
the first send is lost) whose answer differed from the first's: cancel.lua said ``already`` of
the job its first send cancelled when called without a token (Scripts.cancel's default), and
``already`` (or ``finished``) of the job its first send signalled when the pool had settled it
meanwhile. (deregister.lua, unique_gc.lua and wf_trim.lua answer what the re-send itself did,
which their callers drop: tests/store/test_resend_table.py.)"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.records import Acked
from errands.store.scripts import Scripts, Settle
from tests.support.fetched import POOL, running_job
from tests.support.invariants import assert_invariants
from tests.support.resend import Recorder, snapshot

NOW = 1_767_225_600_000


def recorded(scripts: Scripts, name: str) -> Recorder:
    rec = Recorder(scripts._s[name])
    scripts._s[name] = rec  # type: ignore[assignment]
    return rec


async def test_a_cancel_without_a_token_resent_answers_cancelled(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work")
    assert job is not None
    rec = recorded(scripts, "cancel")
    assert await scripts.cancel(job.id, "work", NOW, 60_000) == "cancelled"
    before = await snapshot(redis, namespace)
    assert await rec.resend() == b"cancelled"
    assert await snapshot(redis, namespace) == before
    assert await redis.zscore(keys.cancelled, job.id) is not None
    await assert_invariants(redis, namespace)


async def test_a_cancel_resent_after_the_job_was_rescheduled_changes_nothing(
    redis: Redis, namespace: str
) -> None:
    """The job the first send cancelled is rescheduled by another admin call (Client.reschedule:
    move.lua) before the re-send: the re-send answers cancelled and leaves the job scheduled (it
    found the job's envelope again and cancelled it a second time, undoing the reschedule)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work")
    assert job is not None
    rec = recorded(scripts, "cancel")
    assert await scripts.cancel(job.id, "work", NOW, 60_000) == "cancelled"
    later = NOW + 3_600_000
    assert await scripts.move(job.id, "work", keys.cancelled, "schedule", later, call="m1")
    before = await snapshot(redis, namespace)
    assert await rec.resend() == b"cancelled"
    assert await snapshot(redis, namespace) == before
    assert await redis.zscore(keys.scheduled("work"), job.id) == later


@pytest.mark.parametrize("end", ["cancelled", "finished", "none"])
async def test_a_cancel_of_a_running_job_resent_answers_running(
    redis: Redis, namespace: str, end: str
) -> None:
    """The pool cancelled the job (or it finished) between the first send and the re-send."""
    keys, job_id = await running_job(redis, namespace)
    scripts = Scripts(redis, keys)
    rec = recorded(scripts, "cancel")
    assert await scripts.cancel(job_id, "work", NOW, 60_000, "c1") == "running"
    assert await redis.hget(keys.cancel_requests, job_id) == b"cancel"
    if end == "cancelled":
        s = Settle(job_id, "work", "cancelled", keys.cancelled, NOW, 1, token="1")
        s.score_ms, s.ttl_ms, s.counter = NOW, 60_000, "cancelled"
        assert await scripts.settle(POOL, s)
    elif end == "finished":
        done = [Acked(job_id, "work", b"1", NOW, 60_000, 1, token="1")]
        assert await scripts.ack(POOL, done, False, NOW, True) == []
    before = await snapshot(redis, namespace)
    assert await rec.resend() == b"running"
    assert await snapshot(redis, namespace) == before
    await assert_invariants(redis, namespace)
