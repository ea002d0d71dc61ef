"""The final review's Lua-script defects: a bad argument, a key of another type or a seq that is
not a counter fails a call before its first write (a snapshot of the namespace is unchanged),
and no job is lost or stuck."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer, Workflow
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from errands.workflows.store import WorkflowScripts
from tests.support.deadpool import dead_pool_row
from tests.support.fetched import POOL, running_job
from tests.support.resend import snapshot


@pytest.mark.parametrize("seq", [b"x", b"1.5", b"007", b"-0"])
async def test_a_settle_meeting_a_seq_that_is_not_a_counter_settles_nothing(
    redis: Redis, namespace: str, seq: bytes | None
) -> None:
    """A requeue took the job out of its pool's in-progress set, then INCR seq raised: the job
    was in no set any more (also at '007' or '-0', which not_counter took for counters)."""
    keys, job_id = await running_job(redis, namespace)
    await redis.set(keys.seq, seq)
    before = await snapshot(redis, namespace)
    scripts = Scripts(redis, keys)
    s = Settle(job_id, "work", "requeue", keys.queue("work"), 1, 1, token="1")
    with pytest.raises(ResponseError, match="nothing settled"):
        await scripts.settle(POOL, s)
    with pytest.raises(ResponseError, match="nothing settled"):
        await scripts.settle_many(POOL, [s])
    assert await snapshot(redis, namespace) == before
    await redis.delete(keys.seq)  # repaired: it settles
    assert await scripts.settle(POOL, s)
    assert await redis.zscore(keys.queue("work"), job_id) is not None


@pytest.mark.parametrize(
    ("field", "value"),
    [("score_ms", "nan"), ("score_ms", "inf"), ("score_ms", 1.5), ("score_ms", " 5"),
     ("score_ms", "5 "), ("score_ms", "1.0"), ("score_ms", "00"), ("now_ms", "0x10"),
     ("now_ms", "nan"), ("attempt", "1.5"), ("started_ms", "inf"), ("ttl_ms", "nan"),
     ("dead_max", "nan"), ("dead_min_ms", "-inf")],
)  # fmt: skip
async def test_a_settle_with_a_number_that_is_not_whole_settles_nothing(
    redis: Redis, namespace: str, field: str, value: Any
) -> None:
    """tonumber() read 'nan', 'inf', '0x10' and 1.5 as numbers: a retry at score nan raised in
    its ZADD after the job left its in-progress set (lost), a record said `"attempt":1.5`; a
    score ' 5' passed is_whole(tonumber()) and raised in that ZADD too."""
    keys, job_id = await running_job(redis, namespace)
    scripts = Scripts(redis, keys)
    s = Settle(job_id, "work", "retry", keys.retry("work"), 1, 1, score_ms=5, token="1")
    setattr(s, field, value)
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match=r"errands: settle: .*nothing settled"):
        await scripts.settle(POOL, s)
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("family", ["running", "priorities", "dead", "recoveries"])
async def test_a_reap_meeting_a_key_of_another_type_reaps_nothing(
    redis: Redis, namespace: str, family: str
) -> None:
    """reap.lua had no key-type pass: a `running` key of another type raised in HINCRBY after
    the job left the dead pool's in-progress set, and the pool was retired: the job was lost.
    (A job name's own key, its queue: only that name's entries are left alone, the pool
    retired: tests/store/test_reap_name_keys.py.)"""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    row = await dead_pool_row(redis, namespace, scripts)
    key = getattr(keys, family)
    await redis.delete(key)
    await redis.set(key, "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match=r"WRONGTYPE .* nothing reaped"):
        await scripts.reap("dead", 60_000, 1, b'"lost"', b'"malformed"', [row])
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize(("timeout", "most"), [("nan", 5), ("inf", 5), (60_000, "inf")])
async def test_a_reap_with_a_number_that_is_not_whole_reaps_nothing(
    redis: Redis, namespace: str, timeout: Any, most: Any
) -> None:
    """A dead timeout of nan took a live pool for dead (its lease and jobs taken while it ran);
    reap.lua's own whole() let a max_recoveries of inf through (a poison job never buried)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    row = await dead_pool_row(redis, namespace, scripts)
    now_ms = int((await redis.time())[0]) * 1000
    await redis.zadd(keys.pools, {"dead": now_ms})  # alive, in fact
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match=r"errands: reap: .*nothing reaped"):
        await scripts.reap("dead", timeout, most, b'"lost"', b'"malformed"', [row])
    assert await snapshot(redis, namespace) == before


