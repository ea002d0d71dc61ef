"""settle.lua re-sent (redis-py sends a call again, with the same KEYS and ARGV, when its reply
was lost): the re-send answers as the first call did (1: settled), so that its caller can tell
it from a call fenced off (0: the attempt lost the job, a zombie pool); it writes nothing. And a
bad argument refuses the job before anything of it is written."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.clock import SystemClock
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from errands.store.settlecall import settle_request
from errands.worker.settler import Settler
from tests.admin.test_resend import resent
from tests.store.test_scripts_hardening import POOL, running_job
from tests.support.invariants import assert_invariants


async def state(redis: Redis, keys: Keys) -> dict[bytes, Any]:
    """Every key of the namespace, dumped."""
    found = {}
    async for key in redis.scan_iter(match=keys.prefix + "*"):
        found[key] = await redis.dump(key)
    return found


def settle_of(keys: Keys, job_id: str, mode: str, error: bytes = b"") -> Settle:
    target = {
        "retry": keys.retry("work"),
        "later": keys.scheduled("work"),
        "dead": keys.dead,
        "drop": keys.dead,
        "requeue": keys.queue("work"),
        "cancelled": keys.cancelled,
    }[mode]
    s = Settle(job_id, "work", mode, target, 5_000, 1, started_ms=4_000, token="1")
    s.score_ms, s.ttl_ms = (0 if mode == "requeue" else 6_000), 60_000
    s.error = error or (b'{"error":"boom","at":5.0}' if mode in ("retry", "dead") else b"")
    return s


@pytest.mark.parametrize(
    ("mode", "asked"),
    [(m, None) for m in ("retry", "later", "dead", "drop", "requeue", "cancelled")]
    + [("retry", "cancel"), ("requeue", "cancel"), ("later", "destroy")]
    # a retry turned into a drop, its error forgotten with it; failures without an error; a
    # burial past the set's bounds (the job was trimmed by its own call): all answered 0
    + [("retry", "destroy"), ("retry", "no error"), ("dead", "no error")]
    + [("dead", "trimmed"), ("cancelled", "trimmed"), ("later", "trimmed")],
)
async def test_a_settle_resent_answers_as_the_first(
    redis: Redis, namespace: str, mode: str, asked: str | None
) -> None:
    """The re-send found the attempt record gone (dropped by its own first call) and answered
    0, as to a zombie."""
    keys, job_id = await running_job(redis, namespace)
    if asked in ("cancel", "destroy"):  # (the first call turns the outcome into cancelled, or drop)
        await redis.hset(keys.cancel_requests, job_id, asked)
    scripts = Scripts(redis, keys)
    s = settle_of(keys, job_id, mode)
    if asked == "no error":
        s.error = b""
    if asked == "trimmed":
        await redis.hset(keys.cancel_requests, job_id, "cancel")  # (later: cancelled)
        s.dead_max = 0
    assert await scripts.settle(POOL, s)
    after = await state(redis, keys)
    assert await scripts.settle(POOL, s)
    assert await state(redis, keys) == after
    await assert_invariants(redis, namespace)


async def test_a_zombie_is_still_fenced_off(redis: Redis, namespace: str) -> None:
    """The pool's lease was taken (by a reaper, which gave the job back to its queue): its
    requeue finds the job where it would put it, and is answered 0 all the same."""
    keys, job_id = await running_job(redis, namespace)
    member = (f"{job_id}:work", job_id, "work")
    reaped = await Scripts(redis, keys).reap(POOL, 0, 3, b"{}", b"{}", [member])
    assert reaped.requeued == 1 and await redis.zscore(keys.queue("work"), job_id) is not None
    before = await state(redis, keys)
    for mode in ("requeue", "retry", "drop"):
        assert not await Scripts(redis, keys).settle(POOL, settle_of(keys, job_id, mode))
    assert await state(redis, keys) == before


async def test_an_orphan_requeued_by_a_resent_call_answers_as_the_first(
    redis: Redis, namespace: str
) -> None:
    keys, job_id = await running_job(redis, namespace)
    scripts = Scripts(redis, keys)
    s = Settle(job_id, "work", "requeue", keys.queue("work"), 5_000, 1, history=False)
    assert await scripts.settle(POOL, s)
    assert await scripts.settle(POOL, s)
    await assert_invariants(redis, namespace)


async def test_a_batch_settled_by_a_resent_call_answers_as_the_first(
    redis: Redis, namespace: str
) -> None:
    keys, first = await running_job(redis, namespace, token="1")
    _keys, second = await running_job(redis, namespace, token="1")
    scripts = Scripts(redis, keys)
    settles = [settle_of(keys, first, "retry"), settle_of(keys, second, "dead")]
    with resent(scripts, "settle") as firsts:
        assert await scripts.settle_many(POOL, settles) == [True, True]
    assert firsts == [[1, 1]]
    await assert_invariants(redis, namespace)


async def test_the_settler_logs_no_refusal_for_its_own_resent_call(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys, job_id = await running_job(redis, namespace)
    scripts = Scripts(redis, keys)
    settler = Settler(
        scripts, POOL, SystemClock(), JSONSerializer(), dead_max_jobs=10, dead_max_age=60,
        history=True,
    )  # fmt: skip
    with resent(scripts, "settle"), caplog.at_level(logging.WARNING, "errands.worker"):
        await settler._send(settle_of(keys, job_id, "retry"))
    assert "not settled" not in caplog.text
    assert await redis.zscore(keys.retry("work"), job_id) == 6_000


@pytest.mark.parametrize(
    ("mode", "field", "value"),
    [
        ("cancelled", "ttl_ms", ""),
        ("retry", "ttl_ms", ""),  # turned into cancelled by a request
        ("retry", "score_ms", "soon"),
        ("dead", "dead_max", "many"),
        ("requeue", "now_ms", ""),
    ],
)
async def test_a_settle_with_a_bad_number_writes_nothing(
    redis: Redis, namespace: str, mode: str, field: str, value: str
) -> None:
    """An empty TTL in cancelled mode (or a cancel request turning the outcome into cancelled)
    raised after the attempt record, the in-progress entry and the slot were gone."""
    keys, job_id = await running_job(redis, namespace)
    await redis.hset(keys.cancel_requests, job_id, "cancel")
    before = await state(redis, keys)
    s = settle_of(keys, job_id, mode)
    setattr(s, field, value)
    with pytest.raises(ResponseError) as raised:
        await Scripts(redis, keys).settle(POOL, s)
    assert await state(redis, keys) == before
    assert "errands: settle" in str(raised.value)


async def test_a_batch_whose_counts_do_not_fit_writes_nothing(redis: Redis, namespace: str) -> None:
    """KEYS for one job, ARGV for two: the first job was settled, then the script raised."""
    keys, first = await running_job(redis, namespace)
    _keys, second = await running_job(redis, namespace)
    scripts = Scripts(redis, keys)
    one_keys, one_args = settle_request(keys, POOL, settle_of(keys, first, "retry"))
    _k, two_args = settle_request(keys, POOL, settle_of(keys, second, "retry"))
    args = ["{many}", 2, len(one_keys), len(one_args), *one_args, *two_args]
    before = await state(redis, keys)
    reply = await scripts._call("settle", one_keys, args)  # (the reason, for every job)
    assert b"counts do not fit" in reply
    assert await state(redis, keys) == before


async def test_a_requeue_freeing_a_partition_wakes_the_pools_once(
    redis: Redis, namespace: str
) -> None:
    """It published 'requeue', then 'settle' for the partition it freed: one wake-up is enough
    (each idle pool fetched twice). It now wakes one idle pool of the name, once."""
    keys = Keys(namespace)
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    jobs = [await enqueuer.enqueue("work", {"i": i}, partition="eu") for i in range(2)]
    scripts = Scripts(redis, keys)
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    fetched = await scripts.fetch(POOL, 1, 10, [("work", 0)], specs={"work": "c=1"})
    assert fetched is not None and [f.id for f in fetched] == [jobs[0].id]
    await redis.sadd(keys.idle, POOL)  # (as if another pool were idle)
    await redis.zadd(keys.idle_for("work"), {POOL: -(10**15)})
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(keys.wake_channel)
        await pubsub.psubscribe(keys.pool_wake_channel("*"))
        for _ in range(2):
            assert (await pubsub.get_message(timeout=1))["type"] in ("subscribe", "psubscribe")
        f = fetched[0]
        s = Settle(f.id, "work", "requeue", keys.queue("work"), 5_000, 1, token=f.token)
        assert await scripts.settle(POOL, s)
        await redis.publish(keys.wake_channel, "end")  # (a marker after the settle's)
        heard = []
        while (message := await pubsub.get_message(timeout=1)) is not None:
            heard.append((message["channel"].decode(), message["data"]))
            if message["data"] == b"end":
                break
    assert heard == [(keys.pool_wake_channel(POOL), b"job"), (keys.wake_channel, b"end")]
    await assert_invariants(redis, namespace)