async def a_chain(redis: Redis, namespace: str, then: str = "work") -> tuple[str, str]:
    """Workflow ``w1``: ``a -> b`` (b, a job of ``then``, runs after a whatever a's outcome):
    a queued, b waiting."""
    wf = Workflow("chain", id="w1")
    a = wf.add("work", {}, id="a")
    wf.add(then, {}, id="b", after=[a], on_dependency_failure="continue")
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    return run.job_id("a"), run.job_id("b")


@pytest.mark.parametrize("family", ["seq", "cancelled"])
async def test_a_cancel_meeting_a_bad_key_cancels_nothing(
    redis: Redis, namespace: str, family: str
) -> None:
    """cancel.lua took the job off its queue, then raised: in ZADD of a cancelled set of another
    type (the job in no set), or in INCR of a seq that is not a counter when the member's end
    released its dependent (b's edge gone, b never queued: the run never finished)."""
    keys = Keys(namespace)
    a, _b = await a_chain(redis, namespace)
    key = getattr(keys, family)
    await redis.delete(key)
    await redis.set(key, "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="nothing cancelled"):
        await Scripts(redis, keys).cancel(a, "work", 1, 60_000)
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("part", ["res", "open"])
async def test_an_end_meeting_a_bad_key_of_its_run_settles_nothing(
    redis: Redis, namespace: str, part: str
) -> None:
    """lib/workflows.lua writes a run's keys, which no script declares: a settle buried the
    member, then raised in wf_end (a `res` or `open` of another type): the member dead, its run
    never told (b waiting for ever)."""
    keys = Keys(namespace)
    a, _b = await a_chain(redis, namespace)
    await redis.zadd(keys.pools, {POOL: 1})
    assert await redis.zrem(keys.queue("work"), a) == 1
    await redis.zadd(keys.in_progress(POOL), {f"{a}:work": 1})
    await redis.hset(keys.attempts, a, f"{POOL}:1")
    await redis.delete(keys.workflow("w1", part))
    await redis.set(keys.workflow("w1", part), "x")
    before = await snapshot(redis, namespace)
    s = Settle(a, "work", "dead", keys.dead, 1, 1, score_ms=1, error=b'{"e":1}', token="1")
    with pytest.raises(ResponseError, match="nothing settled"):
        await Scripts(redis, keys).settle(POOL, s)
    assert await snapshot(redis, namespace) == before


async def test_a_cascade_meeting_a_seq_that_is_not_a_counter_walks_nothing(
    redis: Redis, namespace: str
) -> None:
    """wf_cascade.lua took the work item off the list, removed b's edge, then raised in INCR
    seq as it released b: b waited for ever, with no edge left to release it."""
    keys = Keys(namespace)
    a, _b = await a_chain(redis, namespace)
    assert await redis.hdel(keys.workflow_of, a) == 1  # a ended: its walk left on the list
    await redis.zadd(keys.workflows_work, {"ok a  w1": 1})
    await redis.set(keys.seq, "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="not a counter: nothing walked"):
        await WorkflowScripts(redis, keys).cascade()
    assert await snapshot(redis, namespace) == before
    await redis.delete(keys.seq)  # repaired: b is released
    assert await WorkflowScripts(redis, keys).cascade() == 1
    assert await redis.zcard(keys.queue("work")) == 2


async def test_a_released_member_whose_queue_holds_another_type_is_parked_dead(
    redis: Redis, namespace: str
) -> None:
    """The queue of a member a walk releases is not known before the walk: wf_queue raised
    after the member's envelope left its run (b lost). It is parked in the dead set, with an
    error saying why, and retried from there once the key is repaired."""
    keys = Keys(namespace)
    a, b = await a_chain(redis, namespace, then="other")
    await redis.set(keys.queue("other"), "x")
    assert await Scripts(redis, keys).cancel(a, "work", 1, 60_000) == "cancelled"
    assert await redis.zscore(keys.dead, b) is not None
    assert b"another type" in (await redis.hget(keys.errors, b) or b"")
    assert await redis.hexists(keys.jobs, b)


@pytest.mark.parametrize("family", ["seq", "dead"])
async def test_a_destroy_meeting_a_bad_key_destroys_nothing(
    redis: Redis, namespace: str, family: str
) -> None:
    """destroy.lua had no key-type pass nor counter check: it forgot the job, then raised (a
    ZREM of a dead set of another type; INCR seq as the member's end released b)."""
    keys = Keys(namespace)
    a, _b = await a_chain(redis, namespace)
    await redis.delete(getattr(keys, family))
    await redis.set(getattr(keys, family), "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="nothing destroyed"):
        await Scripts(redis, keys).destroy(a, "work", 1)
    assert await snapshot(redis, namespace) == before


async def test_a_stored_priority_that_is_not_one_stops_no_promote(
    redis: Redis, namespace: str
) -> None:
    """promote.lua read the priorities after its first write: a nan priority raised in ZADD,
    every call, and no due job was promoted again. It counts as 0 (the default)."""
    keys = Keys(namespace)
    enqueuer = Enqueuer(redis, namespace=namespace)
    bad, good = await enqueuer.enqueue("work", delay=1), await enqueuer.enqueue("work", delay=1)
    assert bad is not None and good is not None
    await redis.hset(keys.priorities, bad.id, "nan")
    now_ms = (int((await redis.time())[0]) + 60) * 1000
    assert await Scripts(redis, keys).promote(["work"], now_ms, 100) == (2, -1)
    queued = await redis.zrange(keys.queue("work"), 0, -1, withscores=True)
    assert {m.decode() for m, _ in queued} == {bad.id, good.id}
    assert all(0 < score < 2**42 for _, score in queued)  # (priority 0)


@pytest.mark.parametrize("script", ["settle", "reap"])
async def test_a_requeue_of_a_job_whose_stored_priority_is_not_one_loses_nothing(
    redis: Redis, namespace: str, script: str
) -> None:
    """settle.lua and reap.lua read the priority after the job left its in-progress set: a nan
    priority raised in ZADD, and the job was in no set any more."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    if script == "settle":
        keys, job_id = await running_job(redis, namespace)
        await redis.hset(keys.priorities, job_id, "nan")
        s = Settle(job_id, "work", "requeue", keys.queue("work"), 1, 1, token="1")
        assert await scripts.settle(POOL, s)
    else:
        row = await dead_pool_row(redis, namespace, scripts)
        job_id = row[1]
        await redis.hset(keys.priorities, job_id, "nan")
        reaped = await scripts.reap("dead", 60_000, 5, b'"lost"', b'"malformed"', [row])
        assert reaped.requeued == 1
    assert 0 < (await redis.zscore(keys.queue("work"), job_id) or 0) < 2**42


@pytest.mark.parametrize("family", ["history_data", "history_of", "priorities"])
async def test_an_update_job_meeting_a_key_of_another_type_updates_nothing(
    redis: Redis, namespace: str, family: str
) -> None:
    """update_job.lua had no key-type pass: it stored the new envelope, then raised (reading
    the old priority, recording the edit): an edit with no history, half a priority change."""
    keys = Keys(namespace)
    job = await Enqueuer(redis, namespace=namespace).enqueue("work")
    assert job is not None
    key = keys.history_of("work") if family == "history_of" else getattr(keys, family)
    await redis.delete(key)
    await redis.set(key, "x")
    old = await redis.hget(keys.jobs, job.id)
    assert old is not None
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="nothing updated"):
        await Scripts(redis, keys).update_job(
            job.id, "work", keys.queue("work"), old, old + b" ", 5, 1, b"{}", 1
        )
    assert await snapshot(redis, namespace) == before


async def test_a_trim_history_meeting_a_key_of_another_type_trims_nothing(
    redis: Redis, namespace: str
) -> None:
    """trim_history.lua had no key-type pass: it dropped the records from the index and their
    data, then raised in ZREM of a job name's history of another type (half trimmed)."""
    keys = Keys(namespace)
    await redis.zadd(keys.history_of("work"), {"j1:1": 1})
    await redis.hset(keys.history_data, "j1:1", b"{}")
    await redis.set(keys.history_of("other"), "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="nothing trimmed"):
        await Scripts(redis, keys).trim_history(["work", "other"], ["j1:1"])
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("spec", ["r=1/100000000000000000000", "r=1/31622400001"])
async def test_a_fetch_under_a_rate_window_past_the_longest_takes_nothing(
    redis: Redis, namespace: str, spec: str
) -> None:
    """lim_spec let a window of 10^20 ms through: the fetch took the job, then PEXPIRE of the
    rate log raised: the job in the pool's in-progress set with no reply (and its rate
    counted)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    assert await Enqueuer(redis, namespace=namespace).enqueue("work") is not None
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="malformed limits spec"):
        await scripts.fetch(POOL, 0, 10, [("work", 0)], specs={"work": spec})
    assert await snapshot(redis, namespace) == before


async def test_a_limiter_with_a_window_past_the_longest_takes_nothing(
    redis: Redis, namespace: str
) -> None:
    """limiter.lua likewise: the start was written, then PEXPIRE raised."""
    scripts = Scripts(redis, Keys(namespace))
    with pytest.raises(ResponseError, match="malformed rates"):
        await scripts.limiter("api", [(1, 10**20)])
    assert await snapshot(redis, namespace) == {}


async def test_a_settle_re_sent_after_another_pool_fetched_the_job_answers_0_and_writes_nothing(
    redis: Redis, namespace: str
) -> None:
    """Documented as harmless (lua/settle.lua): the caller only logs that it was not settled."""
    keys, job_id = await running_job(redis, namespace)
    scripts = Scripts(redis, keys)
    s = Settle(job_id, "work", "requeue", keys.queue("work"), 1, 1, token="1")
    assert await scripts.settle(POOL, s)  # its reply lost...
    other = "p0000000000000002"
    await scripts.heartbeat(other, b"{}", 60_000, mode="register")
    fetched = await scripts.fetch(other, 0, 10, [("work", 0)])
    assert fetched is not None and [f.id for f in fetched] == [job_id]
    before = await snapshot(redis, namespace)
    assert not await scripts.settle(POOL, s)  # ...and re-sent
    assert await snapshot(redis, namespace) == before


async def test_a_reap_re_sent_counts_0_and_writes_nothing(redis: Redis, namespace: str) -> None:
    """Documented as harmless (lua/reap.lua): the counts feed the reaper's log and counters."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    row = await dead_pool_row(redis, namespace, scripts)
    first = await scripts.reap("dead", 60_000, 5, b'"lost"', b'"malformed"', [row])
    assert (first.requeued, first.drained) == (1, True)
    before = await snapshot(redis, namespace)
    again = await scripts.reap("dead", 60_000, 5, b'"lost"', b'"malformed"', [row])
    assert (again.requeued, again.buried, again.cancelled, again.drained) == (0, 0, 0, True)
    assert await snapshot(redis, namespace) == before


async def test_a_workflow_cancel_meeting_a_bad_key_of_its_run_cancels_nothing(
    redis: Redis, namespace: str
) -> None:
    """wf_cancel.lua noted its reply and marked the run cancelled, then raised ending b (a
    `res` of another type): its re-send answered 1 from the reply key, and b waited for
    ever."""
    keys = Keys(namespace)
    await a_chain(redis, namespace)
    await redis.delete(keys.workflow("w1", "res"))
    await redis.set(keys.workflow("w1", "res"), "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="nothing cancelled"):
        await WorkflowScripts(redis, keys).cancel("w1", ["b"], "c1")
    assert await snapshot(redis, namespace) == before


async def test_a_trim_set_meeting_a_key_of_another_type_trims_nothing(
    redis: Redis, namespace: str
) -> None:
    """trim_set.lua took the jobs out of the set, then raised forgetting them."""
    keys = Keys(namespace)
    await redis.zadd(keys.dead, {"j1": 1})
    await redis.hset(keys.jobs, "j1", b"{}")
    await redis.set(keys.errors, "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="nothing trimmed"):
        await Scripts(redis, keys).trim_set(keys.dead, 10, 0)
    assert await snapshot(redis, namespace) == before
